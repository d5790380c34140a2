"""Run a compiled object query on the in-memory copy of its run's objects (engine/execution/object_cache.py).

Per side, the filter is evaluated with Arrow compute (queries/arrow_eval.py: DuckDB's semantics, or
``Unsupported``); with a LIMIT, each side yields only its first ``limit + offset`` rows in query order
(a plain-column sort key walks that column's cached sort order), and the two sides are merged by the
full order: sort keys (NULLs last), item_id, source, ann_key, pred_key — the SQL's ORDER BY. The result
is the table the SQL returns (tests/unit/test_object_scan.py checks they are equal).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from queries import to_sql
from queries.arrow_eval import Unsupported, item_parts, sort_key, where_mask
from queries.objects import ObjectPlan

from engine.execution.object_cache import ObjectCopy, SideRows

PARALLEL_ROWS = 8192  # results at least this long take their columns on two threads
MAX_SORTED = 200_000  # more matching rows than this with a computed sort key: DuckDB sorts faster
_BASE = {"gt": "a", "prediction": "p"}
_MATCH_COLUMNS = ("iou", "best_iou", "status", "error_type")
_BASE_COLUMNS = {"gt": ("x", "y", "width", "height", "area", "label", "kind", "annotation_id", "iscrowd"),
                 "prediction": ("x", "y", "width", "height", "area", "label", "kind", "annotation_id", "confidence")}


def run(copy: ObjectCopy, plan: ObjectPlan, read: Callable[[str], pa.Table]) -> pa.Table | None:
    """The query's result table, or None when part of it must run in DuckDB. ``read`` runs SQL (the
    item-level parts of the filter, evaluated per item in one query; kept with the copy by SQL text)."""
    try:
        items = _ItemValues(plan, lambda sql: copy.item_values(sql, read))
        picked = [(_side_hits(copy.sides[side], where, sort, plan, items), copy.sides[side])
                  for side, where, sort in plan.sides]
        if any(p is None for p, _ in picked):
            return None
        return _assemble(copy, picked, plan)
    except Unsupported:
        return None


class _ItemValues:
    """The item-level parts of a plan's expressions (``item.metadata.camera = "rear"``, ``slice("test")``,
    ``predictions.fp``...), computed per item by DuckDB in one query and spread over each side's rows."""

    def __init__(self, plan: ObjectPlan, read: Callable[[str], pa.Table]):
        parts = [p for _, where, sort in plan.sides for e in (where, *sort) for p in item_parts(e)]
        self.index = {id(p): k for k, p in enumerate(parts)}
        self.parts, self.plan, self.read = parts, plan, read
        self.table: pa.Table | None = None  # read when a side first needs a value

    def for_side(self, s: SideRows, rows: np.ndarray | None = None) -> Callable[[exp.Expression], pa.Array] | None:
        """Values for the side's rows (``rows``: these positions only)."""
        if not self.parts:
            return None
        where = None
        item_id = s.item_id if rows is None else s.item_id[rows]

        def value(e: exp.Expression) -> pa.Array:
            nonlocal where
            k = self.index.get(id(e))
            if k is None:
                raise Unsupported("item-level part not prepared")
            if self.table is None:
                self.table = self.read(to_sql(self.plan.item_values(self.parts), "duckdb"))
            if where is None:
                where = _positions(self.table.column("item_id").combine_chunks(), item_id)
            v = self.table.column(f"v{k}").combine_chunks()
            if pa.types.is_null(v.type):
                v = v.cast(pa.bool_())
            return v.take(where)
        return value


def _positions(ids: pa.Array, item_id: np.ndarray) -> pa.Array:
    """Which row of the item values holds each of ``item_id``: the row of its item, else the row with a
    NULL item_id (the value for items the per-item table has no row for)."""
    default = -1
    if ids.null_count:
        nulls = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
        if len(nulls) != 1:
            raise Unsupported("more than one default row")
        default = int(nulls[0])
    known = np.flatnonzero(ids.is_valid().to_numpy(zero_copy_only=False)) if ids.null_count else np.arange(len(ids))
    values = ids.fill_null(0).to_numpy(zero_copy_only=False)[known] if ids.null_count else ids.to_numpy()
    if len(item_id) == 0:
        return pa.array([], pa.int64())
    top = int(max(values.max(initial=0), item_id.max()))
    if values.min(initial=0) < 0 or item_id.min() < 0 or top > 4 * len(values) + 1_000_000:
        raise Unsupported("item ids too sparse for a direct map")
    where = np.full(top + 1, default, np.int64)
    where[values] = known
    if not np.array_equal(where[values], known):
        raise Unsupported("an item has two rows")
    pos = where[item_id]
    if default < 0 and (pos < 0).any():
        raise Unsupported("an object's item is missing")
    return pa.array(pos, pa.int64())


