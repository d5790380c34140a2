"""The grid's results as item ids: a DSL query's matching ids (narrow, counted for free), rows per page.

The grid needs a total and one page of (reference_id, width, height) at a time, not a query's whole
rows. So a result is the matching item ids in the grid's order, computed once per query and store
generation (the query's filter is the cost; a LIMIT in the SQL would not save it, and later pages and
keyboard navigation then cost nothing); a page's rows are one bound lookup of at most ``MAX_PAGE`` ids.
The ids and their order are those of ``ds.query`` (same compiled query: its ORDER BY with the item id
as the last key, else by item id); tests/unit/test_app_results.py checks pages against its slices.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.execution.runner import compile_for, execute

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

_ALL_SQL = (Path(__file__).with_name("grid_items.sql")).read_text(encoding="utf-8")
_ROWS_SQL = """SELECT item_id, reference_id, width, height FROM items
               WHERE dataset_id = $ds AND item_id = ANY($ids)"""
_IDS_SQL = """SELECT item_id, reference_id FROM items
              WHERE dataset_id = $ds AND reference_id = ANY($refs)"""


def all_ids(ds: "Dataset") -> pa.Array:
    """Every item id of the dataset, in insertion order (the unfiltered grid)."""
    return ds.ws.store.arrow(_ALL_SQL, {"ds": ds.id}).column("item_id").combine_chunks()


def query_ids(ds: "Dataset", dsl: str, run: str | None, order_by: str | None, every: pa.Array) -> pa.Array:
    """The item ids ``ds.query(dsl, run=run, order_by=order_by)`` returns, in its order.

    Without an ORDER BY the filter may read only the per-item tables ("candidates": any order, possibly
    ids that are not items), so the ids are sorted and kept to ``every`` (the dataset's item ids, sorted).
    """
    keys = compile_for(ds, dsl, "items", run, order_by, projection="candidates")
    if keys.user_order:
        keys = compile_for(ds, dsl, "items", run, order_by, projection="keys")
        return execute(ds, keys).column(0).combine_chunks().cast(pa.int64())
    ids = np.sort(execute(ds, keys).column(0).to_numpy())
    known = every.to_numpy()
    pos = np.minimum(np.searchsorted(known, ids), len(known) - 1) if len(known) else np.zeros(0, np.int64)
    return pa.array(ids[known[pos] == ids] if len(known) else ids[:0], pa.int64())


def ids_of(ds: "Dataset", refs: list[str]) -> pa.Array:
    """The item ids of ``refs``, in their order (first occurrence); unknown reference ids are left out."""
    return keys_of(ds, refs).column("item_id").combine_chunks().cast(pa.int64())


def keys_of(ds: "Dataset", refs: list[str]) -> pa.Table:
    """(item_id, reference_id) of ``refs``, in their order (first occurrence), without unknown ones."""
    refs = list(dict.fromkeys(refs))
    t = ds.ws.store.arrow(_IDS_SQL, {"ds": ds.id, "refs": refs})
    pos = pc.index_in(pa.array(refs, pa.string()), value_set=t.column("reference_id").combine_chunks())
    return t.take(pos.filter(pc.is_valid(pos)))


def rows_of(ds: "Dataset", ids: pa.Array) -> pa.Table:
    """(item_id, reference_id, width, height) of ``ids``, in their order (a page: a few hundred at most)."""
    t = ds.ws.store.arrow(_ROWS_SQL, {"ds": ds.id, "ids": ids.to_pylist()})
    pos = pc.index_in(ids, value_set=t.column("item_id").combine_chunks())
    return t.take(pos.filter(pc.is_valid(pos)))


def refs_of(ds: "Dataset", ids: pa.Array) -> list[Any]:
    """The reference ids of ``ids`` (any number), in their order."""
    t = ds.ws.store.arrow("SELECT item_id, reference_id FROM items WHERE dataset_id = $ds", {"ds": ds.id})
    pos = pc.index_in(ids, value_set=t.column("item_id").combine_chunks())
    return t.column("reference_id").combine_chunks().take(pos.filter(pc.is_valid(pos))).to_pylist()
