"""Similarity search over an embedding set: exact by default, HNSW (``usearch``) on request.

Exact search keeps the set in memory as one L2-normalised float32 matrix (rows ordered by item_id,
object_id) and answers with one matrix-vector product and ``argpartition``: measured on 2 cores, 100k x 512
in ~7 ms and 1M x 512 in ~90 ms, faster than faiss-cpu's flat index and DuckDB's ``array_cosine_similarity``
(benchmarks/similarity.py). The copy is kept per store and reused while the set's rows are unchanged: it
is checked against the store's ``generation`` and, when other tables were written, against the set's
``version`` and row count (a cheap query), so a slice creation does not force a 2 GB reload.
Hash sets (64-bit pHash / dHash) are searched by Hamming distance: score = 1 - distance / 64.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa

from engine.errors import LoupeError, NotFoundError, ValidationError
from engine.store.database import to_arrow
from . import sets
from .sets import SetInfo

if TYPE_CHECKING:
    from engine.api.dataset import Dataset
    from engine.store.database import Store

MAX_CACHED_BYTES = 8 << 30  # per store; the least recently used set goes first


@dataclass
class Loaded:
    """A set in memory: row keys (sorted by item_id, object_id) and unit vectors or hashes."""

    info: SetInfo
    stamp: tuple
    generation: int
    item_id: np.ndarray  # int64 [N]
    object_id: np.ndarray | None  # object strings [N] at object level
    matrix: np.ndarray  # float32 [N, d] unit rows (zero rows stay zero), or uint64 [N] hashes
    refs: pa.Array = None  # reference_id of each row
    hnsw: Any = None
    hnsw_report: dict | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.item_id.nbytes)

    def __len__(self) -> int:
        return len(self.item_id)


_CACHE: "weakref.WeakKeyDictionary[Store, dict[int, Loaded]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _stamp(store: "Store", info: SetInfo) -> tuple:
    t = "embedding_hashes" if info.kind == "hash" else sets.schema.vector_table(info.dim)
    n = store.scalar(f"SELECT count(*) FROM {t} WHERE set_id = $s", {"s": info.set_id})
    return (info.version, info.dim, info.kind, int(n))


def normalise(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in place (zero rows stay zero)."""
    norms = np.linalg.norm(m, axis=1)
    norms[norms == 0] = 1.0
    m /= norms[:, None]
    return m


def loaded(ds: "Dataset", info: SetInfo) -> Loaded:
    """The set in memory, from the per-store cache when its rows did not change."""
    store = ds.ws.store
    with _LOCK:
        per = _CACHE.get(store)
        hit = per.get(info.set_id) if per else None
    if hit is not None and hit.info.version == info.version:
        if hit.generation == store.generation:
            return hit
        if store.caching and _stamp(store, info) == hit.stamp:
            hit.generation = store.generation
            return hit
    generation = store.generation
    stamp = _stamp(store, info)
    t = sets.load(ds, info)
    item_id = t.column("item_id").to_numpy().astype(np.int64)
    object_id = None if info.level == "item" else np.asarray(t.column("object_id").to_pylist(), object)
    if info.kind == "hash":
        matrix = t.column("hash").to_numpy().astype(np.uint64)
    else:
        matrix = normalise(np.array(sets.vectors_of(t, info.dim), np.float32, copy=True))
    entry = Loaded(info, stamp, generation, item_id, object_id, matrix, t.column("reference_id").combine_chunks())
    if store.caching and store.generation == generation:
        with _LOCK:
            per = _CACHE.get(store)
            if per is None:
                per = _CACHE[store] = {}
                store.on_close(lambda: _CACHE.pop(store, None))
            per.pop(info.set_id, None)
            per[info.set_id] = entry
            total = sum(e.nbytes for e in per.values())
            for k in list(per)[:-1]:
                if total <= MAX_CACHED_BYTES:
                    break
                total -= per.pop(k).nbytes
    return entry


