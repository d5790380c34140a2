"""The workspace store: one DuckDB file (or memory), its schema, transactions and SQL access.

`engine/` alone owns the DuckDB connection. The schema lives in ``schema.sql``; its version is kept in
``loupe_meta`` so a file written by a newer Loupe is refused with a clear error instead of misread.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import warnings
import weakref
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa

from ..errors import CheckpointError, LoupeError, SchemaVersionError, WorkspaceFull, WorkspaceLocked
from ..similarity import schema as similarity_schema
from .sharing import Gate

SCHEMA_VERSION = 1
_LOCK_PID = re.compile(r"\(PID (\d+)\)")
# DuckDB's memory limit for a FILE workspace (its buffer pool otherwise keeps up to 80% of RAM of cached
# blocks; a file workspace can evict them and spill joins/sorts to FILE.tmp). LOUPE_MEMORY_LIMIT sets it
# ("" = DuckDB's default); in-memory workspaces keep DuckDB's default (their tables must stay in RAM).
FILE_MEMORY_LIMIT = "4GB"


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
_NULL = contextlib.nullcontext()


def disk_full(e: BaseException) -> bool:
    """Whether a DuckDB error is the disk running out of space (ENOSPC while writing FILE or FILE.wal)."""
    msg = str(e).lower()
    return "no space left on device" in msg or "disk is full" in msg or "not enough space" in msg


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


def _file_config(path: str | None) -> dict[str, str]:
    """Connection settings of a file workspace: a memory limit (FILE_MEMORY_LIMIT), and DuckDB's allocator
    background threads, which hand freed memory back to the OS (without them, reading a 4M-detection run's
    evaluation inputs left RSS at 1.14 GB instead of 0.80 GB)."""
    if path is None:
        return {}
    limit = os.environ.get("LOUPE_MEMORY_LIMIT", FILE_MEMORY_LIMIT)
    return {"allocator_background_threads": "true", **({"memory_limit": limit} if limit else {})}


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

    def __init__(self, con: duckdb.DuckDBPyConnection, on_write: Callable[[Any, bool], None] | None = None,
                 path: str | None = None, store: "Store | None" = None):
        self._con = con
        self._on_write = on_write
        self._path = path
        self._store = store  # a shared store: follow its reconnects (see _fresh)
        self._epoch = store._epoch if store is not None else 0

    def _fresh(self) -> duckdb.DuckDBPyConnection:
        """The live DuckDB connection: a shared store may have released ours between two statements
        (caller code kept this object across an idle pause); then this thread's new one is used."""
        store = self._store
        if store is not None:
            if self._epoch != store._epoch:
                cur = store.con
                self._con, self._epoch = cur._con, cur._epoch
            elif store._gate is not None:
                store._gate.last_used = time.monotonic()  # idle time counts from the last statement
        return self._con

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fresh(), name)
        if name in self._FINISH_FIRST and hasattr(self._con, "complete"):
            self._con.complete()
        return attr

    def _run(self, method: str, query: Any, args: tuple, kwargs: dict) -> Any:
        """Run a statement; one that may write moves the generation before and after it runs (a reader
        taking a snapshot while it runs sees the generation move again once it is done)."""
        con = self._fresh()
        if self._on_write is None or not may_write(query):
            return getattr(con, method)(query, *args, **kwargs)
        self._on_write(query, False)
        try:
            return getattr(con, method)(query, *args, **kwargs)
        except duckdb.Error as e:
            if disk_full(e):
                raise WorkspaceFull(self._path, str(e).splitlines()[0]) from None
            raise
        finally:
            self._on_write(query, True)

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        return self._run("execute", query, args, kwargs)

    def sql(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        con = self._fresh()
        if hasattr(con, "complete"):
            con.complete()
        return self._run("sql", query, args, kwargs)

    query = sql

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        return self._run("executemany", query, args, kwargs)

    def register(self, name: str, obj: Any) -> Any:
        """Register an Arrow table/relation as a view; a shared store registers it again on a new
        connection (a release between register and use would drop it)."""
        con = self._fresh()
        if hasattr(con, "complete"):
            con.complete()
        out = con.register(name, obj)
        if self._store is not None:
            self._store._thread_views()[name] = obj
        return out

    def unregister(self, name: str) -> Any:
        con = self._fresh()
        if hasattr(con, "complete"):
            con.complete()
        if self._store is not None:
            self._store._thread_views().pop(name, None)
        return con.unregister(name)

    def cursor(self) -> "_Connection":
        return _Connection(self._fresh().cursor(), self._on_write, self._path, self._store)


class Store:
    """A DuckDB connection with Loupe's schema, UDFs and transaction helpers.

    Threads: every thread gets its own cursor on the one database, so many threads may read while
    one writes (DuckDB's MVCC). Processes: DuckDB lets one process write a file (or many read it); a
    *shared* file store (the default) holds its connection only while operations run and waits up to
    ``timeout`` seconds for another process's lock (see ``sharing.py``); ``shared=False`` holds it
    until ``close()``. In-memory stores are never shared.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False, shared: bool | None = None,
                 timeout: float | None = None, idle: float | None = None):
        self.path = None if path is None else str(path)
        self.read_only = read_only
        self._target = ":memory:" if path is None else str(path)
        if read_only and path is not None and not Path(self._target).exists():
            raise LoupeError(f"workspace {self._target} does not exist (read-only open cannot create it)")
        if path is not None:
            check_header(self._target, read_only)  # refuse a non-DuckDB file before DuckDB opens it
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self.derived_stale = False  # raw SQL wrote and the derived tables could not be rebuilt: do not trust them
        self._generation = 0  # bumped by every write statement and every commit; caches key on it
        self._close_callbacks: list[Callable[[], None]] = []
        self.sql_transactions = 0  # transactions opened with SQL (BEGIN through ws.sql / the console) still open
        self._open_transactions = 0  # the store's own transactions in progress (any thread)
        self._root: _Connection | None = None
        self._cursors: weakref.WeakSet[_Connection] = weakref.WeakSet()  # live threads' cursors (closed at release)
        self._epoch = 0  # moves at every (re)connect: cursors of an older epoch are closed
        self._root_thread = 0
        self._dirty = False
        self.session_pinned = False  # see pin_session()
        self.checkpoint_warning: str | None = None  # the last failed checkpoint at a release, if any
        self.shared = path is not None and (True if shared is None else bool(shared))
        self._gate = Gate(self._target, self._open_root, self._close_root, self._pinned, self._foreign_write,
                          timeout=timeout, idle=idle, exclusive=not read_only) if self.shared else None
        try:
            with self.hold():
                if self._gate is None:
                    self._open_root()
                try:
                    self._ensure_schema()
                except duckdb.Error as e:  # e.g. a truncated file: its header reads, its tables do not
                    raise LoupeError(f"cannot open workspace {self._target}: damaged or truncated file ({e})") from None
                similarity_schema.ensure(self)  # embedding tables (engine/similarity), added to older workspaces too
        except BaseException:  # a refused open leaves no connection (the file must not stay locked)
            with contextlib.suppress(Exception):
                self._gate.close() if self._gate is not None else self._close_root(False, quiet=True)
            raise

    # -- connection -------------------------------------------------------------------------
    def _open_root(self) -> None:
        target = self._target
        try:
            con = duckdb.connect(target, read_only=self.read_only, config=_file_config(self.path))
        except duckdb.IOException as e:
            msg = str(e)
            if "lock" in msg.lower():
                m = _LOCK_PID.search(msg)
                raise WorkspaceLocked(target, int(m.group(1)) if m else None) from None
            raise LoupeError(f"cannot open workspace {target}: {msg}") from None
        except duckdb.Error as e:
            raise LoupeError(f"cannot open workspace {target}: {e}") from None
        try:
            self._register_udfs(con)
        except BaseException:
            con.close()
            raise
        self._epoch += 1
        self._root = _Connection(con, self._wrote, self.path, self if self.shared else None)
        self._dirty = False  # wrote since connecting: checkpoint before releasing
        self._root_thread = threading.get_ident()

    def _close_root(self, final: bool = False, quiet: bool = False) -> None:
        """Checkpoint (FILE.wal into FILE) and close every connection; a failed checkpoint is loud:
        raised at ``close()`` (``final``), warned at a release between operations."""
        root, self._root = self._root, None
        cursors, self._cursors = list(self._cursors), weakref.WeakSet()
        self._epoch += 1
        if root is None:
            return
        err = None
        if self.path is not None and not self.read_only and not quiet and (final or self._dirty):
            try:
                root._con.execute("CHECKPOINT")
            except duckdb.Error as e:
                err = e
        for c in cursors + [root]:
            with contextlib.suppress(Exception):
                c._con.close()
        if err is not None and (disk_full(err) or isinstance(err, (duckdb.IOException, duckdb.FatalException))):
            msg = checkpoint_message(self.path, err)
            if final:
                raise CheckpointError(msg)
            self.checkpoint_warning = msg
            warnings.warn(msg, RuntimeWarning, stacklevel=2)

    def _pinned(self) -> bool:
        return self.sql_transactions > 0 or self._open_transactions > 0 or self.session_pinned

    def pin_session(self) -> None:
        """Keep the connection until close(): SQL made session state (a TEMP table, an ATTACH) that a
        release would drop. Other processes then wait for this one's close (and time out meanwhile)."""
        self.session_pinned = True

    def _foreign_write(self) -> None:
        self._generation += 1  # another process wrote while we held no connection: drop every cache

    def hold(self) -> contextlib.AbstractContextManager:
        """Hold the connection for a block of operations (a shared store keeps it until the block ends;
        every API method does this for its own call). A no-op for in-memory and unshared stores."""
        return self._gate.hold() if self._gate is not None else _NULL

    @property
    def generation(self) -> int:
        """The data version caches key on: moved by every write of this process and, for a shared store,
        when another process wrote the file while we held no connection."""
        gate = self._gate
        if gate is not None and not gate.connected:
            gate.check_foreign()
        return self._generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._generation = value

    @property
    def sharing_stats(self) -> dict:
        """Connects, releases, yields to other processes and lock waits (shared stores; else empty)."""
        return dict(self._gate.stats) if self._gate is not None else {}

    def _wrote(self, sql: Any, done: bool) -> None:
        self._generation += 1
        self._dirty = True
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
    def _con(self) -> "_Connection":
        """The root connection (opened on demand for a shared store)."""
        if self._gate is not None:
            self._gate.ensure()
        if self._root is None:
            raise LoupeError(f"workspace {self._target} is closed")
        return self._root

    @property
    def con(self) -> "_Connection":
        """This thread's cursor on the workspace database."""
        root = self._con
        local = self._local
        cur = getattr(local, "cur", None)
        if cur is None or getattr(local, "epoch", None) != self._epoch:
            if threading.get_ident() == self._root_thread:
                cur = root
            else:
                cur = root.cursor()
                self._register_udfs(cur._con)  # the raw connection: registering is not a write
                self._cursors.add(cur)
            for name, obj in self._thread_views().items():  # views this thread registered before a release
                cur._con.register(name, obj)
            local.cur, local.epoch = cur, self._epoch
        return cur

    def _thread_views(self) -> dict:
        """Views this thread registered and has not unregistered (shared stores re-register them)."""
        views = getattr(self._local, "views", None)
        if views is None:
            views = self._local.views = {}
        return views

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the store closes (caches over its data free themselves this way; the
        store knows nothing of them)."""
        self._close_callbacks.append(callback)

    def close(self) -> None:
        """Checkpoint and close; raises CheckpointError when the checkpoint fails (the data is then safe
        in FILE.wal: keep FILE and FILE.wal together)."""
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()
        if self._gate is not None:
            self._gate.close()
        else:
            self._close_root(final=True)

    def checkpoint(self) -> None:
        """Move committed data from FILE.wal into FILE now (FILE alone is then the whole workspace)."""
        if self.path is None:
            return
        if self.read_only:
            raise LoupeError(f"workspace {self.path} is open read-only; a checkpoint writes")
        with self.hold():
            try:
                self._con._con.execute("CHECKPOINT")
            except duckdb.Error as e:
                raise CheckpointError(checkpoint_message(self.path, e)) from None

    # -- schema -----------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        con = self.con
        has_meta = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'loupe_meta'"
        ).fetchone()[0]
        if not has_meta:
            if self.read_only:
                raise LoupeError(f"{self.path} is not a Loupe workspace (no loupe_meta table)")
            n_tables = con.execute("SELECT count(*) FROM information_schema.tables").fetchone()[0]
            if n_tables:
                raise LoupeError(f"{self.path} is a DuckDB file but not a Loupe workspace")
            from .count_columns import DDL as count_columns_ddl  # generated: one column per count slot

            with self.transaction():
                for stmt in _sql_statements(_read_sql("engine.store", "schema.sql")) + list(count_columns_ddl):
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

        con.execute("SET enable_progress_bar = false")  # DuckDB would draw it on our stdout (CLI output)
        register(con)

    # -- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing block: commits on success, rolls back on any exception."""
        if self.read_only:
            raise LoupeError("workspace is open read-only; this operation writes")
        with self.hold(), self._write_lock:  # one writer per process: key assignment is max+1
            con = self.con
            if getattr(self._local, "in_tx", False):  # nested: join the outer transaction
                yield con
                return
            if self.in_sql_transaction():  # our BEGIN would fail and DuckDB would abort the user's work
                raise LoupeError("a transaction opened with SQL (BEGIN) is still open on this workspace; "
                                 "COMMIT or ROLLBACK it before this operation")
            con._con.execute("BEGIN TRANSACTION")  # not seen as a user's BEGIN
            self._dirty = True
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
            try:
                con._con.execute("COMMIT")
            except duckdb.Error as e:
                with contextlib.suppress(Exception):
                    con._con.execute("ROLLBACK")
                self.generation += 1
                if disk_full(e):
                    raise WorkspaceFull(self.path, str(e).splitlines()[0]) from None
                raise
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
        with self.hold():
            con = self.con
            rel = con.sql(query, params=params) if params is not None else con.sql(query)
            return to_arrow(rel)

    def scalar(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        with self.hold():
            con = self.con
            row = con.execute(query, params).fetchone() if params is not None else con.execute(query).fetchone()
            return None if row is None else row[0]


def checkpoint_message(path: str | None, err: BaseException) -> str:
    full = " (the disk is full)" if disk_full(err) else ""
    return (f"workspace {path}: checkpoint failed{full}: {str(err).splitlines()[0]}; committed data is safe in "
            f"{path}.wal: keep {path} and {path}.wal together (copy both) until `loupe checkpoint --db {path}` "
            f"succeeds")


def to_arrow(rel: "duckdb.DuckDBPyRelation | None") -> pa.Table:
    """A relation's rows as a pyarrow Table (an empty table for statements without a result)."""
    if rel is None:
        return pa.table({})
    res = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    if isinstance(res, pa.RecordBatchReader):
        res = res.read_all()
    return res
