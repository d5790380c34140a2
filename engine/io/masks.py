"""Instance-mask images (0 = background, k = instance k) → per-instance box, area and COCO RLE.

One pass over the label image for all its instances (numpy), never a loop over pixels:
boxes by ``minimum/maximum.reduceat`` over the foreground pixels grouped by instance id, RLEs
from the positions where the column-major label sequence changes value.
"""
from __future__ import annotations

import numpy as np


def instances(label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Instances of a 2-D integer label image.

    Returns:
        ``ids`` (sorted non-zero values present), ``boxes`` ``[n, 4]`` tight 0-based
        ``x, y, width, height`` (x = min col, width = max col - min col + 1), ``areas`` (pixel
        counts) and ``counts`` (COCO RLE run lengths, column-major, uint32) per instance.
    """
    if label.ndim != 2:
        raise ValueError(f"instance mask must be 2-D, got shape {label.shape}")
    h, w = label.shape
    flat = np.ascontiguousarray(label.T).reshape(-1)  # column-major, as COCO RLE
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float64), np.zeros(0, np.int64), []
    vals = flat[fg]
    order = np.argsort(vals, kind="stable")
    vals, fg = vals[order], fg[order]
    starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
    ids = vals[starts].astype(np.int64)
    rows, cols = fg % h, fg // h
    x0, x1 = np.minimum.reduceat(cols, starts), np.maximum.reduceat(cols, starts)
    y0, y1 = np.minimum.reduceat(rows, starts), np.maximum.reduceat(rows, starts)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1).astype(np.float64)
    areas = np.diff(np.r_[starts, fg.size]).astype(np.int64)
    return ids, boxes, areas, _rles(flat, ids)


def _rles(flat: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    """RLE of every instance: its boundaries are the change points where it is entered or left."""
    n = flat.size
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    # each change position p bounds the run of flat[p-1] and the run of flat[p]
    pos = np.concatenate(([0], change, change))
    owner = np.concatenate((flat[:1], flat[change - 1], flat[change])).astype(np.int64)
    keep = owner != 0
    pos, owner = pos[keep], owner[keep]
    order = np.lexsort((pos, owner))
    pos, owner = pos[order], owner[order]
    bounds = np.searchsorted(owner, ids), np.searchsorted(owner, ids, side="right")
    out = []
    for a, b in zip(*bounds):  # one iteration per instance, not per pixel
        out.append(np.diff(np.concatenate(([0], pos[a:b], [n]))).astype(np.uint32))
    return out
