"""Derived geometry over Arrow columns: boxes and areas of polygons and masks, kind inference.

Vectorized over the flat list buffers (numpy ``reduceat`` over offsets), so a million polygons cost one
pass, not a million Python calls. Areas follow COCO: a box's is ``w * h``, a mask's is its pixel count,
a polygon's is the pixel count of its rasterization at the image size.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from .schema import record_name


def infer_kind(t: pa.Table) -> pa.Array:
    """Fill a NULL ``kind`` from which geometry is present (Arrow compute, no Python loop)."""
    kind = t.column("kind").combine_chunks()
    if kind.null_count == 0:
        return kind
    has = lambda c: pc.is_valid(t.column(c))  # noqa: E731
    guess = pc.if_else(has("mask"), "segmentation",
            pc.if_else(has("polygon"), "polygon",
            pc.if_else(has("keypoints"), "keypoints",
            pc.if_else(pc.or_(has("x"), has("width")), "box", "category"))))
    out = pc.coalesce(kind, guess)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def polygon_boxes(t: pa.Table) -> tuple[np.ndarray, ...]:
    """Per-row (x, y, w, h) of the polygon rings' extent; NaN where there is no polygon.

    Raises ValidationError for rings with an odd number of coordinates, fewer than 3 points, or
    non-finite values.
    """
    n = t.num_rows
    out = [np.full(n, np.nan) for _ in range(4)]
    poly = t.column("polygon").combine_chunks()
    if poly.null_count == n:
        return tuple(out)
    rows = np.asarray(pc.list_parent_indices(poly))
    rings = pc.list_flatten(poly)
    ring_len = np.asarray(pc.list_value_length(rings).fill_null(0))
    bad = (ring_len % 2 == 1) | (ring_len < 6)
    if bad.any():
        r = int(rows[np.argmax(bad)])
        raise ValidationError(
            "malformed polygon: each ring needs an even number of coordinates and at least 3 points",
            record=_name(t, r), field="polygon",
        )
    n_rings = np.asarray(pc.list_value_length(poly).fill_null(0))
    empty = (n_rings == 0) & ~np.asarray(pc.is_null(poly))
    if empty.any():
        raise ValidationError("polygon has no rings", record=_name(t, int(np.argmax(empty))), field="polygon")
    vals = np.asarray(pc.list_flatten(rings), dtype=np.float64)
    if not np.isfinite(vals).all():
        coord_ring = np.repeat(np.arange(len(ring_len)), ring_len)
        r = int(rows[coord_ring[np.argmax(~np.isfinite(vals))]])
        raise ValidationError("polygon has NaN or infinite coordinates", record=_name(t, r), field="polygon")
    coord_row = np.repeat(rows, ring_len)  # row of every coordinate
    xs, ys = vals[0::2], vals[1::2]  # rings have even length, so parity is global
    prow = coord_row[0::2]
    starts = np.flatnonzero(np.r_[True, prow[1:] != prow[:-1]])
    urow = prow[starts]
    x0 = np.minimum.reduceat(xs, starts)
    x1 = np.maximum.reduceat(xs, starts)
    y0 = np.minimum.reduceat(ys, starts)
    y1 = np.maximum.reduceat(ys, starts)
    out[0][urow], out[1][urow], out[2][urow], out[3][urow] = x0, y0, x1 - x0, y1 - y0
    return tuple(out)


def mask_areas_boxes(t: pa.Table) -> tuple[np.ndarray, ...]:
    """Per-row (area, x, y, w, h) of RLE masks; NaN where there is no mask. Checks the run sums."""
    n = t.num_rows
    area = np.full(n, np.nan)
    box = [np.full(n, np.nan) for _ in range(4)]
    masks = t.column("mask").combine_chunks()
    if masks.null_count == n:
        return (area, *box)
    from udfs import rle

    hs = t.column("mask_height").to_numpy(zero_copy_only=False)
    ws = t.column("mask_width").to_numpy(zero_copy_only=False)
    present = np.flatnonzero(~np.asarray(pc.is_null(masks)))
    offsets = np.asarray(masks.offsets)
    values = np.asarray(pc.list_flatten(masks), dtype=np.int64)
    for r in present:  # per mask; rle.to_bbox is the kernel
        h, w = hs[r], ws[r]
        if h is None or w is None or np.isnan(h) or np.isnan(w):
            raise ValidationError("mask needs mask_height and mask_width", record=_name(t, r), field="mask")
        counts = values[offsets[r]:offsets[r + 1]]
        if counts.sum() != int(h) * int(w):
            raise ValidationError(
                f"malformed RLE: counts sum to {int(counts.sum())}, expected {int(h)}x{int(w)}={int(h) * int(w)}",
                record=_name(t, r), field="mask",
            )
        area[r] = counts[1::2].sum()
        bx = rle.to_bbox(counts.astype(np.uint32), int(h), int(w))
        for k in range(4):
            box[k][r] = bx[k]
    return (area, *box)


def polygon_areas(t: pa.Table, rows: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """COCO area (rasterized pixel count) of the polygons in ``rows`` at their image sizes."""
    from udfs import polygons, rle

    poly = t.column("polygon")
    out = np.full(len(rows), np.nan)
    for j, r in enumerate(rows):
        h, w = heights[j], widths[j]
        if h is None or w is None or not np.isfinite(h) or not np.isfinite(w):
            continue
        counts = polygons.polygon_to_rle(poly[int(r)].as_py(), int(h), int(w))
        out[j] = float(rle.area(counts))
    return out


def _name(t: pa.Table, r: int) -> str:
    return record_name(t.column("reference_id")[r].as_py(), r, t.column("annotation_id")[r].as_py())
