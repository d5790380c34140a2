"""Run DSL queries: build the dataset's catalog, compile with ``queries``, execute on DuckDB, return Arrow.

``queries/`` only builds sqlglot trees; this module alone hands the SQL to the connection. The compiled
statement is always one SELECT built from our own nodes, so a query can only read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import functools

import duckdb
import pyarrow as pa
from sqlglot import exp

from queries import (CompiledQuery, DSLError, DSLNameError, DSLSyntaxError, DSLTypeError, OpenCatalog,
                     compile_query, to_sql)
from queries.arrow_eval import Unsupported
from queries.sqlbuild import object_branches

from engine.execution import item_cache
from engine.execution import object_cache
from engine.execution import object_scan
from engine.store.derived import catch_up, refresh_if_stale
from engine.errors import LoupeError, NotFoundError
from engine.execution.catalog import DuckDBCatalog

if TYPE_CHECKING:
    from engine.api.dataset import Dataset


def _also_loupe(cls: type) -> type:
    return type(cls.__name__, (cls, LoupeError), {"__module__": cls.__module__, "__doc__": cls.__doc__})


# the same DSL errors, also catchable as LoupeError (queries/ itself depends on nothing in engine/)
_AS_LOUPE = {c: _also_loupe(c) for c in (DSLError, DSLSyntaxError, DSLNameError, DSLTypeError)}


def dsl_errors(f):
    """Re-raise DSL errors as instances that are also ``LoupeError`` (same class name, same message)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except DSLError as e:
            cls = _AS_LOUPE.get(type(e))
            if cls is not None:
                e.__class__ = cls
            raise

    return wrapper


def run_name(run: Any) -> str | None:
    """A run given as a name or a ``ModelRun`` -> its name."""
    if run is None or isinstance(run, str):
        return run
    name = getattr(run, "name", None)
    if isinstance(name, str):
        return name
    raise LoupeError(f"run must be a run name or a ModelRun, not {type(run).__name__}")


@dsl_errors
def compile_for(ds: "Dataset", dsl: str, target: str = "items", run: Any = None, order_by: str | None = None,
                limit: int | None = None, offset: int | None = None, projection: str = "rows",
                strict: bool = True, derived: bool = True) -> CompiledQuery:
    """Compile ``dsl`` against the dataset's catalog (names and types checked before execution).

    ``derived=False`` reads only the base tables (no per-item counts or pre-extracted metadata): SQL
    for other engines that hold just those tables.
    """
    refresh_if_stale(ds.ws.store)  # raw SQL wrote since the derived tables were kept
    catalog = DuckDBCatalog(ds.ws.store, ds.id, derived=derived)
    if catalog.deferred() and catch_up(ds.ws.store, ds.id):  # the dataset's first query builds them
        catalog = DuckDBCatalog(ds.ws.store, ds.id, derived=derived)
    name = run_name(run)
    if name is not None and name not in catalog.runs():
        catalog.refresh()
        if name not in catalog.runs():
            known = ", ".join(catalog.runs()) or "none"
            raise NotFoundError(f"no run named '{name}' on dataset '{ds.name}' (its runs: {known})")
    _check_limits(limit, offset)
    key = (dsl, target, name, order_by, limit, offset, projection, strict, derived)
    hit = catalog.compiled(key)
    if hit is not None:
        return hit
    compiled = compile_query(dsl, catalog, target=target, run=name, order_by=order_by, limit=limit, offset=offset,
                             projection=projection, strict=strict)
    if compiled.plan is None or projection != "rows":  # object rows mostly come from the copy: SQL on demand
        compiled.sql("duckdb")
    catalog.remember(key, compiled)
    return compiled


def execute(ds: "Dataset", compiled: CompiledQuery) -> pa.Table:
    """Run a compiled query; DuckDB errors (e.g. overflow) become a LoupeError."""
    if not isinstance(compiled.expression, exp.Select):  # we only ever build SELECTs
        raise LoupeError("internal error: compiled query is not a SELECT")
    sql = compiled.sql("duckdb")
    if compiled.scores:  # similarity / uniqueness / uncertainty: computed by the engine, read by the SQL
        from engine.similarity.dsl import prepare

        prepare(ds, compiled.scores)
    try:
        return ds.ws.store.arrow(sql)
    except duckdb.Error as e:
        raise LoupeError(f"query failed while running: {e}") from None


