"""Embedding sets: add vectors computed elsewhere (or by ``compute``), list, delete and load them.

A set belongs to one dataset and one level: ``item`` (one vector per item), ``gt`` (per current ground-truth
annotation) or ``prediction`` (per prediction of one run). Input is validated as a whole before anything is
written (dimension, finiteness, ids known at that level, no id twice); writing a set's rows replaces rows
with the same ids, in one transaction.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import AlreadyExistsError, LoupeError, NotFoundError, ValidationError
from engine.execution.runner import run_name
from engine.store.database import to_arrow
from . import schema

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

LEVELS = ("item", "gt", "prediction")
ID_COLUMN = {"item": "reference_id", "gt": "annotation_id", "prediction": "prediction_id"}
_VECTOR_NAMES = ("vector", "embedding", "hash")


@dataclass(frozen=True)
class SetInfo:
    """One row of ``embedding_sets``."""

    set_id: int
    dataset_id: int
    name: str
    level: str
    run_id: int | None
    model: str | None
    kind: str
    dim: int
    version: int

    @property
    def id_column(self) -> str:
        return ID_COLUMN[self.level]


@dataclass
class Batch:
    """Validated input: per row the item and object it names, and the vectors (float32 [N, d]) or hashes (uint64 [N])."""

    item_id: np.ndarray
    object_id: pa.Array  # strings; nulls at item level
    values: np.ndarray
    kind: str

    @property
    def dim(self) -> int:
        return 64 if self.kind == "hash" else int(self.values.shape[1])


# -- catalog -------------------------------------------------------------------------------------
def get_set(ds: "Dataset", name: str | None, kind: str | None = None) -> SetInfo:
    """The named set (``None``: the dataset's only set, or its only set of ``kind``)."""
    sets = _all_sets(ds)
    if name is None:
        pick = [s for s in sets if kind is None or s.kind == kind]
        if len(pick) == 1:
            return pick[0]
        names = ", ".join(s.name for s in pick) or "none"
        raise LoupeError(f"name the embedding set to use (embeddings=...); dataset '{ds.name}' has: {names}")
    for s in sets:
        if s.name == name:
            return s
    names = ", ".join(s.name for s in sets) or "none"
    raise NotFoundError(f"no embedding set named '{name}' on dataset '{ds.name}' (its sets: {names})")


_SETS: "weakref.WeakKeyDictionary[Any, tuple[int, dict[int, list[SetInfo]]]]" = weakref.WeakKeyDictionary()


def _all_sets(ds: "Dataset") -> list[SetInfo]:
    """The dataset's sets, read once per store generation (a search does not pay a catalog query)."""
    store = ds.ws.store
    hit = _SETS.get(store)
    if hit is not None and hit[0] == store.generation and ds.id in hit[1] and store.caching:
        return hit[1][ds.id]
    generation = store.generation
    try:
        rows = store.con.execute(
            """SELECT set_id, dataset_id, name, level, run_id, model, kind, dim, version FROM embedding_sets
               WHERE dataset_id = $ds ORDER BY set_id""", {"ds": ds.id}).fetchall()
    except duckdb.CatalogException:  # a read-only workspace written before the table existed
        raise NotFoundError(f"dataset '{ds.name}' has no embedding sets (compute or add some first)") from None
    out = [SetInfo(*r) for r in rows]
    if store.caching and store.generation == generation:
        per = hit[1] if hit is not None and hit[0] == generation else {}
        per[ds.id] = out
        _SETS[store] = (generation, per)
    return out


def list_sets(ds: "Dataset") -> pa.Table:
    """name, level, run, model, kind, dim, count, created_at of every set of the dataset."""
    store = ds.ws.store
    if not schema.present(store):
        return pa.table({c: pa.array([], t) for c, t in (
            ("name", pa.string()), ("level", pa.string()), ("run", pa.string()), ("model", pa.string()),
            ("kind", pa.string()), ("dim", pa.int32()), ("count", pa.int64()), ("created_at", pa.timestamp("us")))})
    sets = store.arrow("SELECT set_id, dim, kind FROM embedding_sets WHERE dataset_id = $ds", {"ds": ds.id})
    counts: dict[int, int] = {}
    for sid, dim, kind in zip(*(sets.column(c).to_pylist() for c in ("set_id", "dim", "kind"))):
        t = "embedding_hashes" if kind == "hash" else schema.vector_table(dim)
        counts[sid] = int(store.scalar(f"SELECT count(*) FROM {t} WHERE set_id = $s", {"s": sid}))
    out = store.arrow(
        """SELECT s.set_id, s.name, s.level, r.name AS run, s.model, s.kind, s.dim, s.created_at
           FROM embedding_sets s LEFT JOIN runs r ON r.run_id = s.run_id
           WHERE s.dataset_id = $ds ORDER BY s.set_id""", {"ds": ds.id})
    n = pa.array([counts.get(s, 0) for s in out.column("set_id").to_pylist()], pa.int64())
    return out.drop_columns(["set_id"]).add_column(6, "count", n)


def delete_set(ds: "Dataset", name: str) -> None:
    """Delete a set, its rows and its 2-D maps."""
    info = get_set(ds, name)
    with ds.ws.store.transaction() as con:
        _delete_rows(con, info)
        con.execute("DELETE FROM embedding_maps WHERE set_id = $s", {"s": info.set_id})
        con.execute("DELETE FROM embedding_sets WHERE set_id = $s", {"s": info.set_id})
    from .hnsw import remove_files

    remove_files(ds.ws.store.path, info.set_id)


def delete_dataset_sets(store: Any, dataset_id: int) -> None:
    """Every set of a dataset (inside the caller's transaction; for dataset deletion)."""
    if not schema.present(store):
        return
    con = store.con
    for row in con.execute("""SELECT set_id, dataset_id, name, level, run_id, model, kind, dim, version
                              FROM embedding_sets WHERE dataset_id = $ds""", {"ds": dataset_id}).fetchall():
        info = SetInfo(*row)
        _delete_rows(con, info)
        con.execute("DELETE FROM embedding_maps WHERE set_id = $s", {"s": info.set_id})
        from .hnsw import remove_files

        remove_files(store.path, info.set_id)
    con.execute("DELETE FROM embedding_sets WHERE dataset_id = $ds", {"ds": dataset_id})


def _delete_rows(con: Any, info: SetInfo) -> None:
    if info.kind == "hash":
        con.execute("DELETE FROM embedding_hashes WHERE set_id = $s", {"s": info.set_id})
    elif con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = $t",
                     {"t": schema.vector_table(info.dim)}).fetchone()[0]:
        con.execute(f"DELETE FROM {schema.vector_table(info.dim)} WHERE set_id = $s", {"s": info.set_id})


