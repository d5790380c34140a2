"""An in-memory Arrow copy of a run's object rows (ground truth and predictions with their match columns).

Object queries over a committed run of ~1.4M objects spend their time in DuckDB joining annotations or
predictions to ``matches``, sorting wide rows and fetching them back by key (20-50 ms). With this copy,
engine/execution/object_scan.py evaluates the same compiled filter with Arrow compute and takes the rows (1-5 ms).

The copy holds exactly the rows and columns of the query ``""`` (every object) on the dataset and run, one
table per side in the default order (item_id, then ann_key / pred_key), low-cardinality strings dictionary
encoded; sort orders of single columns are added when first asked for. It lives in :mod:`engine.execution.copies`:
valid for one store generation, built on the second object query of a (dataset, run) after a write, within
``LOUPE_OBJECT_CACHE_MB`` (default 512) per store; 0 disables it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from queries.sqlbuild import OBJECT_OUTPUT

from engine.execution.copies import Copies, positions

if TYPE_CHECKING:
    from engine.store.database import Store

COPIES = Copies(int(os.environ.get("LOUPE_OBJECT_CACHE_MB", "512")) * 2**20)

ENCODED = ("source", "kind", "label", "status", "error_type")  # dictionary-encoded (reference_id: by item)
OUTPUT = OBJECT_OUTPUT + ("item_id",)
MIN_BYTES_PER_OBJECT = 80  # a copy takes ~120 bytes per object (x, y, w, h, area, iou... and keys)
MAX_VALUES = 32  # item-level value tables kept per copy (one per distinct item-level filter)


@dataclass
class SideRows:
    """One side's rows (the query's output columns + item_id), in the default order."""

    side: str
    rows: pa.Table
    item_id: np.ndarray
    key: np.ndarray  # ann_key (gt) or pred_key (prediction): with item_id, the default order
    orders: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return self.rows.num_rows

    def column(self, name: str) -> pa.Array:
        return self.rows.column(name).chunk(0)

    def order(self, name: str, desc: bool, values: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Positions sorted by one column (NULLs last, ties in position order) and the sorted keys (NaN for
        NULL, negated when ``desc``), kept once computed. ``values``: numbers, NaN for NULL."""
        with self.lock:
            hit = self.orders.get((name, desc))
        if hit is not None:
            return hit
        v = values()
        null = np.isnan(v)
        k = np.where(null, np.inf, -v if desc else v)
        order = np.argsort(k, kind="stable")
        order = np.concatenate([order[~null[order]], order[null[order]]]).astype(np.int32)
        keys = np.where(null, np.nan, -v if desc else v)[order]
        with self.lock:
            self.orders[(name, desc)] = (order, keys)
        return order, keys

    @property
    def nbytes(self) -> int:
        return (self.rows.get_total_buffer_size() + self.item_id.nbytes + self.key.nbytes
                + sum(o.nbytes + k.nbytes for o, k in self.orders.values()))


@dataclass
class ObjectCopy:
    generation: int
    schema: pa.Schema  # the SQL result's columns and types
    sides: dict[str, SideRows]
    values: "OrderedDict[str, pa.Table]" = field(default_factory=OrderedDict)  # item-level values by SQL
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.sides.values())

    def item_values(self, sql: str, read: Callable[[str], pa.Table]) -> pa.Table:
        """Per-item values of a query's item-level parts (object_scan), kept for the copy's generation:
        the data they come from cannot change before the copy goes (the last MAX_VALUES queries)."""
        with self.lock:
            hit = self.values.get(sql)
            if hit is not None:
                self.values.move_to_end(sql)
                return hit
        table = read(sql)
        with self.lock:
            self.values[sql] = table
            while len(self.values) > MAX_VALUES:
                self.values.popitem(last=False)
        return table


def copy_for(store: "Store", dataset_id: int, run: str | None,
             read: Callable[[], tuple[pa.Table, dict[str, pa.Table]]],
             count: Callable[[], int] | None = None) -> ObjectCopy | None:
    """The (dataset, run) copy at the store's current generation, or None (then query with SQL).

    ``read`` gives the dataset's items (item_id, reference_id; by item_id) and per side every object row
    of the query ``""`` with its item_id, ordered by item_id and key (no reference_id: taken from items).
    ``count`` gives the number of objects: a copy that could not fit the budget is not read at all.
    """
    def build(generation: int) -> ObjectCopy | None:
        if count is not None and count() * MIN_BYTES_PER_OBJECT > COPIES.max_bytes:
            return None  # too large: never read (the budget is checked again on the real size)
        return _build(*read(), generation)
    return COPIES.get(store, ("objects", dataset_id, run), build)


def _build(items: pa.Table, tables: dict[str, pa.Table], generation: int) -> ObjectCopy:
    ids = items.column("item_id").to_numpy()
    refs = items.column("reference_id").combine_chunks()
    sides = {}
    schema = None
    for side, table in tables.items():
        item_id = table.column("item_id").to_numpy()
        pos, found = positions(ids, item_id)
        if not found.all():  # an object whose item is gone: the SQL's join to items drops it too
            table, pos = table.filter(pa.array(found)), pos[found]
            item_id = item_id[found]
        cols, names = [], []
        for name in OUTPUT:
            if name == "reference_id":
                c = pa.DictionaryArray.from_arrays(pa.array(pos, pa.int32()), refs)
            else:
                c = table.column(name)
                c = c.combine_chunks() if c.num_chunks != 1 else c.chunk(0)
                if name in ENCODED:
                    c = _small_dictionary(pc.dictionary_encode(c))
                elif len(c) and c.null_count == len(c):
                    c = pa.nulls(len(c), c.type)  # no value buffer (confidence of GT, ann_key of predictions...)
            cols.append(pa.chunked_array([c]))
            names.append(name)
        if schema is None:
            schema = pa.schema([(n, c.type.value_type if pa.types.is_dictionary(c.type) else c.type)
                                for n, c in zip(names[:-1], cols[:-1])])
        rows = pa.Table.from_arrays(cols, names=names)
        key = "ann_key" if side == "gt" else "pred_key"
        sides[side] = SideRows(side, rows, item_id, rows.column(key).to_numpy())
    return ObjectCopy(generation, schema, sides)


def _small_dictionary(d: pa.DictionaryArray) -> pa.DictionaryArray:
    """Dictionary indices as narrow as the dictionary allows (labels, statuses: a byte per row)."""
    for t in (pa.int8(), pa.int16()):
        if len(d.dictionary) < 2 ** (t.bit_width - 1):
            return d.cast(pa.dictionary(t, d.type.value_type))
    return d


def forget(store: "Store") -> None:
    """Drop every object copy of a store."""
    COPIES.forget(store)
