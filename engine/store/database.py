"""The workspace store: one DuckDB file (or memory), its schema, transactions and SQL access.

`engine/` alone owns the DuckDB connection. The schema lives in ``schema.sql``; its version is kept in
``loupe_meta`` so a file written by a newer Loupe is refused with a clear error instead of misread.
"""
from __future__ import annotations

import contextlib
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa

from ..errors import LoupeError, SchemaVersionError, WorkspaceLocked
from ..similarity import schema as similarity_schema

SCHEMA_VERSION = 1
_LOCK_PID = re.compile(r"\(PID (\d+)\)")


def _read_sql(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def _sql_statements(text: str) -> list[str]:
    """Split a .sql file into statements (our files have no ';' inside literals)."""
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return [s.strip() for s in body.split(";") if s.strip()]


_READ_HEADS = frozenset({"select", "from", "explain", "describe", "show", "summarize", "values", "table",
                         "pragma", "set", "reset", "call"})  # BEGIN counts: the store tracks open transactions
_HEAD = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(*\s*([A-Za-z]+)", re.S)
_WRITE_WORD = re.compile(r"\b(insert|update|delete|merge|copy|create|drop|alter)\b", re.I)
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def may_write(sql: Any) -> bool:
    """Whether a statement may change data (cheap, conservative: anything not plainly a read counts).

    Every write through the store's connections bumps ``Store.generation``, the version caches key on.
    """
    if not isinstance(sql, str):
        return True  # a prepared statement or relation: assume it writes
    m = _HEAD.match(sql)
    if m is None:
        return True
    head = m.group(1).lower()
    if head == "with":
        return _WRITE_WORD.search(_QUOTED.sub("", sql)) is not None
    return head not in _READ_HEADS or ";" in sql.rstrip().rstrip(";")


_DUCKDB_MAGIC = (8, b"DUCK")  # a DuckDB database file has "DUCK" at byte offset 8
_KNOWN_MAGIC = {b"SQLite format 3\x00": "a SQLite database", b"PAR1": "a Parquet file", b"PK\x03\x04": "a zip file"}


def check_header(path: str, read_only: bool = False) -> None:
    """Refuse a file that is not a DuckDB database BEFORE DuckDB opens it: given a SQLite file DuckDB
    tries to download its sqlite extension, and other files give foreign messages. A missing file is a
    new workspace; so is an empty one (``mktemp`` makes them), as in SQLite: it is removed for DuckDB to
    create (DuckDB refuses an empty file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    except OSError as e:
        raise LoupeError(f"cannot open workspace {path}: {e.strerror or e}") from None
    if not head:
        if not read_only:
            Path(path).unlink()
        return
    at, magic = _DUCKDB_MAGIC
    if head[at:at + len(magic)] == magic:
        return
    what = next((name for m, name in _KNOWN_MAGIC.items() if head.startswith(m)), None)
    raise LoupeError(f"{path} is not a Loupe workspace: it is {what or 'not a DuckDB database file'}"
                     + (" (truncated?)" if what is None and len(head) < 12 else ""))


def _schema_version(row: tuple | None, path: str | None) -> int:
    """The stored schema version (-1 when absent); a value that is not an integer is refused."""
    if row is None:
        return -1
    try:
        return int(str(row[0]).strip()) if row[0] is not None else int("NULL")
    except ValueError:
        raise SchemaVersionError(f"workspace {path} has an invalid schema version {row[0]!r} in loupe_meta "
                                 f"(this Loupe reads version {SCHEMA_VERSION})") from None


def _aborted(e: BaseException) -> bool:
    return isinstance(e, duckdb.TransactionException) and "transaction is aborted" in str(e).lower()


def first_error(exc: BaseException) -> BaseException:
    """The error that really ended a transaction. After a failed statement DuckDB refuses every
    other one with "Current transaction is aborted"; cleanup code (``finally``) running then raises
    that and hides the real error, which Python keeps as ``__context__``. A raw DuckDB error found so
    becomes a LoupeError (nothing was written: the transaction is rolled back)."""
    if not _aborted(exc):
        return exc
    e: BaseException | None = exc
    while e is not None and _aborted(e):
        e = e.__context__
    if e is None:
        return exc
    if isinstance(e, duckdb.Error):
        err = LoupeError(f"write failed, nothing was written: {type(e).__name__}: {e}")
        err.__cause__ = e
        return err
    return e


class _Connection:
    """A DuckDB connection that finishes any half-read ``execute()`` result before other work, and
    reports statements that may write (so the store's ``generation`` moves with every change).

    DuckDB >= 2 refuses ``sql``/``register``/... while a previous ``execute`` result is unfinished
    (e.g. after ``fetchone()``); every caller would otherwise need to remember ``complete()``.
    """

    _FINISH_FIRST = frozenset({"sql", "query", "register", "unregister", "from_arrow", "table", "view",
                               "begin", "commit", "rollback", "create_function", "remove_function"})

    def __init__(self, con: duckdb.DuckDBPyConnection, on_write: Callable[[Any, bool], None] | None = None):
        self._con = con
        self._on_write = on_write

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._con, name)
        if name in self._FINISH_FIRST and hasattr(self._con, "complete"):
            self._con.complete()
        return attr

    def _run(self, method: str, query: Any, args: tuple, kwargs: dict) -> Any:
        """Run a statement; one that may write moves the generation before and after it runs (a reader
        taking a snapshot while it runs sees the generation move again once it is done)."""
        if self._on_write is None or not may_write(query):
            return getattr(self._con, method)(query, *args, **kwargs)
        self._on_write(query, False)
        try:
            return getattr(self._con, method)(query, *args, **kwargs)
        finally:
            self._on_write(query, True)

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        return self._run("execute", query, args, kwargs)

    def sql(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(self._con, "complete"):
            self._con.complete()
        return self._run("sql", query, args, kwargs)

    query = sql

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        return self._run("executemany", query, args, kwargs)

    def cursor(self) -> "_Connection":
        return _Connection(self._con.cursor(), self._on_write)


class Store:
    """A DuckDB connection with Loupe's schema, UDFs and transaction helpers.

    Threads: every thread gets its own cursor on the one database, so many threads may read while
    one writes (DuckDB's MVCC); processes follow DuckDB's one-writer-or-many-readers file lock.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False):
        self.path = None if path is None else str(path)
        self.read_only = read_only
        target = ":memory:" if path is None else str(path)
        if read_only and path is not None and not Path(target).exists():
            raise LoupeError(f"workspace {target} does not exist (read-only open cannot create it)")
        if path is not None:
            check_header(target, read_only)
        try:
            self._con = _Connection(duckdb.connect(target, read_only=read_only), self._wrote)
        except duckdb.IOException as e:
            msg = str(e)
            if "lock" in msg.lower():
                m = _LOCK_PID.search(msg)
                raise WorkspaceLocked(target, int(m.group(1)) if m else None) from None
            raise LoupeError(f"cannot open workspace {target}: {msg}") from None
        except duckdb.Error as e:
            raise LoupeError(f"cannot open workspace {target}: {e}") from None
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self.derived_stale = False  # raw SQL wrote and the derived tables could not be rebuilt: do not trust them
        self.generation = 0  # bumped by every write statement and every commit; caches key on it
        self._close_callbacks: list[Callable[[], None]] = []
        self.sql_transactions = 0  # transactions opened with SQL (BEGIN through ws.sql / the console) still open
        self._open_transactions = 0  # the store's own transactions in progress (any thread)
        self._local.cur = self._con
        try:
            self._ensure_schema()
        except duckdb.Error as e:  # e.g. a truncated file: its header reads, its tables do not
            with contextlib.suppress(Exception):
                self._con.close()
            raise LoupeError(f"cannot open workspace {target}: damaged or truncated file ({e})") from None
        similarity_schema.ensure(self)  # embedding tables (engine/similarity), added to older workspaces too
        self._register_udfs(self._con)

    # -- connection -------------------------------------------------------------------------
    def _wrote(self, sql: Any, done: bool) -> None:
        self.generation += 1
        if done:
            return
        m = _HEAD.match(sql) if isinstance(sql, str) else None
        head = m.group(1).lower() if m else ""
        if head in ("begin", "start"):  # the store's own BEGIN bypasses this: a transaction opened with SQL
            self.sql_transactions += 1
        elif head in ("commit", "end", "rollback", "abort") and self.sql_transactions:
            self.sql_transactions -= 1

    @property
    def caching(self) -> bool:
        """Whether version-keyed caches may be used: not while a transaction is open (its uncommitted rows
        are visible to its own connection only, and a rollback brings old rows back)."""
        return self.sql_transactions == 0 and self._open_transactions == 0

    @property
    def con(self) -> "_Connection":
        """This thread's cursor on the workspace database."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._register_udfs(cur)
            self._local.cur = cur
        return cur

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the store closes (caches over its data free themselves this way; the
        store knows nothing of them)."""
        self._close_callbacks.append(callback)

    def close(self) -> None:
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()
        with contextlib.suppress(Exception):
            self._con.close()

    # -- schema -----------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        con = self._con
        has_meta = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'loupe_meta'"
        ).fetchone()[0]
        if not has_meta:
            if self.read_only:
                raise LoupeError(f"{self.path} is not a Loupe workspace (no loupe_meta table)")
            n_tables = con.execute("SELECT count(*) FROM information_schema.tables").fetchone()[0]
            if n_tables:
                raise LoupeError(f"{self.path} is a DuckDB file but not a Loupe workspace")
            with self.transaction():
                for stmt in _sql_statements(_read_sql("engine.store", "schema.sql")):
                    con.execute(stmt)
                con.execute(
                    "INSERT INTO loupe_meta VALUES ('schema_version', ?), ('created_by', 'loupe')",
                    [str(SCHEMA_VERSION)],
                )
            return
        row = con.execute("SELECT value FROM loupe_meta WHERE key = 'schema_version'").fetchone()
        version = _schema_version(row, self.path)
        if version > SCHEMA_VERSION or version < 1:
            raise SchemaVersionError(
                f"workspace {self.path} has schema version {version}, this Loupe reads version "
                f"{SCHEMA_VERSION}; upgrade Loupe to open it"
            )
        from . import item_values, label_counts, match_counts, views

        label_counts.ensure(self)  # derived tables of workspaces written before they existed
        item_values.ensure(self)
        match_counts.ensure(self)
        views.ensure(self)

    @staticmethod
    def _register_udfs(con: duckdb.DuckDBPyConnection) -> None:
        from .udf_registry import register

        register(con)

    # -- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing block: commits on success, rolls back on any exception."""
        if self.read_only:
            raise LoupeError("workspace is open read-only; this operation writes")
        con = self.con
        with self._write_lock:  # one writer per process: key assignment is max+1
            if getattr(self._local, "in_tx", False):  # nested: join the outer transaction
                yield con
                return
            if self.in_sql_transaction():  # our BEGIN would fail and DuckDB would abort the user's work
                raise LoupeError("a transaction opened with SQL (BEGIN) is still open on this workspace; "
                                 "COMMIT or ROLLBACK it before this operation")
            con._con.execute("BEGIN TRANSACTION")  # not seen as a user's BEGIN
            self._local.in_tx = True
            self._open_transactions += 1
            try:
                yield con
            except BaseException as e:
                with contextlib.suppress(Exception):
                    con._con.execute("ROLLBACK")
                self.generation += 1  # caches built inside the transaction saw rows that are gone
                real = first_error(e)
                if real is e:
                    raise
                raise real from None
            finally:
                self._local.in_tx = False
                self._open_transactions -= 1
            con._con.execute("COMMIT")
            self.generation += 1

    def in_sql_transaction(self) -> bool:
        """Whether this thread's connection is inside a transaction opened with SQL (``ws.sql("BEGIN")``,
        the console): two statements then share one transaction id, in autocommit mode they do not."""
        if getattr(self._local, "in_tx", False):
            return False
        con = self.con
        first = con.execute("SELECT txid_current()").fetchall()[0][0]
        return first == con.execute("SELECT txid_current()").fetchall()[0][0]

    def has_tables(self, names: Sequence[str]) -> bool:
        """Whether every named table exists (derived tables may be missing in older workspaces)."""
        n = self.scalar("SELECT count(*) FROM information_schema.tables WHERE list_contains(?, table_name)",
                        [list(names)])
        return int(n) == len(set(names))

    def ensure_tables(self, names: Sequence[str], ddl: Sequence[str], fill: "Callable[[int], None]",
                      replaces: Sequence[str] = ()) -> None:
        """Create derived tables an older workspace lacks and ``fill`` them per dataset (writable opens only).

        ``replaces``: tables an older Loupe kept instead; any still present are dropped and the new ones
        refilled (that Loupe may have written since they were filled, without keeping them).
        """
        if self.read_only:
            return
        old = [t for t in replaces if self.has_tables([t])]
        if not old and self.has_tables(names):
            return
        with self.transaction() as con:
            for stmt in ddl:
                con.execute(stmt)
            for t in old:
                con.execute(f"DROP TABLE {t}")
            for (ds,) in con.execute("SELECT dataset_id FROM datasets").fetchall():
                fill(int(ds))

    def next_key(self, table: str, column: str) -> int:
        """First free surrogate key of ``table.column`` (call inside a transaction)."""
        return int(self.scalar(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}"))

    # -- queries ----------------------------------------------------------------------------
    def arrow(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query and return the result as a pyarrow Table."""
        con = self.con
        rel = con.sql(query, params=params) if params is not None else con.sql(query)
        return to_arrow(rel)

    def scalar(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        row = self.con.execute(query, params).fetchone() if params is not None else self.con.execute(query).fetchone()
        return None if row is None else row[0]


def to_arrow(rel: "duckdb.DuckDBPyRelation | None") -> pa.Table:
    """A relation's rows as a pyarrow Table (an empty table for statements without a result)."""
    if rel is None:
        return pa.table({})
    res = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    if isinstance(res, pa.RecordBatchReader):
        res = res.read_all()
    return res
