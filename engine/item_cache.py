"""An in-memory Arrow copy of a dataset's item rows, for assembling item query results.

An item query's filter runs in DuckDB and returns item ids only (narrow: no string column is decompressed
and no wide row is sorted); the rows (the ``ds.items()`` columns) are then taken from this copy. On
100k items that turns ~10-20 ms of decompressing, sorting and converting wide rows into ~1 ms.

The copy is kept per store and dataset and is valid for one store ``generation`` (every write through the
store moves it, so any write drops the copy). It is built on the second item query of a generation, so a
write-query-write loop never pays for it, and kept up to ``MAX_BYTES`` for all of a store's datasets
together (the oldest other dataset's copy goes first); otherwise results come from
the plain SQL as before (also while a transaction is open: its rows are its connection's alone). Both
paths return the same table (tests/unit/test_item_cache.py).
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from .store import Store

MAX_BYTES = int(os.environ.get("LOUPE_ITEM_CACHE_MB", "256")) * 2**20  # 0 disables the copy

_ROWS_SQL = """SELECT item_id, reference_id, image_location, width, height, CAST(metadata AS VARCHAR) AS metadata
               FROM items WHERE dataset_id = $ds ORDER BY item_id"""


@dataclass
class _Entry:
    generation: int
    ids: np.ndarray | None = None  # sorted item ids; None: not built (first query) or too large
    rows: pa.Table | None = None
    too_large: bool = False


_ENTRIES: "weakref.WeakKeyDictionary[Store, dict[int, _Entry]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def rows_for(store: "Store", dataset_id: int) -> "_Entry | None":
    """The dataset's row copy for the current generation, or None when queries should read rows with SQL."""
    if MAX_BYTES <= 0 or not store.caching:
        return None
    generation = store.generation
    with _LOCK:
        per_store = _ENTRIES.setdefault(store, {})
        for ds in [d for d, e in per_store.items() if e.generation != generation and d != dataset_id]:
            del per_store[ds]  # written since: never usable again, free the rows
        entry = per_store.get(dataset_id)
        if entry is None or entry.generation != generation:  # first item query since the last write
            per_store[dataset_id] = _Entry(generation)
            return None
        if entry.too_large:
            return None
        if entry.rows is not None:
            return entry
    rows = store.arrow(_ROWS_SQL, {"ds": dataset_id})
    built = _Entry(generation)
    if rows.nbytes > MAX_BYTES:
        built.too_large = True
    else:
        built.ids = rows.column("item_id").to_numpy()
        built.rows = rows.drop_columns(["item_id"]).combine_chunks()
    with _LOCK:
        if store.generation == generation:  # nothing wrote while it was read
            per_store = _ENTRIES.setdefault(store, {})
            per_store.pop(dataset_id, None)
            per_store[dataset_id] = built  # newest last
            _fit(per_store)
    return None if built.too_large or store.generation != generation else built


def _fit(per_store: dict[int, "_Entry"]) -> None:
    """Keep one store's copies within MAX_BYTES together: drop the oldest other datasets' rows first."""
    total = sum(e.rows.nbytes for e in per_store.values() if e.rows is not None)
    for ds in list(per_store)[:-1]:
        if total <= MAX_BYTES:
            break
        e = per_store.pop(ds)
        total -= e.rows.nbytes if e.rows is not None else 0


def take(entry: "_Entry", ids: pa.ChunkedArray | pa.Array) -> pa.Table | None:
    """The rows of ``ids`` (in that order); None if an id is not in the copy (then read with SQL)."""
    want = ids.to_numpy() if isinstance(ids, pa.Array) else np.asarray(ids.to_numpy())
    assert entry.ids is not None and entry.rows is not None
    if len(entry.ids) == 0:
        return entry.rows.slice(0, 0) if len(want) == 0 else None
    pos = np.searchsorted(entry.ids, want)
    pos = np.minimum(pos, len(entry.ids) - 1)
    if len(want) and not np.array_equal(entry.ids[pos], want):
        return None
    return entry.rows.take(pa.array(pos, pa.int64()))


def forget(store: "Store") -> None:
    """Drop every copy of a store (tests; a closed workspace)."""
    with _LOCK:
        _ENTRIES.pop(store, None)
