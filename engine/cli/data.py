"""Workspace inspection commands: datasets, info, sql."""
from __future__ import annotations

import click

from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws, read_only_option
from .output import render, render_dict


@cli.command()
@db_option()
@format_option
@handle_errors
def datasets(db: str, fmt: str) -> None:
    """List the datasets in a workspace."""
    with open_ws(db, read_only=True) as ws:
        click.echo(render(ws.list_datasets(), fmt))


@cli.command()
@db_option()
@dataset_option
@format_option
@handle_errors
def info(db: str, dataset: str, fmt: str) -> None:
    """Counts and label distribution of a dataset."""
    with open_ws(db, read_only=True) as ws:
        ds = ws.get_dataset(dataset)
        d = ds.info()
        if fmt == "table":
            d["annotations per item"] = {str(r["annotations"]): r["items"] for r in ds.annotations_per_item().to_pylist()}
        click.echo(render_dict(d, fmt))


@cli.command()
@db_option()
@click.option("-c", "command", help="Run one SQL statement and exit.")
@read_only_option
@format_option
@handle_errors
def sql(db: str, command: str | None, read_only: bool, fmt: str) -> None:
    """Run SQL over the workspace tables (-c for one statement; otherwise an interactive console)."""
    if command is None:
        try:
            from .console import run_console
        except ModuleNotFoundError:
            raise click.UsageError("the interactive console is not available yet; pass -c \"SQL\"") from None
        run_console(db, read_only=read_only, fmt=fmt)
        return
    with open_ws(db, read_only=read_only, must_exist=True) as ws:
        click.echo(render(ws.sql(command), fmt))
