"""Slices: named subsets of a dataset's items (or objects), static or defined by a DSL query.

A static slice stores its members (``slice_items`` / ``slice_objects``). A dynamic slice stores its DSL
text and the SQL it compiled to, and is re-evaluated on every read, so it follows the data; ``freeze()``
snapshots it into a static slice. Names are unique per dataset.
"""
from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Iterable

import pyarrow as pa

from engine.errors import AlreadyExistsError, LoupeError, NotFoundError, ValidationError
from engine.execution.runner import compile_for, execute, run_name

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

KINDS = ("items", "objects")


class Slice:
    """A named subset of a dataset. Get one from ``ds.create_slice`` or ``ds.get_slice``.

    Example:
        >>> crowded = ds.create_slice("crowded", query="annotations.pedestrian >= 4")
        >>> crowded.items()                  # re-evaluated now
        >>> crowded.freeze()                 # from now on a fixed list of items
    """

    def __init__(self, dataset: "Dataset", slice_id: int, name: str, kind: str, query: str | None,
                 run: str | None):
        self.dataset = dataset
        self.id = slice_id
        self.name = name
        self.kind = kind
        self.query = query
        self.run = run

    def __repr__(self) -> str:
        what = f"query={self.query!r}" if self.dynamic else "static"
        return f"Slice({self.name!r}, {self.kind}, {what})"

    @property
    def dynamic(self) -> bool:
        return self.query is not None

    @property
    def _store(self):
        return self.dataset.ws.store

    # -- reading ----------------------------------------------------------------------------------
    def item_ids_sql(self) -> str:
        """SQL selecting the ``item_id`` of the slice's items (self-contained: ids are literals).

        Other modules (metrics by slice) join on it: ``... WHERE item_id IN (<this>)``.
        """
        if self.dynamic:
            ids = compile_for(self.dataset, self.query or "", self.kind, self.run, projection="ids", strict=False)
            sql = ids.sql("duckdb")
            if ids.scores:  # similarity / uncertainty scores: registered on this thread's connection
                from engine.similarity.dsl import prepare

                prepare(self.dataset, ids.scores)
            return sql if self.kind == "items" else f"SELECT DISTINCT item_id FROM ({sql})"
        if self.kind == "items":
            return f"SELECT item_id FROM slice_items WHERE slice_id = {int(self.id)}"
        return (f"SELECT a.item_id FROM slice_objects so JOIN annotations a ON a.ann_key = so.ann_key "
                f"WHERE so.slice_id = {int(self.id)} UNION SELECT p.item_id FROM slice_objects so "
                f"JOIN predictions p ON p.pred_key = so.pred_key WHERE so.slice_id = {int(self.id)}")

    def items(self) -> pa.Table:
        """The slice's items, with the columns of ``ds.items()``, in dataset order."""
        return execute(self.dataset, compile_for(self.dataset, f'slice("{_escape(self.name)}")', "items"))

    def reference_ids(self) -> list[str]:
        return self.items().column("reference_id").to_pylist()

    def objects(self, run: Any = None) -> pa.Table:
        """Objects of the slice: its own objects (object slice) or those on its items (item slice).

        ``run`` adds the run's predictions with their match rows; an object slice defaults to its run.
        """
        run = run_name(run) if run is not None else self.run
        return execute(self.dataset, compile_for(self.dataset, f'slice("{_escape(self.name)}")', "objects", run))

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        if self.kind == "objects":
            return self.objects().num_rows
        return int(self._store.scalar(f"SELECT count(*) FROM ({self.item_ids_sql()})"))

    def sql(self, dialect: str = "duckdb") -> str:
        """The SQL of a dynamic slice's query (for static slices: the membership query)."""
        if not self.dynamic:
            return self.item_ids_sql()
        return compile_for(self.dataset, self.query or "", self.kind, self.run).sql(dialect, pretty=True)

    # -- changing -----------------------------------------------------------------------------------
    def _static(self, what: str) -> None:
        if self.dynamic:
            raise LoupeError(f"slice '{self.name}' is dynamic (query {self.query!r}); freeze() it before {what}")

    def append(self, members: Iterable[str] | pa.Table) -> int:
        """Add items by reference_id (object slices: a table with ann_key / pred_key columns).

        Returns:
            how many were added (members already in the slice are skipped).
        """
        self._static("appending")
        if self.kind == "objects":
            return _add_objects(self, _object_keys(members))
        ids = _item_ids(self.dataset, members)
        with self._store.transaction() as con:
            con.register("__slice_add", ids)
            try:
                n = con.execute(
                    """INSERT INTO slice_items SELECT DISTINCT $sid, a.item_id FROM __slice_add a
                       WHERE NOT EXISTS (SELECT 1 FROM slice_items s WHERE s.slice_id = $sid AND s.item_id = a.item_id)""",
                    {"sid": self.id}).fetchone()[0]
            finally:
                con.unregister("__slice_add")
        return int(n)

    def remove(self, members: Iterable[str] | pa.Table) -> int:
        """Remove items by reference_id (object slices: a table with ann_key / pred_key). Returns how many."""
        self._static("removing")
        if self.kind == "objects":
            keys = _object_keys(members)
            with self._store.transaction() as con:
                con.register("__slice_rm", keys)
                try:
                    n = con.execute(
                        """DELETE FROM slice_objects s WHERE s.slice_id = $sid AND EXISTS (SELECT 1 FROM __slice_rm r
                           WHERE s.ann_key IS NOT DISTINCT FROM r.ann_key AND s.pred_key IS NOT DISTINCT FROM r.pred_key)""",
                        {"sid": self.id}).fetchone()[0]
                finally:
                    con.unregister("__slice_rm")
            return int(n)
        ids = _item_ids(self.dataset, members)
        with self._store.transaction() as con:
            con.register("__slice_rm", ids)
            try:
                n = con.execute("DELETE FROM slice_items WHERE slice_id = $sid AND item_id IN (SELECT item_id FROM __slice_rm)",
                                {"sid": self.id}).fetchone()[0]
            finally:
                con.unregister("__slice_rm")
        return int(n)

    def freeze(self) -> "Slice":
        """Snapshot a dynamic slice: store its current members and drop the query. Returns self."""
        if not self.dynamic:
            return self
        ids = compile_for(self.dataset, self.query or "", self.kind, self.run, projection="ids", strict=False)
        sql = ids.sql("duckdb")
        with self._store.transaction() as con:
            if self.kind == "items":
                con.execute(f"INSERT INTO slice_items SELECT DISTINCT {int(self.id)}, item_id FROM ({sql})")
            else:
                con.execute(f"INSERT INTO slice_objects SELECT DISTINCT {int(self.id)}, ann_key, pred_key FROM ({sql})")
            con.execute("UPDATE slices SET query = NULL, compiled_sql = NULL WHERE slice_id = ?", [self.id])
        self.query = None
        return self

    def delete(self) -> None:
        delete_slice(self.dataset, self.name)

    def export(self, format: str, path: str | None = None, **options: Any) -> Any:
        """Export the slice's items and annotations with an exporter of ``engine.io`` (looked up now).

        The exporter module ``engine.io.<format>`` must provide ``export_slice(dataset, path, item_ids_sql,
        **options)`` or an ``export``/``export_<format>`` taking ``reference_ids=`` (or ``item_ids=``).
        """
        try:
            mod = importlib.import_module(f"engine.io.{format}")
        except ModuleNotFoundError:
            raise LoupeError(f"no exporter for format '{format}' (engine.io.{format} is not installed)") from None
        fn = getattr(mod, "export_slice", None)
        if fn is not None:
            return fn(self.dataset, path, self.item_ids_sql(), **options)
        for name in (f"export_{format}", "export"):
            fn = getattr(mod, name, None)
            if fn is None:
                continue
            params = inspect.signature(fn).parameters
            if "reference_ids" in params:
                return fn(self.dataset, path, reference_ids=self.reference_ids(), **options)
            if "item_ids" in params:
                ids = self._store.arrow(self.item_ids_sql()).column(0).to_pylist()
                return fn(self.dataset, path, item_ids=ids, **options)
        raise LoupeError(f"engine.io.{format} has no exporter that takes a subset of items")


