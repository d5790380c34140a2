"""COCO run-length encoding (RLE) of binary masks in pure numpy.

Bit-exact re-implementation of pycocotools' ``maskApi.c`` (version 2.0.x as
shipped on PyPI): counts are uint32 run lengths over the column-major
(Fortran) flattened mask, starting with a background run (possibly 0).

Single-mask functions take/return a 1-D uint32 ``counts`` array; ``*_flat`` /
``*_many`` functions use Arrow-style flat arrays (``values`` uint32 plus
``offsets`` int64 of length n+1) so that thousands of masks are processed with
a handful of numpy calls. pycocotools is never imported here.

Deliberate deviations (documented, all on inputs pycocotools mishandles):
counts whose sum differs from ``h*w`` raise ``ValueError`` (pycocotools
returns garbage, -1 or loops forever), empty inputs give empty results
instead of ``[]``, and non-ASCII / truncated compressed strings raise.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_U32 = np.int64(0xFFFFFFFF)
# Pair-chunk budget (total runs gathered per chunk) for iou_pairs_flat.
_CHUNK_RUNS = 1 << 22


# --------------------------------------------------------------------------
# flat (Arrow-style) helpers
# --------------------------------------------------------------------------


def to_flat(counts_list: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pack a list of counts arrays into ``(values uint32, offsets int64)``."""
    arrs = [as_counts(c) for c in counts_list]
    offsets = np.zeros(len(arrs) + 1, dtype=np.int64)
    if arrs:
        np.cumsum([a.size for a in arrs], out=offsets[1:])
        values = np.concatenate(arrs) if offsets[-1] else np.zeros(0, np.uint32)
    else:
        values = np.zeros(0, np.uint32)
    return values.astype(np.uint32, copy=False), offsets


def from_flat(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Split flat ``(values, offsets)`` back into a list of counts arrays."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return [values[offsets[i] : offsets[i + 1]] for i in range(offsets.size - 1)]


def _seg_ids(lengths: np.ndarray) -> np.ndarray:
    """Owning segment index of every element of a flat array."""
    return np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)