def _resolver(s: SideRows, rows: np.ndarray | None = None):
    """The side's columns for the evaluator (``rows``: at these positions only)."""
    base = _BASE[s.side]
    at = None if rows is None else pa.array(rows, pa.int64())

    def column(c: exp.Column) -> pa.Array:
        t, name = c.table, c.name
        if (t == base and name in _BASE_COLUMNS[s.side]) or (t == "m" and name in _MATCH_COLUMNS) or \
                (t == "i" and name == "reference_id"):
            return s.column(name) if at is None else s.column(name).take(at)
        raise Unsupported(f"column {t}.{name}")
    return column


def _conjuncts(e: exp.Expression | None) -> list[exp.Expression]:
    """``a AND (b AND c)`` -> [a, b, c] (WHERE keeps a row when every one is true)."""
    if e is None:
        return []
    if isinstance(e, exp.Paren):
        return _conjuncts(e.this)
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _mask(s: SideRows, where: exp.Expression | None, items: "_ItemValues") -> np.ndarray:
    """Rows of the side the filter keeps. Conjuncts on the object's own columns run over every row;
    those reading item-level values only over the rows that passed the others."""
    n = len(s)
    mask = np.ones(n, bool)
    if n == 0:
        return mask
    conj = _conjuncts(where)
    column = _resolver(s)
    later = []
    for c in conj:
        if item_parts(c):
            later.append(c)
        else:
            mask &= where_mask(c, column, n).to_numpy(zero_copy_only=False)
    if later and mask.any():
        rows = np.flatnonzero(mask)
        sub, item = _resolver(s, rows), items.for_side(s, rows)
        keep = np.ones(len(rows), bool)
        for c in later:
            keep &= where_mask(c, sub, len(rows), item).to_numpy(zero_copy_only=False)
        mask[rows[~keep]] = False
    elif later:
        mask[:] = False
    return mask


def sortable(v: pa.Array) -> np.ndarray:
    """Sort-key values as float64 with NaN for NULL (strings: their rank; booleans: 0 / 1)."""
    if pa.types.is_dictionary(v.type):
        v = v.dictionary_decode()
    if pa.types.is_null(v.type):
        return np.full(len(v), np.nan)
    if pa.types.is_string(v.type) or pa.types.is_large_string(v.type):
        uniq = pc.unique(v.drop_null()).sort()
        ranks = pc.index_in(v, value_set=uniq)
        return ranks.to_numpy(zero_copy_only=False).astype(np.float64)
    if pa.types.is_boolean(v.type):
        v = v.cast(pa.int8())
    if not (pa.types.is_integer(v.type) or pa.types.is_floating(v.type)):
        raise Unsupported(f"sort by {v.type}")
    if pa.types.is_integer(v.type) and len(v) and pc.max(pc.abs(v)).as_py() > 2**53:
        raise Unsupported("integer sort key beyond float precision")
    return v.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _side_hits(s: SideRows, where: exp.Expression | None, sort: tuple[exp.Expression, ...],
               plan: ObjectPlan, items: "_ItemValues") -> tuple[np.ndarray, list[pa.Array]] | None:
    """Positions of this side's rows the query keeps (all of them, or with a LIMIT its first limit + offset
    in query order, plus ties of the first sort key), and their sort-key values."""
    column = _resolver(s)
    mask = _mask(s, where, items)
    want = None if plan.limit is None else plan.limit + (plan.offset or 0)
    if not sort:
        hits = np.flatnonzero(mask)
        return (hits if want is None else hits[:want]), []
    first = sort[0]
    if want is not None and isinstance(first, exp.Column) and not item_parts(first):
        column(first)  # a column this side has, else Unsupported
        order, sorted_keys = s.order(f"{first.table}.{first.name}", plan.desc[0],
                                     lambda: sortable(sort_key(first, column)))
        hits = _first_in_order(order, sorted_keys, mask, want, len(sort) > 1)
    else:
        hits = np.flatnonzero(mask)
        if len(hits) > MAX_SORTED:
            return None
    sub, item = _resolver(s, hits), items.for_side(s, hits)
    return hits, [_values(e, sub, item, len(hits)) for e in sort]


