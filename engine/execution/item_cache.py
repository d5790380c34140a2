"""An in-memory Arrow copy of a dataset's item rows, for assembling item query results.

An item query's filter runs in DuckDB and returns item ids only (narrow: no string column is decompressed
and no wide row is sorted); the rows (the ``ds.items()`` columns) are then taken from this copy. On
100k items that turns ~10-20 ms of decompressing, sorting and converting wide rows into ~1 ms.

The copy is kept per store and dataset in :mod:`engine.execution.copies`: valid for one store ``generation`` (every
write through the store moves it), built on the second item query of a generation, and kept within
``LOUPE_ITEM_CACHE_MB`` (default 256) for all of a store's datasets together; otherwise results come from
the plain SQL (also while a transaction is open). Both paths return the same table
(tests/unit/test_item_cache.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from engine.execution.copies import Copies, positions

if TYPE_CHECKING:
    from engine.store.database import Store

COPIES = Copies(int(os.environ.get("LOUPE_ITEM_CACHE_MB", "256")) * 2**20)  # 0 disables the copy

_ROWS_SQL = """SELECT item_id, reference_id, image_location, width, height, CAST(metadata AS VARCHAR) AS metadata
               FROM items WHERE dataset_id = $ds ORDER BY item_id"""


@dataclass
class _Entry:
    generation: int
    ids: np.ndarray  # sorted item ids
    rows: pa.Table
    dense: bool = False  # ids are ids[0], ids[0] + 1, ... (an item's position is its id - ids[0])

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes


def rows_for(store: "Store", dataset_id: int) -> "_Entry | None":
    """The dataset's row copy for the current generation, or None when queries should read rows with SQL."""
    return COPIES.get(store, dataset_id, lambda generation: _build(store, dataset_id, generation))


def _build(store: "Store", dataset_id: int, generation: int) -> _Entry:
    rows = store.arrow(_ROWS_SQL, {"ds": dataset_id})
    ids = rows.column("item_id").to_numpy()
    dense = len(ids) > 0 and int(ids[-1]) - int(ids[0]) == len(ids) - 1  # sorted and distinct: no gap
    return _Entry(generation, ids, rows.drop_columns(["item_id"]).combine_chunks(), dense)


def take(entry: "_Entry", ids: pa.ChunkedArray | pa.Array) -> pa.Table | None:
    """The rows of ``ids`` (in that order); None if an id is not in the copy (then read with SQL)."""
    want = ids.to_numpy() if isinstance(ids, pa.Array) else np.asarray(ids.to_numpy())
    pos, found = positions(entry.ids, want)
    if not found.all():
        return None
    return entry.rows.take(pa.array(pos, pa.int64()))


def take_in_order(entry: "_Entry", ids: pa.ChunkedArray | pa.Array) -> pa.Table | None:
    """The rows of ``ids`` (distinct, in any order) by item_id; None if an id is not in the copy.

    With dense ids the positions are ``id - first`` marked in a mask, which lists them in order (1M items,
    210k ids: ~2 ms where sorting the ids and searching them took ~20 ms); otherwise sort and search."""
    want = ids.to_numpy() if isinstance(ids, pa.Array) else np.asarray(ids.to_numpy())
    if not entry.dense:
        return take(entry, pa.array(np.sort(want)))
    pos = want - entry.ids[0] if len(want) else want
    if len(pos) and (pos.min() < 0 or pos.max() >= len(entry.ids)):
        return None
    mask = np.zeros(len(entry.ids), bool)
    mask[pos] = True
    pos = np.flatnonzero(mask)
    if len(pos) != len(want):  # an id twice: the sorted path keeps both
        return take(entry, pa.array(np.sort(want)))
    return entry.rows.take(pa.array(pos, pa.int64()))


def forget(store: "Store") -> None:
    """Drop every copy of a store (tests; a closed workspace)."""
    COPIES.forget(store)