# -- storage ------------------------------------------------------------------------------------------
def create_slice(ds: "Dataset", name: str, reference_ids: Iterable[str] | None = None, query: str | None = None,
                 run: Any = None, objects: bool = False) -> Slice:
    """Create a static slice (``reference_ids``) or a dynamic one (``query``, optionally in a run).

    Get-or-create: a slice of the same name and definition (query and run, or the same items) is
    returned as it is; the same name with another definition raises AlreadyExistsError.
    """
    if not isinstance(name, str) or not name.strip():
        raise LoupeError("slice name must be a non-empty string")
    if reference_ids is not None and query is not None:
        raise LoupeError("give either reference_ids (static slice) or query (dynamic slice), not both")
    if isinstance(reference_ids, str):
        raise LoupeError("reference_ids must be a list of reference ids, not one string")
    kind = "objects" if objects else "items"
    if objects and reference_ids is not None:
        raise LoupeError("object slices are made from a query (or append() a query_objects() table)")
    rname = run_name(run)
    compiled_sql = None
    if query is not None:  # validate now: names, types, run
        compiled_sql = compile_for(ds, query, kind, rname, projection="ids").sql("duckdb")
    store = ds.ws.store
    ids = _item_ids(ds, reference_ids) if reference_ids is not None else None
    with store.transaction() as con:
        run_id = None
        if rname is not None:
            run_id = con.execute("SELECT run_id FROM runs WHERE name = ? AND dataset_id = ?", [rname, ds.id]).fetchone()[0]
        old = con.execute("SELECT slice_id, kind, query, run_id FROM slices WHERE dataset_id = ? AND name = ?",
                          [ds.id, name]).fetchone()
        if old is not None:  # get-or-create: the same definition again returns the slice (re-runnable scripts)
            if (old[1], old[2], old[3]) == (kind, query, run_id) and _same_members(con, int(old[0]), ids):
                return Slice(ds, int(old[0]), name, kind, query, rname)
            raise AlreadyExistsError(f"slice '{name}' already exists in dataset '{ds.name}' with another "
                                     "definition (delete_slice it first)")
        sid = store.next_key("slices", "slice_id")
        con.execute("INSERT INTO slices VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    [sid, ds.id, name, kind, query, compiled_sql, run_id])
        if ids is not None:
            con.register("__slice_new", ids)
            try:
                con.execute("INSERT INTO slice_items SELECT DISTINCT ?, item_id FROM __slice_new", [sid])
            finally:
                con.unregister("__slice_new")
    return Slice(ds, sid, name, kind, query, rname)


def _same_members(con: Any, slice_id: int, ids: pa.Table | None) -> bool:
    """Whether a static slice holds exactly the items ``ids`` (dynamic: ``ids`` is None, nothing to compare)."""
    if ids is None:
        return True
    con.register("__slice_cmp", ids)
    try:
        return not con.execute(
            """(SELECT item_id FROM slice_items WHERE slice_id = ? EXCEPT SELECT item_id FROM __slice_cmp)
               UNION ALL (SELECT item_id FROM __slice_cmp EXCEPT SELECT item_id FROM slice_items WHERE slice_id = ?)
               LIMIT 1""", [slice_id, slice_id]).fetchone()
    finally:
        con.unregister("__slice_cmp")


def list_slices(ds: "Dataset") -> list[Slice]:
    rows = ds.ws.store.con.execute(
        """SELECT s.slice_id, s.name, s.kind, s.query, r.name FROM slices s LEFT JOIN runs r ON r.run_id = s.run_id
           WHERE s.dataset_id = ? ORDER BY s.slice_id""", [ds.id]).fetchall()
    return [Slice(ds, int(sid), n, k, q, r) for sid, n, k, q, r in rows]


def get_slice(ds: "Dataset", name: str) -> Slice:
    for s in list_slices(ds):
        if s.name == name:
            return s
    known = [s.name for s in list_slices(ds)]
    raise NotFoundError(f"no slice named '{name}' in dataset '{ds.name}'" + (f"; slices: {', '.join(known)}" if known else ""))


def delete_slice(ds: "Dataset", name: str) -> None:
    s = get_slice(ds, name)
    with ds.ws.store.transaction() as con:
        for table in ("slice_items", "slice_objects", "slices"):
            con.execute(f"DELETE FROM {table} WHERE slice_id = ?", [s.id])


def slices_table(store: Any, dataset_id: int | None = None) -> pa.Table:
    """All slices (of one dataset or of the workspace): dataset, name, kind, dynamic query, run, size."""
    where = "" if dataset_id is None else f"WHERE s.dataset_id = {int(dataset_id)}"
    return store.arrow(
        f"""SELECT d.name AS dataset, s.name, s.kind, s.query, r.name AS run,
                   CASE WHEN s.query IS NOT NULL THEN NULL
                        WHEN s.kind = 'items' THEN (SELECT count(*) FROM slice_items si WHERE si.slice_id = s.slice_id)
                        ELSE (SELECT count(*) FROM slice_objects so WHERE so.slice_id = s.slice_id) END AS size,
                   s.created_at
            FROM slices s JOIN datasets d USING (dataset_id) LEFT JOIN runs r ON r.run_id = s.run_id
            {where} ORDER BY d.name, s.slice_id""")


# -- helpers ---------------------------------------------------------------------------------------
def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _item_ids(ds: "Dataset", reference_ids: Iterable[str] | pa.Table) -> pa.Table:
    """reference ids -> table(item_id); any unknown id is a ValidationError naming it."""
    if isinstance(reference_ids, pa.Table):
        refs = reference_ids.column("reference_id").cast(pa.string())
    else:
        refs = pa.array([str(r) for r in reference_ids], pa.string())
    t = pa.table({"reference_id": refs})
    store = ds.ws.store
    store.con.register("__slice_refs", t)
    try:
        out = store.arrow("""SELECT r.reference_id, i.item_id FROM __slice_refs r
                             LEFT JOIN items i ON i.reference_id = r.reference_id AND i.dataset_id = ?""", [ds.id])
    finally:
        store.con.unregister("__slice_refs")
    missing = out.filter(out.column("item_id").is_null())
    if missing.num_rows:
        first = missing.column("reference_id")[0].as_py()
        more = f" (and {missing.num_rows - 1} more)" if missing.num_rows > 1 else ""
        raise ValidationError(f"unknown reference_id in dataset '{ds.name}'{more}", record=f"reference_id '{first}'",
                              field="reference_id")
    return out.select(["item_id"])


def _object_keys(members: Any) -> pa.Table:
    if not isinstance(members, pa.Table) or not {"ann_key", "pred_key"} <= set(members.column_names):
        raise LoupeError("object slice members must be a table with ann_key and pred_key columns "
                         "(as returned by ds.query_objects)")
    return members.select(["ann_key", "pred_key"]).cast(pa.schema([("ann_key", pa.int64()), ("pred_key", pa.int64())]))


def _add_objects(s: Slice, keys: pa.Table) -> int:
    with s._store.transaction() as con:
        con.register("__slice_add", keys)
        try:
            n = con.execute(
                """INSERT INTO slice_objects SELECT DISTINCT $sid, a.ann_key, a.pred_key FROM __slice_add a
                   WHERE NOT EXISTS (SELECT 1 FROM slice_objects s WHERE s.slice_id = $sid
                       AND s.ann_key IS NOT DISTINCT FROM a.ann_key AND s.pred_key IS NOT DISTINCT FROM a.pred_key)""",
                {"sid": s.id}).fetchone()[0]
        finally:
            con.unregister("__slice_add")
    return int(n)


def _hold() -> None:
    from engine.store.sharing import hold_methods

    hold_methods(Slice, lambda s: s.dataset.ws.store)  # each public call is one operation on a shared store


_hold()