def _local_index(lengths: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of every element within its own segment."""
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def _seg_cumsum(x: np.ndarray, lengths: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at every segment (int64)."""
    cs = np.cumsum(x, dtype=np.int64)
    before = np.concatenate(([0], cs))[starts]
    return cs - np.repeat(before, lengths)


def _norm(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint32 values and int64 offsets rebased to start at 0 (Arrow slices may not)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    values = as_counts(np.asarray(values)[offsets[0] : offsets[-1]])
    return values, offsets - offsets[0]


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def as_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Coerce run lengths to a 1-D uint32 array, rejecting negatives/overflow."""
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"RLE counts must be 1-D, got shape {arr.shape}")
    if arr.dtype == np.uint32:
        return arr
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint32)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("RLE counts must be whole numbers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"RLE counts must be integers, got dtype {arr.dtype}")
    if np.any(arr < 0):
        raise ValueError(f"RLE counts must be non-negative (min is {arr.min()})")
    if np.any(arr > 0xFFFFFFFF):
        raise ValueError("RLE counts must fit in uint32")
    return arr.astype(np.uint32)


def validate_rle(counts: Sequence[int] | np.ndarray, h: int, w: int) -> np.ndarray:
    """Return counts as uint32 or raise ValueError if they cannot describe an h x w mask.

    Why: pycocotools silently produces garbage (or hangs in iou/merge) for
    counts that do not sum to h*w; Loupe rejects them at ingest instead.
    """
    if int(h) < 0 or int(w) < 0:
        raise ValueError(f"mask size must be non-negative, got h={h}, w={w}")
    arr = as_counts(counts)
    if arr.size == 0:
        raise ValueError("RLE counts are empty (a valid RLE has at least one run)")
    total = int(arr.sum(dtype=np.uint64))
    if total != int(h) * int(w):
        raise ValueError(
            f"RLE counts sum to {total} but the mask has h*w = {int(h) * int(w)} pixels"
        )
    return arr


# --------------------------------------------------------------------------
# encode / decode
# --------------------------------------------------------------------------


def _check_mask_dtype(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == np.bool_:
        return mask.view(np.uint8)
    if mask.dtype != np.uint8:
        raise TypeError(f"mask must be bool or uint8, got {mask.dtype}")
    return mask


def encode_many(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode a stack of masks ``[N, H, W]`` into flat ``(values, offsets)``.

    Exactly rleEncode: a new run starts wherever the byte value changes
    (so uint8 values other than 0/1 split runs just as in pycocotools).
    """
    masks = _check_mask_dtype(np.asarray(masks))
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    n, h, w = masks.shape
    a = h * w
    flat = np.ascontiguousarray(masks.transpose(0, 2, 1)).reshape(n, a)
    if a == 0:
        return np.zeros(n, np.uint32), np.arange(n + 1, dtype=np.int64)
    change = np.empty((n, a), dtype=bool)
    change[:, 0] = flat[:, 0] != 0
    np.not_equal(flat[:, 1:], flat[:, :-1], out=change[:, 1:])
    rows, cols = np.nonzero(change)
    nchg = np.bincount(rows, minlength=n).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nchg + 1, out=offsets[1:])
    values = np.empty(int(offsets[-1]), dtype=np.int64)
    cstart = offsets[:-1] - np.arange(n)  # first change index of each row
    prev = np.empty_like(cols)
    prev[1:] = cols[:-1]
    has = nchg > 0
    prev[cstart[has]] = 0
    values[np.arange(cols.size) + rows] = cols - prev
    last = np.zeros(n, dtype=np.int64)
    last[has] = cols[cstart[has] + nchg[has] - 1]
    values[offsets[1:] - 1] = a - last
    return values.astype(np.uint32), offsets


def encode(mask: np.ndarray) -> np.ndarray:
    """Encode one ``[H, W]`` bool/uint8 mask into uint32 counts (column-major)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    values, _ = encode_many(mask[None])
    return values


def decode(counts: Sequence[int] | np.ndarray, h: int, w: int) -> np.ndarray:
    """Decode counts into an ``[h, w]`` uint8 mask (Fortran-ordered view)."""
    arr = validate_rle(counts, h, w)
    bits = (np.arange(arr.size) & 1).astype(np.uint8)
    return np.repeat(bits, arr).reshape(int(w), int(h)).T


# --------------------------------------------------------------------------
# compressed string form (rleToString / rleFrString)
# --------------------------------------------------------------------------


def _compress_chars(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Characters (uint8) of every list's compressed string and per-list char offsets.

    rleToString: x = cnts[i] (minus cnts[i-2] for i > 2) is written 5 bits per
    char, low bits first, 0x20 = "more follows", until the rest is pure sign.
    """
    lengths = np.diff(offsets)
    li = _local_index(lengths, offsets[:-1])
    x = values.astype(np.int64)
    idx = np.nonzero(li > 2)[0]
    x[idx] -= values[idx - 2].astype(np.int64)
    nchar = np.ones(x.size, dtype=np.int64)
    for k in range(1, 7):  # value needs > k chars unless it fits in 5k signed bits
        lim = np.int64(1) << (5 * k - 1)
        nchar += (x >= lim) | (x < -lim)
    owner = np.repeat(np.arange(x.size), nchar)
    k = np.arange(owner.size, dtype=np.int64) - np.repeat(np.cumsum(nchar) - nchar, nchar)
    chunk = (x[owner] >> (5 * k)) & 0x1F
    chunk |= np.where(k < nchar[owner] - 1, 0x20, 0)
    chars = (chunk + 48).astype(np.uint8)
    coff = np.zeros(lengths.size + 1, dtype=np.int64)
    csum = np.concatenate(([0], np.cumsum(nchar)))
    coff[:] = csum[offsets]
    return chars, coff


def compress(counts: Sequence[int] | np.ndarray) -> str:
    """COCO compressed RLE string of counts, exactly as rleToString."""
    arr = as_counts(counts)
    chars, _ = _compress_chars(arr, np.array([0, arr.size], dtype=np.int64))
    return chars.tobytes().decode("ascii")


def compress_many(values: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Compressed strings for every list of a flat ``(values, offsets)`` batch."""
    values, offsets = _norm(values, offsets)
    chars, coff = _compress_chars(values, offsets)
    text = chars.tobytes().decode("ascii")
    return [text[coff[i] : coff[i + 1]] for i in range(coff.size - 1)]


def _as_bytes(s: str | bytes) -> bytes:
    if isinstance(s, str):
        try:
            return s.encode("ascii")
        except UnicodeEncodeError as exc:
            raise ValueError("compressed RLE string must be ASCII") from exc
    return bytes(s)


def decompress_many(strings: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Decode many compressed strings into flat ``(values, offsets)`` (rleFrString).

    Mirrors the C decoder's 32-bit ``int`` shifts (shift counts taken mod 32),
    so even out-of-range deltas decode to the same uint32 as pycocotools.
    """
    raw = [_as_bytes(s) for s in strings]
    clen = np.array([len(b) for b in raw], dtype=np.int64)
    c = np.frombuffer(b"".join(raw), dtype=np.uint8).astype(np.int64) - 48
    n = len(raw)
    if c.size and (c.min() < 0 or c.max() > 63):
        raise ValueError("compressed RLE string has characters outside '0'..'o'")
    more = (c & 0x20) != 0
    ends = np.nonzero(~more)[0]  # last char of every value
    # every string must end on a terminating char
    cend = np.cumsum(clen)
    nonempty = clen > 0
    if np.any(more[cend[nonempty] - 1]):
        raise ValueError("compressed RLE string is truncated (last char continues)")
    if ends.size == 0:
        return np.zeros(0, np.uint32), np.zeros(n + 1, np.int64)
    vstart = np.concatenate(([0], ends[:-1] + 1))
    nk = ends - vstart + 1
    k = _local_index(nk, vstart)
    part = ((c & 0x1F) << ((5 * k) & 31)) & _U32
    x = np.bitwise_or.reduceat(part, vstart)
    neg = (c[ends] & 0x10) != 0
    x = np.where(neg, x | ((_U32 << ((5 * nk) & 31)) & _U32), x)
    # values per string and the delta decoding cnts[m] = x + cnts[m-2] for m > 2
    vals_per = np.bincount(np.searchsorted(cend, ends, side="right"), minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(vals_per, out=offsets[1:])
    li = _local_index(vals_per, offsets[:-1])
    delta = np.where(li >= 1, x, 0)
    out = np.empty_like(x)
    for parity in (0, 1):
        sel = (li & 1) == parity
        cs = np.cumsum(np.where(sel, delta, 0), dtype=np.uint64)
        before = np.concatenate((np.zeros(1, np.uint64), cs))[offsets[:-1]]
        seg = cs - np.repeat(before, vals_per)
        out[sel] = (seg[sel] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    out[li == 0] = x[li == 0]
    return out.astype(np.uint32), offsets


def decompress(s: str | bytes) -> np.ndarray:
    """Counts of a COCO compressed RLE string, exactly as rleFrString."""
    values, _ = decompress_many([s])
    return values


# --------------------------------------------------------------------------
# area / bbox
# --------------------------------------------------------------------------


def area_flat(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Foreground pixel count of every list (sum of odd-indexed runs, uint wrap as in C)."""
    values, offsets = _norm(values, offsets)
    lengths = np.diff(offsets)
    li = _local_index(lengths, offsets[:-1])
    cs = np.concatenate(([0], np.cumsum(np.where(li & 1, values, 0), dtype=np.int64)))
    return (cs[offsets[1:]] - cs[offsets[:-1]]) & _U32


def area(counts: Sequence[int] | np.ndarray) -> int:
    """Foreground pixel count (rleArea)."""
    arr = as_counts(counts)
    return int(arr[1::2].sum(dtype=np.uint64)) & 0xFFFFFFFF


def to_bbox_flat(
    values: np.ndarray, offsets: np.ndarray, h: int | np.ndarray, w: int | np.ndarray
) -> np.ndarray:
    """``[n, 4]`` float64 boxes (x, y, w, h) of every list, exactly as rleToBbox.

    A foreground run crossing a column boundary makes the box full-height;
    lists with no non-empty foreground run keep the C code's uint wrap-around.
    """
    values, offsets = _norm(values, offsets)
    lengths = np.diff(offsets)
    n = lengths.size
    hh = np.broadcast_to(np.asarray(h, dtype=np.int64), (n,))
    ww = np.broadcast_to(np.asarray(w, dtype=np.int64), (n,))
    if np.any(hh <= 0) or np.any(ww <= 0):
        raise ValueError("to_bbox needs h >= 1 and w >= 1")
    seg = _seg_ids(lengths)
    li = _local_index(lengths, offsets[:-1])
    cc = _seg_cumsum(values.astype(np.int64), lengths, offsets[:-1]) & _U32
    start = (cc - values) & _U32
    m_even = (lengths // 2) * 2
    fg = ((li & 1) == 1) & (li < m_even[seg]) & (values > 0)
    s, e, g = start[fg], (cc[fg] - 1) & _U32, seg[fg]
    hg = hh[g]
    ys_, xs_ = s % hg, s // hg
    ye_, xe_ = e % hg, e // hg
    xs = ww.copy()
    xe = np.zeros(n, np.int64)
    ys = hh.copy()
    ye = np.zeros(n, np.int64)
    np.minimum.at(xs, g, xs_)
    np.maximum.at(xe, g, xe_)
    cross = xs_ < xe_
    np.minimum.at(ys, g[~cross], ys_[~cross])
    np.maximum.at(ye, g[~cross], ye_[~cross])
    crossed = np.zeros(n, bool)
    crossed[g[cross]] = True
    ys[crossed] = 0
    ye[crossed] = hh[crossed] - 1
    out = np.stack(
        [xs, ys, (xe - xs + 1) & _U32, (ye - ys + 1) & _U32], axis=1
    ).astype(np.float64)
    out[m_even == 0] = 0.0
    return out


def to_bbox(counts: Sequence[int] | np.ndarray, h: int, w: int) -> np.ndarray:
    """Bounding box ``[x, y, w, h]`` (float64) of one RLE, exactly as rleToBbox."""
    arr = as_counts(counts)
    return to_bbox_flat(arr, np.array([0, arr.size], dtype=np.int64), h, w)[0]


# --------------------------------------------------------------------------
# exact emulation of the C two-pointer walk (rleMerge / rleIou inner loop)
# --------------------------------------------------------------------------


def _walk(ca: np.ndarray, cb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replay the C loop over two RLEs; return per-step (t, run index A, run index B).

    Each C step advances every side whose current run ended at time t by one
    run, so zero-length runs cost extra steps, and the loop stops at the first
    step where both current runs are exhausted (possibly before the end, a
    pycocotools quirk for RLEs with interior zero runs).
    """
    if ca.size == 0 or cb.size == 0:
        raise ValueError("RLE counts are empty")
    ea = np.cumsum(ca, dtype=np.int64)
    eb = np.cumsum(cb, dtype=np.int64)
    if ea[-1] != eb[-1]:
        raise ValueError(
            f"RLEs cover different pixel counts ({ea[-1]} vs {eb[-1]}); "
            "they must describe masks of the same size"
        )
    total = int(ea[-1])
    pa, pb = ea[:-1], eb[:-1]  # advanceable run ends (the last run never advances)
    ra = np.arange(pa.size) - np.searchsorted(pa, pa, side="left")
    rb = np.arange(pb.size) - np.searchsorted(pb, pb, side="left")
    big = int(max(ra.max(initial=0), rb.max(initial=0))) + 2
    ka = pa * big + ra
    kb = pb * big + rb
    steps = np.union1d(np.union1d(ka, kb), [total * big + big - 1])
    t = steps // big
    ia = np.searchsorted(ka, steps, side="right")
    ib = np.searchsorted(kb, steps, side="right")
    done = (ea[ia] == t) & (eb[ib] == t)
    stop = int(np.argmax(done)) + 1
    return t[:stop], ia[:stop], ib[:stop]


def _merge2(ca: np.ndarray, cb: np.ndarray, intersect: bool) -> np.ndarray:
    """rleMerge of two RLEs: emit the elapsed length whenever the merged value flips."""
    t, ia, ib = _walk(ca, cb)
    va, vb = (ia & 1).astype(bool), (ib & 1).astype(bool)
    v = (va & vb) if intersect else (va | vb)
    vp = np.concatenate(([False], v[:-1]))
    emit = v != vp
    emit[-1] = True
    te = t[emit]
    return np.diff(te, prepend=0).astype(np.uint32)


def merge(
    counts_list: Sequence[Sequence[int] | np.ndarray],
    h: int,
    w: int,
    intersect: bool = False,
) -> np.ndarray:
    """Union (or intersection) of RLEs of the same h x w canvas, exactly as rleMerge."""
    arrs = [validate_rle(c, h, w) for c in counts_list]
    if not arrs:
        return np.zeros(0, dtype=np.uint32)
    out = arrs[0].copy()
    for i, b in enumerate(arrs[1:], start=1):
        if i > 1 and int(out.sum(dtype=np.uint64)) != int(h) * int(w):
            raise ValueError(
                "merge stopped early on zero-length runs (pycocotools quirk) and the partial "
                "result cannot be merged further (pycocotools loops forever here)"
            )
        out = _merge2(out, b, intersect)
    return out


def _iou_walk(ca: np.ndarray, cb: np.ndarray, crowd: bool) -> float:
    """Reference rleIou for one pair (exact even for RLEs with zero-length runs)."""
    t, ia, ib = _walk(ca, cb)
    c = np.diff(t, prepend=0)
    va = np.concatenate(([0], ia[:-1] & 1)).astype(bool)
    vb = np.concatenate(([0], ib[:-1] & 1)).astype(bool)
    inter = int(c[va & vb].sum())
    if inter == 0:
        return 0.0
    union = int(ca[1::2].sum(dtype=np.int64)) if crowd else int(c[va | vb].sum())
    return inter / union


# --------------------------------------------------------------------------
# IoU
# --------------------------------------------------------------------------


def _gather(
    values: np.ndarray, offsets: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the lists ``idx`` (ragged gather); returns (vals, lens, starts, local)."""
    lens = offsets[idx + 1] - offsets[idx]
    starts = np.zeros(idx.size, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    local = _local_index(lens, starts)
    vals = values[np.repeat(offsets[idx], lens) + local].astype(np.int64)
    return vals, lens, starts, local


def _list_stats(values: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-list length, total, first fg start, fg end bound and interior-zero flag.

    Uses only O(#lists) temporaries besides one reduceat pass over ``values``.
    """
    lengths = np.diff(offsets)
    n = lengths.size
    nonempty = lengths > 0
    total = np.zeros(n, dtype=np.int64)
    if nonempty.any():
        seg = values[: offsets[-1]]
        total[nonempty] = np.add.reduceat(seg, offsets[:-1][nonempty], dtype=np.uint64)
    safe_first = np.minimum(offsets[:-1], max(values.size - 1, 0))
    safe_last = np.maximum(offsets[1:] - 1, 0)
    v_first = values[safe_first].astype(np.int64) if values.size else np.zeros(n, np.int64)
    v_last = values[safe_last].astype(np.int64) if values.size else np.zeros(n, np.int64)
    first = np.where(lengths >= 2, v_first, total)
    tail = np.where(lengths % 2 == 1, v_last, 0)
    # interior zero-length runs trigger the C loop's early-stop quirk
    z = np.nonzero(values[: offsets[-1]] == 0)[0]
    z = z[z >= offsets[0]]
    zl = np.searchsorted(offsets, z, side="right") - 1
    zi = z - offsets[zl]
    interior = (zi >= 1) & (zi <= lengths[zl] - 2)
    odd = np.zeros(n, dtype=bool)
    odd[zl[interior]] = True
    return {"len": lengths, "total": total, "first": first, "fg_end": total - tail, "odd": odd}


def iou_pairs_flat(
    dt_values: np.ndarray,
    dt_offsets: np.ndarray,
    dt_idx: np.ndarray,
    gt_values: np.ndarray,
    gt_offsets: np.ndarray,
    gt_idx: np.ndarray,
    iscrowd: np.ndarray | bool,
) -> np.ndarray:
    """Mask IoU of aligned pairs (dt list ``dt_idx[i]`` vs gt list ``gt_idx[i]``), float64[P].

    Args:
        dt_values, dt_offsets: Arrow-style flat counts of the detections (list j
            is ``dt_values[dt_offsets[j]:dt_offsets[j+1]]``); likewise for gt.
        dt_idx, gt_idx: int[P], the lists compared by each pair.
        iscrowd: bool[P] (or a scalar): is the pair's gt a crowd region.

    Bit-identical to pycocotools ``rleIou`` per pair (crowd: union = dt area;
    no intersection gives 0). Pairs with disjoint foreground ranges are 0
    without touching their runs; the others are computed chunk-wise with flat
    arrays (see ``_iou_chunk``). Pairs holding interior zero-length runs (never
    produced by encode/polygons) replay the C loop one by one, quirks included.

    Raises:
        ValueError: a pair compares masks of different pixel totals (pycocotools
            returns -1 or loops forever), an index is out of range, or counts are empty.
    """
    dt_values = as_counts(dt_values)
    gt_values = as_counts(gt_values)
    dt_offsets = np.asarray(dt_offsets, dtype=np.int64)
    gt_offsets = np.asarray(gt_offsets, dtype=np.int64)
    dt_idx = np.asarray(dt_idx, dtype=np.int64)
    gt_idx = np.asarray(gt_idx, dtype=np.int64)
    if dt_idx.shape != gt_idx.shape or dt_idx.ndim != 1:
        raise ValueError("dt_idx and gt_idx must be 1-D arrays of equal length")
    npairs = dt_idx.size
    crowd = np.broadcast_to(np.asarray(iscrowd, dtype=bool), (npairs,))
    out = np.zeros(npairs, dtype=np.float64)
    if npairs == 0:
        return out
    for name, idx, offs in (("dt_idx", dt_idx, dt_offsets), ("gt_idx", gt_idx, gt_offsets)):
        if idx.min() < 0 or idx.max() >= offs.size - 1:
            raise ValueError(f"{name} must index the {offs.size - 1} lists given")
    sd = _list_stats(dt_values, dt_offsets)
    sg = _list_stats(gt_values, gt_offsets)
    if np.any(sd["len"][dt_idx] == 0) or np.any(sg["len"][gt_idx] == 0):
        raise ValueError("RLE counts are empty (a valid RLE has at least one run)")
    tot = sd["total"][dt_idx]
    bad = tot != sg["total"][gt_idx]
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"{int(bad.sum())} pair(s) compare masks of different sizes, e.g. pair {i}: "
            f"{tot[i]} vs {sg['total'][gt_idx][i]} pixels"
        )
    # pairs whose foreground pixel ranges are disjoint have IoU 0 (C: bbox pre-check)
    live = (sd["first"][dt_idx] < sg["fg_end"][gt_idx]) & (
        sg["first"][gt_idx] < sd["fg_end"][dt_idx]
    )
    slow = live & (sd["odd"][dt_idx] | sg["odd"][gt_idx])
    for p in np.nonzero(slow)[0]:
        ca = dt_values[dt_offsets[dt_idx[p]] : dt_offsets[dt_idx[p] + 1]]
        cb = gt_values[gt_offsets[gt_idx[p]] : gt_offsets[gt_idx[p] + 1]]
        out[p] = _iou_walk(ca, cb, bool(crowd[p]))
    fast = np.nonzero(live & ~slow)[0]
    if fast.size == 0:
        return out
    # grouped by gt: chunks touch fewer gt lists and searches walk memory in order
    fast = fast[np.argsort(gt_idx[fast], kind="stable")]
    work = (np.diff(dt_offsets)[dt_idx[fast]] + np.diff(gt_offsets)[gt_idx[fast]]).cumsum()
    cuts = np.searchsorted(work, np.arange(_CHUNK_RUNS, int(work[-1]), _CHUNK_RUNS))
    for sel in np.split(fast, np.unique(cuts)):
        if sel.size:
            out[sel] = _iou_chunk(
                dt_values, dt_offsets, dt_idx[sel], gt_values, gt_offsets, gt_idx[sel],
                crowd[sel], sg["first"][gt_idx[sel]], sg["fg_end"][gt_idx[sel]],
                int(tot[sel].max()) + 1,
            )
    return out


def _compact(values: np.ndarray, offsets: np.ndarray, idx: np.ndarray):
    """Gather each referenced list once.

    Returns (inverse of idx, lens, starts, run ends, fg area up to each end, local index).
    """
    uniq, inv = np.unique(idx, return_inverse=True)
    vals, lens, starts, local = _gather(values, offsets, uniq)
    ends = _seg_cumsum(vals, lens, starts)
    fg = _seg_cumsum(np.where(local & 1, vals, 0), lens, starts)
    return inv, lens, starts, ends, fg, local


def _iou_chunk(
    dv: np.ndarray, do: np.ndarray, di: np.ndarray,
    gv: np.ndarray, go: np.ndarray, gi: np.ndarray,
    crowd: np.ndarray, g_first: np.ndarray, g_fg_end: np.ndarray, span: int,
) -> np.ndarray:
    """Vectorized IoU of one chunk of pairs whose RLEs have no interior zero runs.

    gt lists become one sorted key array ``list * span + run_end`` (with a
    virtual end at 0 per list), so the gt foreground measure below any point x
    is ``D[k] + fgnext[k] * x`` with k = last gt end <= x (one searchsorted).
    For each pair only dt runs inside the gt foreground range are visited, as
    (start, end) pairs of its fg runs: intersection = sum F(end) - F(start).
    """
    ainv, alen, astart, aend, afg, _ = _compact(dv, do, di)
    binv, blen, bstart, bend, bfg, blocal = _compact(gv, go, gi)
    aarea = afg[astart + alen - 1]
    barea = bfg[bstart + blen - 1]

    # gt side with one virtual leading end (position 0, next run = run 0 = bg)
    nb = blen.size
    fgnext = (blocal & 1) == 0  # run after end j is fg iff j is even
    pos = np.arange(bend.size) + np.repeat(np.arange(1, nb + 1), blen)
    bkey = np.repeat(np.arange(nb, dtype=np.int64) * span, blen + 1)
    bkey[pos] += bend
    dcoef = np.zeros(bkey.size, dtype=np.int64)  # D = fg area so far - fgnext * end
    dcoef[pos] = bfg - np.where(fgnext, bend, 0)
    fcoef = np.zeros(bkey.size, dtype=np.int64)
    fcoef[pos] = fgnext

    # dt runs [begin, hi] overlapping the gt fg range, begin even, even count
    akey = np.repeat(np.arange(alen.size, dtype=np.int64) * span, alen) + aend
    abase = ainv * span
    a0 = astart[ainv]
    lo = np.searchsorted(akey, abase + g_first, side="right") - a0
    hi = np.searchsorted(akey, abase + g_fg_end, side="left") - a0
    begin = lo - (lo & 1)
    hi = hi - 1 + (hi & 1)
    nel = np.maximum(hi - begin + 1, 0)
    cnel = np.cumsum(nel)
    idx = np.repeat(a0 + begin - (cnel - nel), nel) + np.arange(int(cnel[-1]), dtype=np.int64)
    x = aend[idx]
    kdt = np.uint32 if nb * span <= 0xFFFFFFFF else np.int64  # narrow keys: ~2x faster search
    query = np.repeat((binv * span).astype(kdt), nel)
    query += x.astype(kdt)
    k = np.searchsorted(bkey.astype(kdt), query, side="right") - 1
    meas = dcoef[k] + fcoef[k] * x  # gt fg pixels in [0, x)
    seg = np.concatenate(([0], np.cumsum(meas[1::2] - meas[0::2])))
    inter = (seg[cnel // 2] - seg[(cnel - nel) // 2]).astype(np.float64)
    area_a = aarea[ainv].astype(np.float64)
    union = np.where(crowd, area_a, area_a + barea[binv] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def iou_pairs(
    dt_counts: Sequence[Sequence[int] | np.ndarray],
    gt_counts: Sequence[Sequence[int] | np.ndarray],
    iscrowd: Sequence[bool] | np.ndarray | bool,
) -> np.ndarray:
    """IoU of aligned pairs (i-th dt vs i-th gt) of count lists, float64[P]."""
    if len(dt_counts) != len(gt_counts):
        raise ValueError("dt_counts and gt_counts must have the same length")
    dv, do = to_flat(dt_counts)
    gv, go = to_flat(gt_counts)
    idx = np.arange(len(dt_counts), dtype=np.int64)
    return iou_pairs_flat(dv, do, idx, gv, go, idx, iscrowd)


def iou(
    dt_counts: Sequence[Sequence[int] | np.ndarray],
    gt_counts: Sequence[Sequence[int] | np.ndarray],
    iscrowd: Sequence[bool] | np.ndarray,
) -> np.ndarray:
    """``[D, G]`` IoU matrix exactly as pycocotools ``mask.iou`` (iscrowd is per gt)."""
    crowd = np.asarray(iscrowd, dtype=bool).reshape(-1)
    if crowd.size != len(gt_counts):
        raise ValueError(f"iscrowd has {crowd.size} entries but there are {len(gt_counts)} gt")
    nd, ng = len(dt_counts), len(gt_counts)
    if nd == 0 or ng == 0:
        return np.zeros((nd, ng), dtype=np.float64)
    dv, do = to_flat(dt_counts)
    gv, go = to_flat(gt_counts)
    di = np.repeat(np.arange(nd, dtype=np.int64), ng)
    gi = np.tile(np.arange(ng, dtype=np.int64), nd)
    return iou_pairs_flat(dv, do, di, gv, go, gi, crowd[gi]).reshape(nd, ng)


# --------------------------------------------------------------------------
# fast union / intersection for canonical RLEs (used for polygon parts)
# --------------------------------------------------------------------------


def merge_groups_flat(
    values: np.ndarray,
    offsets: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    total: np.ndarray | int,
    intersect: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Union/intersection of the lists of each group with one sweep over all groups.

    Only valid for canonical RLEs (no zero-length runs except the first), such as
    the output of encode or polygon rasterization: their rleMerge result is the
    canonical RLE of the combined pixel set, which is what this computes.
    ``group[i]`` is the (non-decreasing) group of list i; every group is non-empty.
    """
    values, offsets = _norm(values, offsets)
    group = np.asarray(group, dtype=np.int64)
    lengths = np.diff(offsets)
    totals = np.broadcast_to(np.asarray(total, dtype=np.int64), (n_groups,))
    nper = np.bincount(group, minlength=n_groups)
    if np.any(nper == 0):
        raise ValueError("every group needs at least one RLE")
    li = _local_index(lengths, offsets[:-1])
    end = _seg_cumsum(values.astype(np.int64), lengths, offsets[:-1])
    fg = ((li & 1) == 1) & (values > 0)
    g = np.repeat(group, lengths)[fg]
    span = int(totals.max()) + 1
    e = end[fg]
    s = e - values[fg].astype(np.int64)
    keys = np.concatenate((g * span + s, g * span + e))
    delta = np.concatenate((np.ones(s.size, np.int64), -np.ones(e.size, np.int64)))
    order = np.argsort(keys, kind="stable")
    keys, delta = keys[order], delta[order]
    first = np.concatenate(([0], np.nonzero(np.diff(keys))[0] + 1)) if keys.size else keys
    uk = keys[first]
    cover = np.cumsum(np.add.reduceat(delta, first)) if uk.size else np.zeros(0, np.int64)
    ug = uk // span
    state = (cover == nper[ug]) if intersect else (cover > 0)
    prev = np.concatenate(([False], state[:-1]))
    flip = state != prev
    bpos, bgrp = uk[flip] - ug[flip] * span, ug[flip]
    nb = np.bincount(bgrp, minlength=n_groups).astype(np.int64)
    ends_at = np.cumsum(nb)
    pts = np.insert(bpos, ends_at, totals)  # boundaries + canvas end, per group
    plen = nb + 1
    pstart = np.zeros(n_groups, np.int64)
    np.cumsum(plen[:-1], out=pstart[1:])
    counts = np.diff(pts, prepend=0)
    counts[pstart] = pts[pstart]
    lastidx = pstart + plen - 1
    drop = (counts[lastidx] == 0) & (plen > 1)  # no trailing empty background run
    keep = np.ones(counts.size, bool)
    keep[lastidx[drop]] = False
    out_off = np.zeros(n_groups + 1, np.int64)
    np.cumsum(plen - drop, out=out_off[1:])
    return counts[keep].astype(np.uint32), out_off
