"""The order a run's ``matches`` rows are written in: by source, status, then IoU (NULLs last).

Object queries read ``matches`` filtered by source and status and often sorted by IoU (``status = "tp"
ORDER BY iou LIMIT 50``). Written in this order, each (source, status) is a run of row groups whose zone
maps DuckDB uses to skip the others, and a top-N on IoU stops after the first row groups of each run (its
dynamic filter on iou skips the rest): on 1M items / 14M matches rows the worst-IoU query went from
~500 ms (top-N over 11.2M true positives) to ~8 ms. IoU is ordered to 1/65534 (zone maps need close
values together, not an exact order); rows with equal keys keep their order (by item, as the commit
builds them), so fp / fn rows stay in item order.

Runs of fewer than ``MIN_ROWS`` rows are written as built: a scan of a few row groups costs milliseconds,
while the order costs ~0.2 s CPU per million rows (at 5k images / 500k detections, ~10 % of a commit).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


MIN_ROWS = 1 << 20  # about 8 row groups of 122,880 rows: below it there is little for zone maps to skip


def storage_order(table: pa.Table) -> pa.Table:
    """``table`` (matches columns: source, status, iou ...) in storage order (a stable sort)."""
    order = permutation(table)
    return table if order is None else table.take(pa.array(order, pa.int64()))


def in_batches(table: pa.Table, rows: int = 1 << 20) -> Iterator[pa.Table]:
    """``table`` in storage order, ``rows`` at a time: a writer inserts them one after the other and never
    holds a sorted copy of the whole table next to it (the commit's peak memory stays as it was).
    A table of fewer than ``MIN_ROWS`` rows comes back as it is."""
    order = permutation(table) if table.num_rows >= MIN_ROWS else None
    if order is None:
        yield table
        return
    for start in range(0, len(order), rows):
        yield table.take(pa.array(order[start:start + rows], pa.int64()))


def permutation(table: pa.Table) -> np.ndarray | None:
    """The row order that puts ``table`` in storage order, or None when it already is."""
    n = table.num_rows
    if n < 2:
        return None
    group = np.zeros(n, np.int16)
    for name in ("source", "status"):
        column = table.column(name)
        column = column.unify_dictionaries() if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        column = column.combine_chunks()
        codes = (pc.rank(column.dictionary, sort_keys="ascending", tiebreaker="dense").to_numpy() - 1).astype(np.int16)
        group = group * np.int16(len(column.dictionary)) + codes[column.indices.to_numpy(zero_copy_only=False)]
    iou = table.column("iou").to_numpy(zero_copy_only=False)  # NULL -> NaN
    # IoU to 16 bits (zone maps need row groups of close values, not an exact order), NULL last: two
    # stable radix sorts (IoU, then group) instead of a comparison sort of 14M doubles (~3x slower).
    # Temporaries are dropped as soon as used and positions kept as int32: at 21M rows (200k images /
    # 20M detections) the commit's peak RSS is what the order adds to it.
    level = np.full(n, 65535, np.uint16)
    known = ~np.isnan(iou)
    level[known] = np.clip(iou[known], 0.0, 1.0) * 65534 + 0.5
    del iou, known
    index = np.int32 if n < 2**31 else np.int64
    order = np.argsort(level, kind="stable").astype(index)
    del level
    group = group[order]
    order = order[np.argsort(group, kind="stable")]
    return None if not (order[1:] < order[:-1]).any() else order