def positions_of(item_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each wanted item in an item-level set (rows sorted by item_id), and whether it has one."""
    from engine.execution.copies import positions

    return positions(item_ids, np.asarray(wanted, np.int64))


# -- queries -------------------------------------------------------------------------------------
def _id_of(q: Any) -> tuple[str | None, str]:
    """A query id: ``"ref"`` or, at object level, ``"obj"`` or ``("ref", "obj")``."""
    if isinstance(q, tuple) and len(q) == 2:
        return str(q[0]), str(q[1])
    return None, str(q)


def rows_of(ds: "Dataset", entry: Loaded, ids: Sequence[Any]) -> np.ndarray:
    """Row positions of query ids in the set; an id without a row is named in the error."""
    info = entry.info
    idc = info.id_column
    pairs = [_id_of(q) for q in ids]
    con = ds.ws.store.con
    out = []
    for ref, oid in pairs:
        if info.level == "item":
            iid = con.execute("SELECT item_id FROM items WHERE dataset_id = $ds AND reference_id = $r",
                              {"ds": ds.id, "r": oid}).fetchone()
            if iid is None:
                raise NotFoundError(f"no item with reference_id '{oid}' in dataset '{ds.name}'")
            lo, hi = np.searchsorted(entry.item_id, [iid[0], iid[0] + 1])
            if hi == lo:
                raise ValidationError(f"item has no vector in embedding set '{info.name}'", record=f"reference_id '{oid}'")
            out.append(int(lo))
            continue
        cand = np.flatnonzero(entry.object_id == oid)
        if ref is not None:
            iid = con.execute("SELECT item_id FROM items WHERE dataset_id = $ds AND reference_id = $r",
                              {"ds": ds.id, "r": ref}).fetchone()
            cand = cand[entry.item_id[cand] == (iid[0] if iid else -1)]
        if len(cand) == 0:
            raise ValidationError(f"object has no vector in embedding set '{info.name}'", record=f"{idc} '{oid}'")
        if len(cand) > 1:
            raise ValidationError("ambiguous object id (several items have it): pass (reference_id, id)",
                                  record=f"{idc} '{oid}'")
        out.append(int(cand[0]))
    return np.asarray(out, np.int64)


def _is_vector(query: Any) -> bool:
    return isinstance(query, np.ndarray) or (isinstance(query, (list, tuple)) and len(query) > 0
                                             and all(isinstance(v, (float, int, np.floating, np.integer))
                                                     and not isinstance(v, bool) for v in query)
                                             and not isinstance(query, tuple))


def scores(entry: Loaded, ds: "Dataset", query: Any) -> tuple[np.ndarray, np.ndarray]:
    """Score of every row against the query (cosine, or 1 - hamming / 64 for hashes), and the query's own rows."""
    if _is_vector(query):
        q = np.asarray(query)
        if entry.info.kind == "hash":
            if q.ndim != 1 or q.dtype != np.uint64:
                raise ValidationError("a hash set is queried by ids or by uint64 hashes", field="query")
            return _hash_scores(entry.matrix, q), np.zeros(0, np.int64)
        q = q.astype(np.float32).reshape(-1, q.shape[-1]) if q.ndim > 1 else q.astype(np.float32)[None, :]
        if q.shape[1] != entry.info.dim:
            raise ValidationError(f"query vector has {q.shape[1]} values; set '{entry.info.name}' has dimension "
                                  f"{entry.info.dim}", field="query")
        if not np.isfinite(q).all():
            raise ValidationError("query vector holds NaN or infinity", field="query")
        return entry.matrix @ _combine(normalise(q.copy())), np.zeros(0, np.int64)
    ids = [query] if isinstance(query, (str, tuple)) else list(query)
    if not ids:
        raise ValidationError("empty query: give an id, several ids or a vector", field="query")
    rows = rows_of(ds, entry, ids)
    if entry.info.kind == "hash":
        return _hash_scores(entry.matrix, entry.matrix[rows]), rows
    return entry.matrix @ _combine(entry.matrix[rows]), rows


def _combine(unit_rows: np.ndarray) -> np.ndarray:
    """Several positives -> one query: the mean of their unit vectors, renormalised."""
    q = unit_rows.mean(axis=0)
    n = np.linalg.norm(q)
    return (q / n if n > 0 else q).astype(np.float32)


def _hash_scores(hashes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """1 - (smallest Hamming distance to any query) / 64."""
    best = np.full(len(hashes), 64, np.uint8)
    for q in np.atleast_1d(queries).astype(np.uint64):  # one pass per positive, vectorised over the set
        np.minimum(best, np.bitwise_count(hashes ^ q), out=best)
    return 1.0 - best.astype(np.float32) / 64.0


def top_k(s: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Positions of the k highest scores (descending; ties by position), among ``allowed`` rows only."""
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
        n_ok = int(allowed.sum())
    else:
        n_ok = len(s)
    k = min(int(k), n_ok)
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
    order = np.lexsort((part, -s[part]))
    return part[order]


def allowed_rows(ds: "Dataset", entry: Loaded, where: str | None, slice: Any, run: Any) -> np.ndarray | None:
    """Mask of rows whose item passes ``where`` (an item query, through the DSL runner) and is in ``slice``."""
    if where is None and slice is None:
        return None
    from engine.execution.runner import compile_for, execute

    mask = np.ones(len(entry), bool)
    if where is not None and where.strip():
        ids = execute(ds, compile_for(ds, where, "items", run, projection="ids")).column(0).to_numpy()
        mask &= np.isin(entry.item_id, ids)
    if slice is not None:
        s = slice if hasattr(slice, "item_ids_sql") else ds.get_slice(str(slice))
        ids = ds.ws.store.arrow(s.item_ids_sql()).column(0).to_numpy()
        mask &= np.isin(entry.item_id, ids)
    return mask


def similar(ds: "Dataset", query: Any, k: int = 10, embeddings: str | None = None, where: str | None = None,
            slice: Any = None, run: Any = None, method: str = "exact", include_query: bool = False) -> pa.Table:
    """See ``Dataset.similar``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValidationError(f"k must be a positive integer, got {k!r}", field="k")
    if method not in ("exact", "hnsw"):
        raise ValidationError(f"method must be 'exact' or 'hnsw', got {method!r}", field="method")
    info = sets.get_set(ds, embeddings)
    entry = loaded(ds, info)
    allowed = allowed_rows(ds, entry, where, slice, run)
    if method == "hnsw":
        if info.kind == "hash":
            raise ValidationError("HNSW is for vector sets; hash sets are searched exactly", field="method")
        from . import hnsw

        qvec, qrows = query_vector(entry, ds, query)
        pos, sc = hnsw.search(ds, entry, qvec, k + (0 if include_query else len(qrows)), allowed)
        keep = ~np.isin(pos, qrows) if not include_query else np.ones(len(pos), bool)
        pos, sc = pos[keep][:k], sc[keep][:k]
    else:
        s, qrows = scores(entry, ds, query)
        if not include_query and len(qrows):
            allowed = np.ones(len(entry), bool) if allowed is None else allowed.copy()
            allowed[qrows] = False
        pos = top_k(s, k, allowed)
        sc = s[pos]
    return result_table(ds, entry, pos, {"score": np.asarray(sc, np.float64)})


def query_vector(entry: Loaded, ds: "Dataset", query: Any) -> tuple[np.ndarray, np.ndarray]:
    """The unit query vector (ids combined) and the query's own rows."""
    if _is_vector(query):
        q = np.asarray(query, np.float32).reshape(1, -1)
        if q.shape[1] != entry.info.dim or not np.isfinite(q).all():
            raise ValidationError(f"query vector must have {entry.info.dim} finite values", field="query")
        return _combine(normalise(q)), np.zeros(0, np.int64)
    ids = [query] if isinstance(query, (str, tuple)) else list(query)
    rows = rows_of(ds, entry, ids)
    return _combine(entry.matrix[rows]), rows


def result_table(ds: "Dataset", entry: Loaded, pos: np.ndarray, columns: dict[str, Any]) -> pa.Table:
    """Rows of the set at ``pos`` as (reference_id [, object id], *columns), in the order of ``pos``."""
    pos = np.asarray(pos, np.int64)
    out = {"reference_id": entry.refs.take(pa.array(pos))}
    if entry.info.level != "item":
        out[entry.info.id_column] = pa.array(entry.object_id[pos].tolist() if len(pos) else [], pa.string())
    out.update(columns)
    return pa.table(out)
