"""Shared CLI pieces: option decorators, workspace opening and one-line error handling."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from ..errors import LoupeError
from .output import FORMATS, printable


def db_option(required: bool = True) -> Callable:
    return click.option("--db", "db", required=required, type=click.Path(dir_okay=False),
                        help="Workspace file (DuckDB).")


def dataset_option(f: Callable) -> Callable:
    return click.option("--dataset", required=True, help="Dataset name.")(f)


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format.")(f)


def read_only_option(f: Callable) -> Callable:
    return click.option("--read-only", is_flag=True, help="Open the workspace read-only (refuse writes).")(f)


def open_ws(db: str | None, read_only: bool = False, must_exist: bool = True):
    """Open the workspace named by --db; a missing file is an error for read commands."""
    from pathlib import Path

    import engine

    if db is not None and must_exist and not Path(db).exists():
        raise LoupeError(f"workspace file {db} does not exist")
    return engine.connect(db, read_only=read_only)


def progress_printer(what: str) -> Callable[[int, int], None]:
    """Progress callback writing ``what: done/total`` to stderr (only when it is a terminal)."""
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if tty:
            end = "\n" if done >= total else "\r"
            click.echo(f"{what}: {done}/{total}", err=True, nl=False)
            click.echo(end, err=True, nl=False)

    return report


def handle_errors(f: Callable) -> Callable:
    """Turn library errors into one line on stderr and exit 1 (``--debug`` shows the traceback)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().params or {}).get("debug"))
        try:
            return f(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except LoupeError as e:
            if debug:
                raise
            click.echo(f"error: {printable(str(e), newlines=True)}", err=True)
            sys.exit(1)
        except Exception as e:  # noqa: BLE001 - the CLI never prints a raw traceback
            if debug:
                raise
            click.echo(f"error: {type(e).__name__}: {printable(str(e), newlines=True)} (run with --debug for the traceback)", err=True)
            sys.exit(1)

    return wrapper