# -- adding ----------------------------------------------------------------------------------------
def add_embeddings(ds: "Dataset", name: str, vectors: Any, level: str = "item", run: Any = None,
                   model: str | None = None) -> dict[str, Any]:
    """Validate and store vectors (or 64-bit hashes) for items or objects; see ``Dataset.add_embeddings``."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("an embedding set needs a non-empty name", field="name")
    if level not in LEVELS:
        raise ValidationError(f"level must be one of {', '.join(LEVELS)}, got {level!r}", field="level")
    run_id = _run_id(ds, level, run)
    table = _as_table(vectors, level)
    batch = _validate(ds, table, level, run_id)
    return write(ds, name, batch, level, run_id, model)


def write(ds: "Dataset", name: str, batch: Batch, level: str, run_id: int | None, model: str | None) -> dict[str, Any]:
    """Store a validated batch into the set ``name`` (created on first write), replacing rows with the same ids."""
    store = ds.ws.store
    if store.read_only:
        raise LoupeError("workspace is open read-only; adding embeddings writes")
    existing = None
    try:
        existing = get_set(ds, name)
    except NotFoundError:
        pass
    if existing is not None:
        if (existing.level, existing.run_id) != (level, run_id):
            raise AlreadyExistsError(f"embedding set '{name}' exists at level '{existing.level}'"
                                     f"{' of another run' if existing.level == level else ''}; "
                                     f"delete it or pick another name")
        if existing.kind != batch.kind or (existing.dim != batch.dim and len(batch.item_id)):
            raise ValidationError(f"set '{name}' holds {existing.kind} rows of dimension {existing.dim}; "
                                  f"got {batch.kind} rows of dimension {batch.dim}", field="vector")
    n = len(batch.item_id)
    with store.transaction() as con:
        if existing is None:
            set_id = store.next_key("embedding_sets", "set_id")
            con.execute("""INSERT INTO embedding_sets VALUES ($s, $ds, $name, $level, $run, $model, $kind, $dim,
                           $now, 0)""", {"s": set_id, "ds": ds.id, "name": name, "level": level, "run": run_id,
                                         "model": model, "kind": batch.kind, "dim": batch.dim,
                                         "now": datetime.now(timezone.utc).replace(tzinfo=None)})
        else:
            set_id = existing.set_id
        if n:
            rows = pa.table({"set_id": pa.array(np.full(n, set_id, np.int32)),
                             "item_id": pa.array(batch.item_id.astype(np.int64)),
                             "object_id": batch.object_id.cast(pa.string())})
            if batch.kind == "hash":
                target = "embedding_hashes"
                rows = rows.append_column("hash", pa.array(batch.values.astype(np.uint64)))
            else:
                target = schema.vector_table(batch.dim)
                con.execute(schema.vector_ddl(batch.dim))
                flat = pa.array(np.ascontiguousarray(batch.values, np.float32).reshape(-1))
                rows = rows.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, batch.dim))
            con.register("__emb_rows", rows)
            try:
                if existing is not None:
                    con.execute(f"""DELETE FROM {target} t USING __emb_rows r WHERE t.set_id = r.set_id
                                    AND t.item_id = r.item_id AND t.object_id IS NOT DISTINCT FROM r.object_id""")
                con.execute(f"INSERT INTO {target} SELECT * FROM __emb_rows")
            finally:
                con.unregister("__emb_rows")
            con.execute("UPDATE embedding_sets SET version = version + 1 WHERE set_id = $s", {"s": set_id})
    return {"name": name, "level": level, "kind": batch.kind, "dim": batch.dim, "written": n}


def _run_id(ds: "Dataset", level: str, run: Any) -> int | None:
    name = run_name(run)
    if level != "prediction":
        if name is not None:
            raise ValidationError(f"run= is only for level='prediction' (got level='{level}')", field="run")
        return None
    if name is None:
        raise ValidationError("level='prediction' needs run= (the run whose predictions are embedded)", field="run")
    rid = ds.ws.store.scalar("SELECT run_id FROM runs WHERE name = $n AND dataset_id = $ds", {"n": name, "ds": ds.id})
    if rid is None:
        raise NotFoundError(f"no run named '{name}' on dataset '{ds.name}'")
    return int(rid)


def _as_table(vectors: Any, level: str) -> pa.Table:
    """Any accepted input -> an Arrow table of id column(s) + ``vector`` (list of float) or ``hash`` (uint64)."""
    idc = ID_COLUMN[level]
    if isinstance(vectors, pa.Table):
        t = vectors
        if level != "item" and idc not in t.column_names:
            for alt in ("annotation_id", "prediction_id", "object_id"):
                if alt in t.column_names:
                    t = t.rename_columns([idc if c == alt else c for c in t.column_names])
                    break
        vec = next((c for c in _VECTOR_NAMES if c in t.column_names), None)
        if idc not in t.column_names or vec is None:
            raise ValidationError(f"the table needs columns '{idc}' and 'vector' (got {', '.join(t.column_names)})",
                                  field=idc if idc not in t.column_names else "vector")
        keep = [idc] + (["reference_id"] if level != "item" and "reference_id" in t.column_names else [])
        out = t.select(keep)
        return out.append_column("vector" if vec != "hash" else "hash", t.column(vec))
    if isinstance(vectors, Mapping):
        ids = list(vectors.keys())
        values = list(vectors.values())
        if ids and isinstance(ids[0], tuple):  # (reference_id, object id) keys
            refs = [k[0] for k in ids]
            ids = [k[1] for k in ids]
            base = {"reference_id": pa.array(refs, pa.string()), idc: pa.array(ids, pa.string())} \
                if level != "item" else {idc: pa.array(ids, pa.string())}
        else:
            base = {idc: pa.array([str(i) for i in ids], pa.string())}
        if values and np.isscalar(values[0]) and np.asarray(values[0]).dtype == np.uint64:
            return pa.table({**base, "hash": pa.array(np.asarray(values, np.uint64))})
        return pa.table({**base, "vector": _list_array(values)})
    if isinstance(vectors, tuple) and len(vectors) == 2:
        ids, arr = vectors
        arr = np.asarray(arr)
        ids = [str(i) for i in (ids.to_pylist() if hasattr(ids, "to_pylist") else list(ids))]
        if len(ids) != len(arr):
            raise ValidationError(f"{len(ids)} ids but {len(arr)} vectors", field="vector")
        base = {idc: pa.array(ids, pa.string())}
        if arr.ndim == 1 and arr.dtype == np.uint64:
            return pa.table({**base, "hash": pa.array(arr)})
        if arr.ndim != 2:
            raise ValidationError(f"vectors must be a 2-D array [n, dim] (or uint64 hashes [n]); got shape "
                                  f"{arr.shape}", field="vector")
        flat = pa.array(np.ascontiguousarray(arr, np.float64).reshape(-1)) if arr.dtype.kind != "f" else \
            pa.array(np.ascontiguousarray(arr).reshape(-1))
        return pa.table({**base, "vector": pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])})
    raise ValidationError("vectors must be a pyarrow.Table, a dict id -> vector or (ids, numpy array); "
                          f"got {type(vectors).__name__}", field="vector")


def _list_array(values: list) -> pa.Array:
    try:
        return pa.array([None if v is None else np.asarray(v, np.float64).reshape(-1) for v in values],
                        pa.list_(pa.float64()))
    except (TypeError, ValueError) as e:
        raise ValidationError(f"vectors must be sequences of numbers ({e})", field="vector") from None


def _matrix(col: pa.ChunkedArray | pa.Array, ids: list[str], idc: str) -> np.ndarray:
    """A list / fixed-size-list column -> float32 [N, d]; the first row with another length, a null or a
    non-finite value is named."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise ValidationError(f"column 'vector' must hold lists of numbers, not {arr.type}", field="vector")
    if arr.null_count:
        i = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValidationError("missing vector", record=f"{idc} '{ids[i]}'", field="vector")
    if pa.types.is_fixed_size_list(arr.type):
        lengths = np.full(len(arr), arr.type.list_size)
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(arr) and (lengths != lengths[0]).any():
        i = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ValidationError(f"vector has {lengths[i]} values, the first has {lengths[0]} (mixed dimensions)",
                              record=f"{idc} '{ids[i]}'", field="vector")
    if len(arr) and lengths[0] == 0:
        raise ValidationError("empty vector", record=f"{idc} '{ids[0]}'", field="vector")
    flat = pc.list_flatten(arr)
    if flat.null_count:
        bad = np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0] // lengths[0]
        raise ValidationError("vector holds a null", record=f"{idc} '{ids[int(bad)]}'", field="vector")
    if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
        raise ValidationError(f"vector values must be numbers, not {flat.type}", field="vector")
    raw = flat.to_numpy(zero_copy_only=False)
    m = (raw if raw.dtype == np.float32 else raw.astype(np.float64, copy=False)).reshape(len(arr), -1) if len(arr) \
        else np.zeros((0, 0), np.float32)
    finite = np.isfinite(m).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValidationError("vector holds NaN or infinity", record=f"{idc} '{ids[i]}'", field="vector")
    big = (np.abs(m).max(axis=1) > np.finfo(np.float32).max) if m.size and m.dtype != np.float32 else np.zeros(0, bool)
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise ValidationError("vector value out of float32 range", record=f"{idc} '{ids[i]}'", field="vector")
    return m.astype(np.float32, copy=False)