def _first_in_order(order: np.ndarray, sorted_keys: np.ndarray, mask: np.ndarray, want: int,
                    ties: bool) -> np.ndarray:
    """The first ``want`` masked positions of ``order`` (``ties``: and every later masked one whose key
    equals the last one's, for the sort keys after the first)."""
    if want == 0:
        return np.zeros(0, np.int64)
    step = max(4096, want * 8)
    start, found, count = 0, [], 0
    while start < len(order) and count < want:
        chunk = order[start:start + step]
        found.append(np.flatnonzero(mask[chunk]) + start)  # indices into order
        count += len(found[-1])
        start += step
        step *= 4
    idx = np.concatenate(found)[:want] if found else np.zeros(0, np.int64)
    if ties and len(idx) == want:
        last = sorted_keys[idx[-1]]
        end = np.searchsorted(sorted_keys, last, side="right") if not np.isnan(last) else len(order)
        more = np.arange(idx[-1] + 1, end)
        idx = np.concatenate([idx, more[mask[order[more]]]])
    return order[idx].astype(np.int64)


def _values(e: exp.Expression, column, item, n: int) -> pa.Array:
    """A sort key's values at the rows ``column`` reads (plain arrays: the sides are ranked together later)."""
    v = sort_key(e, column, item)
    return pa.repeat(v, n) if isinstance(v, pa.Scalar) else v


def _assemble(copy: ObjectCopy, picked: list, plan: ObjectPlan) -> pa.Table:
    """Merge the sides' rows in the query's order, apply LIMIT / OFFSET, take the output columns."""
    side_code = {"gt": 0, "prediction": 1}
    pos, src, item, key, keys = [], [], [], [], []
    for (hits, values), s in picked:
        pos.append(hits)
        src.append(np.full(len(hits), side_code[s.side], np.int8))
        item.append(s.item_id[hits])
        key.append(s.key[hits])
        keys.append(values)
    pos_all = np.concatenate(pos) if pos else np.zeros(0, np.int64)
    sort_cols = []
    for j, desc in enumerate(plan.desc):
        v = sortable(_concat([k[j] for k in keys]))
        null = np.isnan(v)
        sort_cols.append((null, np.where(null, 0.0, -v if desc else v)))
    nonempty = sum(1 for (hits, _), _ in picked if len(hits))
    if not sort_cols and nonempty <= 1:
        order = np.arange(len(pos_all))  # one side's hits, already in (item_id, key) order
    elif not sort_cols:  # two sides, each in order: by item_id, ground truth (listed first) first: stable
        order = np.argsort(np.concatenate(item), kind="stable")
    else:
        lex = [np.concatenate(key), np.concatenate(src), np.concatenate(item)]
        for null, v in reversed(sort_cols):
            lex += [v, null]
        order = np.lexsort(lex) if len(pos_all) else np.zeros(0, np.int64)
    start = plan.offset or 0
    order = order[start:] if plan.limit is None else order[start:start + plan.limit]
    side_of = np.concatenate(src)[order] if len(order) else np.zeros(0, np.int8)
    chosen = pos_all[order]
    takes = [(s, pa.array(chosen[side_of == side_code[s.side]], pa.int64())) for _, s in picked]
    takes = [(s, t) for s, t in takes if len(t)] or takes[:1]
    inverse = None
    if len(takes) > 1:  # interleave the sides' rows: row k of the result is slot k of the concatenation
        slots = np.concatenate([np.flatnonzero(side_of == side_code[s.side]) for s, _ in takes])
        inverse = np.empty(len(slots), np.int64)
        inverse[slots] = np.arange(len(slots))
        inverse = pa.array(inverse, pa.int64())
    def output(f: pa.Field) -> pa.Array:
        parts = [_plain(s.column(f.name).take(t)) for s, t in takes]
        c = parts[0] if len(parts) == 1 else pa.concat_arrays(parts).take(inverse)
        return c if c.type == f.type else c.cast(f.type)
    if len(chosen) >= PARALLEL_ROWS:  # Arrow's take releases the GIL: columns on two threads
        columns = list(_pool().map(output, copy.schema))
    else:
        columns = [output(f) for f in copy.schema]
    return pa.Table.from_arrays(columns, schema=copy.schema)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="loupe-take")
        return _POOL


def _concat(arrays: list[pa.Array]) -> pa.Array:
    """One side's key values after the other's (NULL-typed and numeric mixes made one type)."""
    arrays = [_plain(a) for a in arrays]
    types = {a.type for a in arrays if not pa.types.is_null(a.type)}
    if len(types) > 1:
        if not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
            raise Unsupported(f"sort key of types {types}")
        types = {pa.float64()}
    typ = types.pop() if types else pa.null()
    return pa.concat_arrays([a.cast(typ) for a in arrays]) if arrays else pa.array([], typ)


def _plain(a: pa.Array) -> pa.Array:
    return a.dictionary_decode() if pa.types.is_dictionary(a.type) else a
