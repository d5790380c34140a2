"""Polygon and box rasterization to COCO RLE, bit-exact with pycocotools.

``rleFrPoly`` (maskApi.c) upsamples every edge by 5, walks it with a DDA,
keeps the points where the upsampled x crosses a pixel centre column and turns
those y-boundaries into run lengths. This module computes exactly those
crossing points for many polygons at once on flat numpy arrays (no
per-polygon Python loop, and no walk over the 5x upsampled points), with the
same C arithmetic: ``(int)`` truncates toward zero and NaN / out-of-range
doubles become INT_MIN, as on x86-64.

Coordinates are exact for |coordinate| below ~4e8 (beyond that the C code
overflows ``int``, which is undefined behaviour).
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np

from udfs.rle import _seg_ids, merge_groups_flat

_INT_MIN = -(2**31)
_SCALE = 5.0

Polygon = Sequence[float] | np.ndarray


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def validate_polygon(poly: Polygon, index: int = 0) -> np.ndarray:
    """Return a flat float64 ``[x1, y1, x2, y2, ...]`` array or raise ValueError.

    Why: pycocotools silently drops a trailing odd coordinate, treats 2-point
    "polygons" as boxes (or crashes) and turns NaN into INT_MIN garbage.
    """
    try:
        arr = np.asarray(poly, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"polygon {index} is not a flat list of numbers") from exc
    if arr.ndim != 1:
        raise ValueError(f"polygon {index} must be a flat [x1, y1, x2, y2, ...] list, got shape {arr.shape}")
    if arr.size % 2:
        raise ValueError(f"polygon {index} has an odd number of coordinates ({arr.size})")
    if arr.size < 6:
        raise ValueError(f"polygon {index} has {arr.size // 2} point(s); at least 3 are needed")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"polygon {index} contains NaN or infinite coordinates")
    return arr


def validate_polygons(polygons: Sequence[Polygon]) -> list[np.ndarray]:
    """Validate every part of a COCO polygon segmentation (list of flat lists)."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 1 and polygons.dtype != object:
        raise ValueError("a polygon segmentation is a list of polygons, not a single flat list")
    if len(polygons) == 0:
        raise ValueError("polygon segmentation has no polygons")
    if not all(isinstance(p, (list, tuple, np.ndarray)) for p in polygons):
        raise ValueError("a polygon segmentation must be a list of flat coordinate lists")
    return [validate_polygon(p, i) for i, p in enumerate(polygons)]


