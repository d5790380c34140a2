"""``loupe sql --db FILE``: an interactive SQL console over the workspace, with DSL helpers.

SQL statements may span lines and run when a line ends with ``;``. Dot commands (one line each):
``.tables``, ``.schema [TABLE]``, ``.datasets``, ``.dataset NAME``, ``.run NAME``, ``.dsl [DATASET] QUERY``,
``.objects QUERY``, ``.explain QUERY``, ``.slices``, ``.mode table|csv|json``, ``.help``, ``.quit``.
Errors are printed and the console keeps going. With a terminal it prompts and keeps a readline history
(``~/.loupe_history``); with piped input it reads statements silently, like ``sqlite3 < script.sql``.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, TextIO

from ..errors import LoupeError
from .output import FORMATS, printable, render

PROMPT, MORE = "loupe> ", "   ...> "
HISTORY = os.path.join(os.path.expanduser("~"), ".loupe_history")

HELP = """\
SQL runs when a line ends with ';' (statements may span lines).
.tables                 list the tables
.schema [TABLE]         columns of a table (all tables without a name)
.datasets               list datasets
.dataset [NAME]         show or set the current dataset (for .dsl, .objects, .explain)
.run [NAME|-]           show, set or clear the run context of DSL queries
.dsl [DATASET] QUERY    items matching a DSL query (docs/query-language.md)
.objects QUERY          objects (annotations, and predictions in a run) matching a DSL query
.explain QUERY          the SQL a DSL query compiles to (.explain objects QUERY for object queries)
.slices                 list slices
.mode table|csv|json    output format
.help                   this text
.quit                   leave (also .exit or end of input)
Views for your own SQL (the raw tables have two traps):
current_annotations     the current labels (`annotations` keeps every label version; current: valid_to IS NULL)
matched_pairs           one row per prediction-GT match, with both labels (`matches` has a GT row AND a
                        prediction row per match, so count(*) of its tp rows is twice the TPs)"""


class Console:
    """One console session over an open workspace; :meth:`feed` takes input a line at a time."""

    def __init__(self, ws: Any, fmt: str = "table", write: Callable[[str], None] | None = None,
                 error: Callable[[str], None] | None = None):
        self.ws = ws
        self.fmt = fmt
        self.dataset: str | None = None
        self.run: str | None = None
        self.buffer: list[str] = []
        self._write = write or (lambda s: print(s, flush=True))
        self._error = error or (lambda s: print(s, file=sys.stderr, flush=True))

    @property
    def pending(self) -> bool:
        """True while a multi-line statement is incomplete."""
        return bool(self.buffer)

    # -- input ------------------------------------------------------------------------------------
    def feed(self, line: str) -> bool:
        """Take one input line; returns False when the session should end."""
        if not self.buffer and line.strip().startswith("."):
            return self._guard(self.command, line.strip())
        if not self.buffer and not line.strip():
            return True
        self.buffer.append(line)
        if line.rstrip().endswith(";"):
            return self.flush()
        return True

    def flush(self) -> bool:
        """Run what is buffered (at ``;`` or at the end of input)."""
        sql = "\n".join(self.buffer).strip()
        self.buffer = []
        if sql and sql.strip(";").strip():
            self._guard(self.sql, sql)
        return True

    def _guard(self, f: Callable[[str], Any], arg: str) -> bool:
        try:
            out = f(arg)
        except (LoupeError, ValueError) as e:  # DSL errors are ValueErrors
            self._error(f"error: {printable(str(e), newlines=True)}")
            return True
        except Exception as e:  # noqa: BLE001 - the console never dies on a bad statement
            self._error(f"error: {type(e).__name__}: {printable(str(e), newlines=True)}")
            return True
        return out is not False

    # -- SQL ---------------------------------------------------------------------------------------
    def sql(self, statement: str) -> None:
        self.show(self.ws.sql(statement))

    def show(self, table: Any) -> None:
        if table.num_columns == 0:
            return
        self._write(render(table, self.fmt))

    # -- dot commands -------------------------------------------------------------------------------
    def command(self, line: str) -> bool | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        name = name.lower()
        handler = {
            ".help": lambda a: self._write(HELP), ".tables": self.tables, ".schema": self.schema,
            ".datasets": lambda a: self.show(self.ws.list_datasets()), ".dataset": self.set_dataset,
            ".run": self.set_run, ".dsl": self.dsl, ".objects": self.objects, ".explain": self.explain,
            ".slices": self.slices, ".mode": self.mode,
        }.get(name)
        if name in (".quit", ".exit", ".q"):
            return False
        if handler is None:
            raise LoupeError(f"unknown command {name}; .help lists the commands")
        handler(arg)
        return None

    def tables(self, arg: str) -> None:
        self.show(self.ws.sql("SELECT table_name AS name FROM information_schema.tables "
                              "WHERE table_schema = 'main' ORDER BY table_name"))

    def schema(self, arg: str) -> None:
        if arg:
            known = self.ws.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
            names = known.column(0).to_pylist()
            if arg not in names:
                raise LoupeError(f"no table '{arg}'; tables: {', '.join(sorted(names))}")
            self.show(self.ws.sql("SELECT column_name AS column, data_type AS type, is_nullable AS nullable "
                                  "FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
                                  "ORDER BY ordinal_position", [arg]))
            return
        t = self.ws.sql("SELECT sql FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name")
        self._write("\n".join(s.rstrip(";") + ";" for s in t.column(0).to_pylist()))

    def set_dataset(self, arg: str) -> None:
        if not arg:
            self._write(self.dataset or "(no dataset; .dataset NAME sets one)")
            return
        self.ws.get_dataset(arg)  # NotFoundError lists the datasets
        self.dataset, self.run = arg, None
        self._write(f"dataset: {arg}")

    def set_run(self, arg: str) -> None:
        if not arg:
            self._write(self.run or "(no run)")
            return
        if arg == "-":
            self.run = None
            self._write("run cleared")
            return
        run = self.ws.get_run(arg)
        self.dataset, self.run = run.dataset_name, arg
        self._write(f"run: {arg} (dataset {run.dataset_name})")

    def _current(self, arg: str) -> tuple[Any, str]:
        """(dataset, query) for .dsl: an explicit leading dataset name, the current one, or the only one."""
        names = self.ws.list_datasets().column("name").to_pylist()
        first, _, rest = arg.partition(" ")
        if first in names and rest.strip():
            return self.ws.get_dataset(first), rest.strip()
        if self.dataset is not None:
            return self.ws.get_dataset(self.dataset), arg
        if len(names) == 1:
            return self.ws.get_dataset(names[0]), arg
        raise LoupeError("no current dataset: .dataset NAME, or .dsl DATASET QUERY"
                         + (f" (datasets: {', '.join(names)})" if names else " (the workspace has no datasets)"))

    def dsl(self, arg: str) -> None:
        ds, q = self._current(arg)
        self.show(ds.query(q.rstrip(";"), run=self._run_for(ds)))

    def objects(self, arg: str) -> None:
        ds, q = self._current(arg)
        self.show(ds.query_objects(q.rstrip(";"), run=self._run_for(ds)))

    def _run_for(self, ds: Any) -> str | None:
        return self.run if self.run is not None and self.dataset == ds.name else None

    def explain(self, arg: str) -> None:
        objects = arg.startswith("objects ")
        if objects:
            arg = arg[len("objects "):]
        try:
            ds, q = self._current(arg)
        except LoupeError:
            from .. import explain

            self._write(explain(arg.rstrip(";"), objects=objects))
            return
        self._write(ds.explain(q.rstrip(";"), run=self._run_for(ds), objects=objects))

    def slices(self, arg: str) -> None:
        from engine.curation.slices import slices_table

        self.show(slices_table(self.ws.store))

    def mode(self, arg: str) -> None:
        if arg not in FORMATS:
            raise LoupeError(f".mode takes one of {', '.join(FORMATS)}")
        self.fmt = arg

    # -- loops --------------------------------------------------------------------------------------
    def run_lines(self, lines: Iterable[str]) -> None:
        """Feed lines until .quit or their end (piped input)."""
        for line in lines:
            if not self.feed(line.rstrip("\n")):
                return
        self.flush()

    def interact(self, stdin: TextIO = sys.stdin) -> None:
        """Prompt on a terminal, with readline history when available."""
        readline = _readline()
        try:
            while True:
                try:
                    line = input(MORE if self.pending else PROMPT)
                except EOFError:
                    self._write("")
                    break
                except KeyboardInterrupt:  # Ctrl-C drops the statement being typed
                    self.buffer = []
                    self._write("^C")
                    continue
                if not self.feed(line):
                    break
            self.flush()
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(HISTORY)
                except OSError:
                    pass


def _readline() -> Any:
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline
        return None
    try:
        readline.read_history_file(HISTORY)
    except (OSError, FileNotFoundError):
        pass
    readline.set_history_length(1000)
    return readline


def run_console(db: str, read_only: bool = False, fmt: str = "table") -> None:
    """Open the workspace file and run the console on stdin (interactive on a terminal)."""
    from .common import open_ws

    with open_ws(db, read_only=read_only, must_exist=True) as ws:
        console = Console(ws, fmt)
        if sys.stdin.isatty():
            print(f"Loupe SQL console on {db}{' (read-only)' if read_only else ''}. "
                  f"Statements end with ';'. .help for commands.", flush=True)
            console.interact()
        else:
            console.run_lines(sys.stdin)