def _validate(ds: "Dataset", t: pa.Table, level: str, run_id: int | None) -> Batch:
    """Resolve ids to items / objects and check every row; the first bad row is named."""
    idc = ID_COLUMN[level]
    idcol = t.column(idc)
    if idcol.null_count:
        raise ValidationError("missing id", record=f"row {int(np.flatnonzero(idcol.is_null().to_numpy(zero_copy_only=False))[0])}",
                              field=idc)
    ids = pc.cast(idcol, pa.string()).to_pylist()
    has_ref = "reference_id" in t.column_names and level != "item"
    refs = pc.cast(t.column("reference_id"), pa.string()).to_pylist() if has_ref else None
    if "hash" in t.column_names or pa.types.is_unsigned_integer(t.column(t.column_names[-1]).type):
        hcol = t.column(t.column_names[-1])
        if not pa.types.is_integer(hcol.type):
            raise ValidationError(f"hash column must be unsigned 64-bit integers, not {hcol.type}", field="hash")
        if hcol.null_count:
            i = int(np.flatnonzero(hcol.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValidationError("missing hash", record=f"{idc} '{ids[i]}'", field="hash")
        values = hcol.to_numpy().astype(np.uint64)
        kind = "hash"
    else:
        values = _matrix(t.column("vector"), ids, idc)
        kind = "vector"
    keys = pa.table({"rn": pa.array(np.arange(len(ids), dtype=np.int64)), "id": pa.array(ids, pa.string()),
                     "ref": pa.array(refs if refs is not None else [None] * len(ids), pa.string())})
    store = ds.ws.store
    con = store.con
    con.register("__emb_keys", keys)
    try:
        if level == "item":
            sql = """SELECT k.rn, i.item_id, NULL::VARCHAR AS object_id
                     FROM __emb_keys k LEFT JOIN items i ON i.dataset_id = $ds AND i.reference_id = k.id
                     ORDER BY k.rn"""
            params: dict[str, Any] = {"ds": ds.id}
        else:
            objects = ("""SELECT a.item_id, a.annotation_id AS oid FROM annotations a
                          WHERE a.dataset_id = $ds AND a.valid_to IS NULL""" if level == "gt" else
                       """SELECT p.item_id, p.annotation_id AS oid FROM predictions p WHERE p.run_id = $run""")
            sql = f"""SELECT k.rn, any_value(o.item_id) AS item_id, any_value(o.oid) AS object_id,
                             count(o.item_id) AS n_match
                      FROM __emb_keys k LEFT JOIN items i ON i.dataset_id = $ds AND i.reference_id = k.ref
                      LEFT JOIN ({objects}) o ON o.oid = k.id AND (k.ref IS NULL OR o.item_id = i.item_id)
                      GROUP BY k.rn ORDER BY k.rn"""
            params = {"ds": ds.id} | ({"run": run_id} if level == "prediction" else {})
        got = to_arrow(con.sql(sql, params=params))
    finally:
        con.unregister("__emb_keys")
    item_id = got.column("item_id")
    if item_id.null_count:
        i = int(np.flatnonzero(item_id.is_null().to_numpy(zero_copy_only=False))[0])
        where = {"item": "an item of the dataset", "gt": "a current ground-truth annotation of the dataset",
                 "prediction": "a prediction of the run"}[level]
        ref = f" on item '{refs[i]}'" if refs is not None and refs[i] is not None else ""
        raise ValidationError(f"unknown id: not {where}{ref}", record=f"{idc} '{ids[i]}'", field=idc)
    if level != "item":
        many = got.column("n_match").to_numpy() > 1
        if many.any():
            i = int(np.flatnonzero(many)[0])
            raise ValidationError("ambiguous object id (several items have it): add a reference_id column",
                                  record=f"{idc} '{ids[i]}'", field=idc)
    iid = item_id.to_numpy()
    oid = got.column("object_id").combine_chunks()
    key = pa.table({"i": pa.array(iid), "o": oid})
    dup = key.group_by(["i", "o"], use_threads=False).aggregate([([], "count_all")])
    if len(dup) != len(key):
        seen: set = set()
        for i, (a, b) in enumerate(zip(iid.tolist(), oid.to_pylist())):
            if (a, b) in seen:
                raise ValidationError("duplicate id in the batch", record=f"{idc} '{ids[i]}'", field=idc)
            seen.add((a, b))
    return Batch(iid.astype(np.int64), oid, values, kind)


# -- loading ----------------------------------------------------------------------------------------
def load(ds: "Dataset", info: SetInfo) -> pa.Table:
    """The set's rows (item_id, object_id, vector | hash, reference_id) ordered by item_id, object_id."""
    store = ds.ws.store
    t, value = ("embedding_hashes", "hash") if info.kind == "hash" else (schema.vector_table(info.dim), "vector")
    # sorted here rather than by ORDER BY: DuckDB sorting 512-wide rows is ~4x slower than reading them
    rows = store.arrow(f"SELECT item_id, object_id, {value} FROM {t} WHERE set_id = $s", {"s": info.set_id})
    rows = rows.take(pc.sort_indices(rows.select(["item_id", "object_id"]),
                                     [("item_id", "ascending"), ("object_id", "ascending")]))
    items = store.arrow("SELECT item_id, reference_id FROM items WHERE dataset_id = $ds ORDER BY item_id",
                        {"ds": info.dataset_id})
    from engine.execution.copies import positions

    pos, ok = positions(items.column("item_id").to_numpy(), rows.column("item_id").to_numpy())
    refs = items.column("reference_id").combine_chunks().take(pa.array(pos, mask=~ok)) if len(rows) else \
        pa.array([], pa.string())
    return rows.append_column("reference_id", refs)


def vectors_of(table: pa.Table, dim: int) -> np.ndarray:
    """The ``vector`` column of a loaded set as float32 [N, dim] (zero-copy where Arrow allows)."""
    col = table.column("vector").combine_chunks()
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    return np.asarray(flat, np.float32).reshape(len(col), dim)