def _coerce_pycoco(polygons: Sequence[Polygon]) -> list[np.ndarray]:
    """Parse polygons with pycocotools' frPyObjects leniency (k = len // 2 points)."""
    if len(polygons) == 0:
        raise ValueError("polygon segmentation has no polygons")
    if not all(isinstance(p, (list, tuple, np.ndarray)) for p in polygons):
        raise ValueError("a polygon segmentation must be a list of flat coordinate lists")
    if len(polygons[0]) <= 4:
        # pycocotools reads the whole list as boxes (len 4) or rejects it
        raise ValueError(
            f"first polygon has {len(polygons[0])} coordinates; pycocotools would read a "
            "list starting with a 4-number entry as boxes and rejects shorter ones"
        )
    out = []
    for i, p in enumerate(polygons):
        arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"polygon {i} contains NaN or infinite coordinates")
        out.append(arr[: (arr.size // 2) * 2])
    return out


# --------------------------------------------------------------------------
# rleFrPoly, vectorized over many polygons
# --------------------------------------------------------------------------


def _c_int(f: np.ndarray) -> np.ndarray:
    """C ``(int)`` cast of doubles on x86-64: truncate; NaN/out of range -> INT_MIN."""
    with np.errstate(invalid="ignore"):
        t = np.trunc(f)
        ok = (t >= _INT_MIN) & (t <= 2**31 - 1)
    return np.where(ok, np.where(ok, t, 0).astype(np.int64), _INT_MIN)


def fr_poly_flat(
    xy: np.ndarray, coord_offsets: np.ndarray, h: int | np.ndarray, w: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize many polygons to RLE (one per polygon), exactly as rleFrPoly.

    Args:
        xy: flat float64 coordinates of all polygons, ``x1, y1, x2, y2, ...``.
        coord_offsets: int64[n+1], polygon i is ``xy[coord_offsets[i]:coord_offsets[i+1]]``
            (an odd trailing coordinate is ignored, as in pycocotools).
        h, w: canvas size, scalars or one per polygon.

    Returns:
        Flat ``(values uint32, offsets int64)`` counts, one list per polygon.
    """
    xy = np.asarray(xy, dtype=np.float64)
    coord_offsets = np.asarray(coord_offsets, dtype=np.int64)
    n = coord_offsets.size - 1
    hh = np.broadcast_to(np.asarray(h, dtype=np.int64), (n,))
    ww = np.broadcast_to(np.asarray(w, dtype=np.int64), (n,))
    if np.any(hh <= 0) or np.any(ww <= 0):
        raise ValueError("polygon rasterization needs h >= 1 and w >= 1")
    k = np.diff(coord_offsets) // 2  # points per polygon
    vpoly = _seg_ids(k)
    vloc = np.arange(vpoly.size, dtype=np.int64) - np.repeat(np.cumsum(k) - k, k)
    base = coord_offsets[:-1][vpoly] + 2 * vloc
    X = _c_int(_SCALE * xy[base] + 0.5)
    Y = _c_int(_SCALE * xy[base + 1] + 0.5)

    # edges j -> j+1 (closing edge back to vertex 0), oriented as in the C code
    pstart = np.repeat(np.cumsum(k) - k, k)
    nxt = np.where(vloc == np.repeat(k, k) - 1, pstart, np.arange(vpoly.size) + 1)
    xs, xe, ys, ye = X, X[nxt], Y, Y[nxt]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    horiz = dx >= dy
    flip = (horiz & (xs > xe)) | (~horiz & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(
            horiz, (ye - ys).astype(np.float64) / dx, (xe - xs).astype(np.float64) / dy
        )
    # The C code walks every upsampled point (u, v) of every edge, but only
    # consecutive points whose u changes with min(u) = L, L % 5 == 2 (a pixel
    # centre column c = (L - 2) / 5 inside the image) emit a boundary. We jump
    # straight to those L: O(columns crossed) instead of O(5 * perimeter).
    def xf(t: np.ndarray, e: np.ndarray) -> np.ndarray:  # u of point t on steep edges e
        return _c_int(xs[e] + s[e] * t + 0.5)

    def yf(t: np.ndarray, e: np.ndarray) -> np.ndarray:  # v of point t on flat edges e
        return _c_int(ys[e] + s[e] * t + 0.5)

    eidx = np.arange(vpoly.size, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        u0 = np.where(horiz, xs, xf(0, eidx))
        u1 = np.where(horiz, xe, xf(dy, eidx))
    lo = np.maximum(np.minimum(u0, u1), 2)
    hi = np.minimum(np.maximum(u0, u1) - 1, 5 * ww[vpoly] - 3)
    first = lo + (2 - lo) % 5
    cnt = np.where(hi >= first, (hi - first) // 5 + 1, 0)
    e = np.repeat(eidx, cnt)
    L = np.repeat(first, cnt) + 5 * (
        np.arange(e.size, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    )
    he = horiz[e]
    # flat edges: u = t + xs exactly; v of the two points t, t+1
    t_h = L - xs[e]
    yd_h = np.minimum(yf(t_h, e), yf(t_h + 1, e))
    # steep edges: last t before u passes L (increasing) / L+1 (decreasing)
    inc = s[e] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        est = (L + 0.5 - xs[e]) / s[e]
        t = np.where(inc, np.ceil(est) - 1, np.floor(est))
    t = np.clip(np.where(he, 0, t), 0, np.maximum(dy[e] - 1, 0)).astype(np.int64)
    act = np.nonzero(~he)[0]
    for _ in range(64):  # the float estimate is off by at most a step or two
        if act.size == 0:
            break
        ta, ea, la, ia = t[act], e[act], L[act], inc[act]
        u_t, u_n = xf(ta, ea), xf(ta + 1, ea)
        ok_t = np.where(ia, u_t <= la, u_t >= la + 1)
        ok_n = np.where(ia, u_n <= la, u_n >= la + 1)
        move = np.where(~ok_t, -1, np.where(ok_n & (ta + 1 < dy[ea]), 1, 0))
        t[act] = ta + move
        act = act[move != 0]
    else:  # pragma: no cover - would mean a bug in the estimate
        raise RuntimeError("polygon edge search did not converge")
    yd_int = np.where(he, yd_h, ys[e] + t)
    pj = vpoly[e]
    xcol = (L - 2) // 5
    yd = (yd_int.astype(np.float64) + 0.5) / _SCALE - 0.5
    hf = hh[pj].astype(np.float64)
    yd = np.ceil(np.where(yd < 0, 0.0, np.where(yd > hf, hf, yd)))
    a = (xcol * hh[pj] + yd.astype(np.int64)) & 0xFFFFFFFF

    # sort boundary indices per polygon (plus h*w), diff, fold zero gaps like the C code
    keys = np.concatenate(
        (pj << 32 | a, np.arange(n, dtype=np.int64) << 32 | ((hh * ww) & 0xFFFFFFFF))
    )
    keys.sort()
    kp = keys >> 32
    ka = keys & 0xFFFFFFFF
    start = np.ones(keys.size, dtype=bool)
    start[1:] = kp[1:] != kp[:-1]
    diff = np.where(start, ka, ka - np.concatenate(([0], ka[:-1])))
    trig = (diff == 0) & ~start  # zero gap: swallow the next element
    idx = np.arange(keys.size)
    last_keep = np.maximum.accumulate(np.where(trig, -1, idx))
    run = np.zeros(keys.size, dtype=np.int64)
    run[1:] = idx[:-1] - last_keep[:-1]  # zero gaps right before each element
    kept = start | ((diff > 0) & (run % 2 == 0))
    grp = np.cumsum(kept) - 1
    values = np.bincount(grp, weights=diff.astype(np.float64)).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(kp[kept], minlength=n), out=offsets[1:])
    return (values & 0xFFFFFFFF).astype(np.uint32), offsets


def _pack(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(polys) + 1, dtype=np.int64)
    np.cumsum([p.size for p in polys], out=offsets[1:])
    xy = np.concatenate(polys) if polys else np.zeros(0)
    return xy, offsets


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def _fast_pack(
    segmentations: Sequence[Sequence[Polygon]], validate: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Flatten well-formed input in one pass; None means "take the careful path"."""
    lens: list[int] = []
    nparts: list[int] = []
    for segm in segmentations:
        if not isinstance(segm, (list, tuple)) or not segm:
            return None
        for j, p in enumerate(segm):
            if not isinstance(p, (list, tuple, np.ndarray)):
                return None
            n = len(p)
            if n % 2 or n < (6 if validate or j == 0 else 0):
                return None
            lens.append(n)
        nparts.append(len(segm))
    coff = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=coff[1:])
    try:
        flat = chain.from_iterable(chain.from_iterable(segmentations))
        xy = np.fromiter(flat, dtype=np.float64, count=int(coff[-1]))
    except (TypeError, ValueError):
        return None
    if not np.isfinite(xy).all():
        return None
    return xy, coff, np.asarray(nparts, dtype=np.int64)


def polygons_to_rle_many(
    segmentations: Sequence[Sequence[Polygon]],
    h: int | np.ndarray,
    w: int | np.ndarray,
    validate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize many polygon segmentations (each a list of parts) to flat RLEs.

    Each result equals pycocotools ``merge(frPyObjects(parts, h, w))``.
    With ``validate=False`` parts are read as leniently as pycocotools does
    (odd trailing coordinate dropped, short later parts allowed).
    """
    n = len(segmentations)
    if n == 0:
        return np.zeros(0, np.uint32), np.zeros(1, np.int64)
    hh = np.broadcast_to(np.asarray(h, dtype=np.int64), (n,))
    ww = np.broadcast_to(np.asarray(w, dtype=np.int64), (n,))
    packed = _fast_pack(segmentations, validate)
    if packed is None:  # careful path: precise errors / lenient truncation
        parse = validate_polygons if validate else _coerce_pycoco
        parts: list[np.ndarray] = []
        nparts = np.zeros(n, dtype=np.int64)
        for i, segm in enumerate(segmentations):
            try:
                ps = parse(segm)
            except ValueError as exc:
                raise ValueError(f"segmentation {i}: {exc}") from exc
            parts.extend(ps)
            nparts[i] = len(ps)
        xy, coff = _pack(parts)
    else:
        xy, coff, nparts = packed
    group = _seg_ids(nparts)
    values, offsets = fr_poly_flat(xy, coff, hh[group], ww[group])
    if np.all(nparts == 1):  # rleMerge of a single RLE is a copy
        return values, offsets
    return merge_groups_flat(values, offsets, group, n, hh * ww)


def polygon_to_rle(
    polygons: Sequence[Polygon], h: int, w: int, validate: bool = True
) -> np.ndarray:
    """RLE counts of a polygon segmentation, as ``merge(frPyObjects(polygons, h, w))``."""
    values, _ = polygons_to_rle_many([polygons], h, w, validate=validate)
    return values


def polygon_area(polygons: Sequence[Polygon], h: int, w: int, validate: bool = True) -> int:
    """Pixel area of a polygon segmentation (area of its RLE, as COCO computes it)."""
    return int(polygon_to_rle(polygons, h, w, validate)[1::2].sum(dtype=np.int64))


def bboxes_to_rle_flat(
    boxes: np.ndarray, h: int | np.ndarray, w: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """RLEs of ``[n, 4]`` xywh boxes, exactly as pycocotools frBbox (flat output)."""
    bb = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(bb)):
        raise ValueError("boxes contain NaN or infinite values")
    xs, ys = bb[:, 0], bb[:, 1]
    xe, ye = xs + bb[:, 2], ys + bb[:, 3]
    xy = np.stack([xs, ys, xs, ye, xe, ye, xe, ys], axis=1).reshape(-1)
    offsets = np.arange(bb.shape[0] + 1, dtype=np.int64) * 8
    return fr_poly_flat(xy, offsets, h, w)


def bbox_to_rle(x: float, y: float, w: float, h: float, h_img: int, w_img: int) -> np.ndarray:
    """RLE counts of one xywh box on an h_img x w_img canvas (pycocotools frBbox)."""
    values, _ = bboxes_to_rle_flat(np.array([[x, y, w, h]]), h_img, w_img)
    return values