def query_items(ds: "Dataset", dsl: str, run: Any = None, order_by: str | None = None, limit: int | None = None,
                offset: int | None = None) -> pa.Table:
    """Items matching ``dsl``: the filter runs in DuckDB; the rows come from the dataset's in-memory copy
    when there is one for the current data (engine/execution/item_cache.py), else from the same SQL with all columns."""
    store = ds.ws.store
    entry = item_cache.rows_for(store, ds.id)
    if entry is not None:
        # the filter's item ids (names and types checked here); without an ORDER BY of the query's own the
        # rows are by item_id: DuckDB returns them in any order (sorted here) unless a LIMIT needs the order
        keys = compile_for(ds, dsl, "items", run, order_by, limit, offset, projection="candidates")
        if keys.user_order:
            keys = compile_for(ds, dsl, "items", run, order_by, limit, offset, projection="keys")
        ids = execute(ds, keys).column(0)
        if store.generation == entry.generation:  # nothing wrote since the copy: ids and copy agree
            # None if an id is not an item of the dataset
            rows = item_cache.take(entry, ids) if keys.user_order else item_cache.take_in_order(entry, ids)
            if rows is not None:
                return rows
    return execute(ds, compile_for(ds, dsl, "items", run, order_by, limit, offset))


def query_objects(ds: "Dataset", dsl: str, run: Any = None, order_by: str | None = None,
                  limit: int | None = None, offset: int | None = None) -> pa.Table:
    """Objects matching ``dsl``: from the run's in-memory object copy when there is one for the current
    data and the query is one Arrow compute evaluates exactly (engine/execution/object_scan.py), else in DuckDB."""
    compiled = compile_for(ds, dsl, "objects", run, order_by, limit, offset)  # names and types checked here
    if compiled.plan is not None:
        name = run_name(run)
        store = ds.ws.store
        copy = object_cache.copy_for(store, ds.id, name, lambda: _all_objects(ds, name),
                                     lambda: _count_objects(ds, name))
        if copy is not None and store.generation == copy.generation:
            rows = object_scan.run(copy, compiled.plan, lambda sql: _read_item_values(ds, sql))
            if rows is not None and store.generation == copy.generation:  # item values read from the same data
                return rows
    if compiled.bounded is not None:  # a top-n read up to a boundary of its first sort key
        rows = _run_sql(ds, compiled.bounded_sql())
        if rows.num_rows == compiled.bounded_rows:  # n rows before the boundary: the query's top n
            return rows
    return execute(ds, compiled)


def _run_sql(ds: "Dataset", sql: str) -> pa.Table:
    try:
        return ds.ws.store.arrow(sql)
    except duckdb.Error as e:
        raise LoupeError(f"query failed while running: {e}") from None


def _read_item_values(ds: "Dataset", sql: str) -> pa.Table:
    try:
        return ds.ws.store.arrow(sql)
    except duckdb.Error as e:  # the plain SQL path reports it as the query's error
        raise Unsupported(str(e)) from None


def _count_objects(ds: "Dataset", run: str | None) -> int:
    """Current ground truth of the dataset plus the run's predictions (what a copy of them would hold)."""
    return int(ds.ws.store.scalar(
        """SELECT (SELECT count(*) FROM annotations WHERE dataset_id = $ds AND valid_to IS NULL)
                + (SELECT count(*) FROM predictions p JOIN runs r USING (run_id)
                   WHERE r.dataset_id = $ds AND r.name IS NOT DISTINCT FROM $run)""", {"ds": ds.id, "run": run}))


def _all_objects(ds: "Dataset", run: str | None) -> tuple[pa.Table, dict[str, pa.Table]]:
    """The dataset's items (item_id, reference_id) and, per side, every object row of the query ``""``
    with its item_id, ordered by item_id and key (engine/execution/object_cache.py builds its copy from them)."""
    store = ds.ws.store
    items = store.arrow("SELECT item_id, reference_id FROM items WHERE dataset_id = $ds ORDER BY item_id",
                        {"ds": ds.id})
    names, branches = object_branches(compile_for(ds, "", "objects", run).expression)
    return items, {side: store.arrow(to_sql(sel, "duckdb")).rename_columns(names) for side, sel in branches}


@dsl_errors
def explain(dsl: str, dialect: str = "duckdb", ds: "Dataset | None" = None, run: Any = None,
            objects: bool = False, pretty: bool = True) -> str:
    """The SQL a query runs. Without a dataset, names are not checked and ids are ``$placeholders``."""
    target = "objects" if objects else "items"
    if ds is None:
        compiled = compile_query(dsl, OpenCatalog(), target=target, run=run_name(run))
    else:
        compiled = compile_for(ds, dsl, target, run, derived=dialect == "duckdb")  # others: base tables only
    try:
        return to_sql(compiled.expression, dialect, pretty=pretty)
    except ValueError as e:
        if isinstance(e, DSLError):
            raise
        raise LoupeError(str(e)) from None


def _check_limits(limit: int | None, offset: int | None) -> None:
    for name, v in (("limit", limit), ("offset", offset)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise LoupeError(f"{name} must be a non-negative integer, got {v!r}")
