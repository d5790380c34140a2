"""COCO detection evaluation equal to pycocotools ``COCOeval`` (bbox/segm), vectorized.

``evaluate`` takes flat per-object arrays and a sparse list of candidate
detection/GT pairs with their IoU (IoU 0 when not listed) and returns the same
``precision``/``recall``/``scores`` arrays and 12 summary stats as
``COCOeval.evaluate(); accumulate(); summarize()``, bit-for-bit, plus the
per-object matches needed for a TP/FP/FN index. numpy only, no mutable state.

No per-image Python loops: matching runs for all (image, category) groups,
thresholds and area ranges at once (``udfs.matching.coco_greedy_match``) and
accumulation works on the true positives of all curves at once
(``engine.metrics.coco_accumulate``). See docs/matching.md for the semantics.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from engine.metrics.coco_accumulate import accumulate_context, accumulate_curves
from engine.metrics.params import validate_params
from udfs.matching import CocoMatches, coco_greedy_match, stable_order

__all__ = [
    "accumulate_inputs",
    "CocoObjects",
    "CocoParams",
    "CocoPlan",
    "CocoResult",
    "DtArrays",
    "GtArrays",
    "PairArrays",
    "concat_matches",
    "evaluate",
    "finish",
    "match",
    "new_objects",
    "prepare",
    "record",
    "keypoint_summary_lines",
    "summarize",
    "summarize_keypoints",
    "summary_lines",
]

# pycocotools Params.setDetParams, same expressions (np.arange would drift).
_IOU_THRS = tuple(float(v) for v in np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True))
_REC_THRS = tuple(float(v) for v in np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True))
_AREA_RNG = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))


@dataclass(frozen=True)
class CocoParams:
    """Evaluation parameters; defaults are pycocotools' bbox/segm defaults.

    Attributes:
        iou_thrs: IoU thresholds (all > 0).
        rec_thrs: recall thresholds for the interpolated precision.
        max_dets: max detections per image and category (sorted ascending on use).
        area_rng: (lo, hi) area ranges, inclusive on both ends.
        area_lbl: labels of the area ranges ('all', 'small', ...).
        use_cats: False = class-agnostic (pycocotools ``useCats=0``).
        iou_type: 'keypoints' makes the stats pycocotools' 10 keypoint stats (else the 12).
        kpt_oks_sigmas: keypoint sigmas for every category, or ((label, sigmas), ...) per
            category; None = COCO's 17 person sigmas.
    """

    iou_thrs: tuple[float, ...] = _IOU_THRS
    rec_thrs: tuple[float, ...] = _REC_THRS
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_rng: tuple[tuple[float, float], ...] = _AREA_RNG
    area_lbl: tuple[str, ...] = ("all", "small", "medium", "large")
    use_cats: bool = True
    iou_type: str = "bbox"
    kpt_oks_sigmas: tuple[float, ...] | tuple[tuple[str, tuple[float, ...]], ...] | None = None


@dataclass(frozen=True, eq=False)
class GtArrays:
    """Ground truth in original annotation order.

    Attributes:
        img: (G,) dense image index, in evaluation order (ascending COCO image id).
        cat: (G,) dense category index into the sorted category id list.
        area: (G,) the annotation's stored ``area`` field (what pycocotools uses).
        iscrowd: (G,) crowd flags.
        n_images: number of images evaluated.
        n_categories: number of categories (those without GT score -1).
        ann_id: optional annotation ids; only used to reproduce pycocotools
            treating a match to annotation id 0 as "unmatched".
        ignore: optional (G,) ignore flags besides crowds (pycocotools keypoints:
            ``num_keypoints == 0``); an ignored non-crowd GT is still matched at most once.
    """

    img: np.ndarray
    cat: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray
    n_images: int
    n_categories: int
    ann_id: np.ndarray | None = None
    ignore: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class DtArrays:
    """Detections in original results-file order.

    Attributes:
        img: (D,) dense image index (same indexing as GtArrays.img).
        cat: (D,) dense category index; negative = category unknown to the GT
            (pycocotools drops those).
        score: (D,) confidence.
        area: (D,) area (bbox results: w * h, as ``COCO.loadRes`` sets it).
    """

    img: np.ndarray
    cat: np.ndarray
    score: np.ndarray
    area: np.ndarray


@dataclass(frozen=True, eq=False)
class PairArrays:
    """Candidate detection/GT pairs with IoU > 0 (same image and category)."""

    dt: np.ndarray
    gt: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True, eq=False)
class CocoResult:
    """Everything ``COCOeval`` computes, plus per-object matches.

    Attributes:
        params: the parameters used.
        precision: (T, R, K, A, M) interpolated precision, -1 where no GT.
        recall: (T, K, A, M) max recall, -1 where no GT.
        scores: (T, R, K, A, M) score at each recall threshold, -1 where no GT.
        stats: (12,) summarize() values (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l).
        ap_per_class: (K,) AP@[.50:.95], area 'all', largest maxDet; -1 without GT.
        ap50_per_class: (K,) AP@.50, area 'all', largest maxDet; -1 without GT.
        ar_per_class: (K,) AR@[.50:.95], area 'all', largest maxDet; -1 without GT.
        dt_match: (T, D) matched GT index per threshold (area 'all'), or -1.
        dt_ignore: (T, D) pycocotools dtIgnore for area 'all'.
        gt_match: (T, G) matched detection index, or -1 (crowd: last match).
        gt_ignore: (G,) pycocotools gtIgnore for area 'all' (crowd or out of range).
        dt_dropped: (D,) detection not evaluated by pycocotools (beyond the
            largest maxDet in its image/category, or unknown category/image).
        dt_rank: (D,) rank in its image/category by score (-1 if invalid).
    """

    params: CocoParams
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    stats: np.ndarray
    ap_per_class: np.ndarray
    ap50_per_class: np.ndarray
    ar_per_class: np.ndarray
    dt_match: np.ndarray | None  # None: finish(per_object=False)
    dt_ignore: np.ndarray | None
    gt_match: np.ndarray | None
    gt_ignore: np.ndarray
    dt_dropped: np.ndarray
    dt_rank: np.ndarray = field(repr=False)


def _argsort_small(x: np.ndarray, upper: int) -> np.ndarray:
    """Stable argsort of non-negative ints below ``upper`` (radix passes of 16 bits)."""
    return stable_order((x, max(int(upper), 0)))


def _score_desc_order(score: np.ndarray) -> np.ndarray:
    """``np.argsort(-score, kind="stable")`` as an LSD radix sort: four stable argsorts of the scores'
    16-bit digits (numpy's stable argsort of 16-bit ints is a radix sort; of floats a merge sort). 500k
    scores: 12-18 ms instead of 40-60, and only the digit and order arrays are allocated. Non-finite
    scores, small arrays and big-endian machines take the plain argsort."""
    if len(score) < 4096 or sys.byteorder != "little" or not np.isfinite(score).all():
        return np.argsort(-score, kind="stable")
    key = np.add(score, 0.0).view(np.uint64)  # + 0.0: -0.0 ties with 0.0, as in the float comparison
    flip = key >> np.uint64(63)  # IEEE order as unsigned order: negatives flip every bit, others the sign
    np.negative(flip, out=flip)
    flip |= np.uint64(1 << 63)
    key ^= flip
    del flip
    np.invert(key, out=key)  # descending
    digits = key.view(np.uint16).reshape(-1, 4)  # column 0: the lowest 16 bits
    order = np.argsort(digits[:, 0], kind="stable")
    d = np.empty(len(score), np.uint16)
    for j in (1, 2, 3):
        np.take(digits[:, j], order, out=d)
        order = order[np.argsort(d, kind="stable")]
    return order


def _orders(img: np.ndarray, cat: np.ndarray, score: np.ndarray, n_img: int, n_cat: int,
            use_cats: bool) -> tuple[np.ndarray, np.ndarray]:
    """(accumulate order, rank) for valid detections (given as index arrays' values).

    Accumulate order (per category): score desc, then image, then input order
    (class-agnostic: then category, input order). Rank: position inside the
    (image[, category]) group by score desc, ties as pycocotools' mergesort.
    """
    if use_cats:
        o = _argsort_small(img, n_img)
        o = o[_score_desc_order(score[o])]
        o = o[_argsort_small(cat[o], n_cat)]
    else:
        o = _argsort_small(cat, n_cat)
        o = o[_argsort_small(img[o], n_img)]
        o = o[_score_desc_order(score[o])]
    acc = o
    g = acc[_argsort_small(img[acc], n_img)]  # group-major, rank order inside
    key = img[g] * n_cat + cat[g] if use_cats else img[g]
    n = len(g)
    start = np.r_[True, key[1:] != key[:-1]] if n else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    rank = np.empty(n, np.int64)
    rank[g] = np.arange(n) - first
    return acc, rank


@dataclass(frozen=True, eq=False)
class CocoPlan:
    """Per-object state of one evaluation, before any pair is seen (see :func:`prepare`)."""

    params: CocoParams
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray
    max_dets: list[int]
    area_rng: np.ndarray
    K: int
    a_all: int
    g_cat: np.ndarray  # category used for curves (0 when class-agnostic)
    g_crowd: np.ndarray
    g_ig: np.ndarray  # (A, G) GT ignore flags per area range
    gt_order: np.ndarray | None  # tie-break key (class-agnostic) or None = GT index
    ann_id: np.ndarray | None
    same_key: tuple[np.ndarray, ...]  # (dt img, gt img[, dt cat, gt cat]): a pair must agree on each
    d_cat: np.ndarray
    d_score: np.ndarray
    d_area: np.ndarray
    rank: np.ndarray  # (D,) rank in its group, -1 if invalid
    rank_eval: np.ndarray  # rank, -1 beyond maxDets
    evaluated: np.ndarray
    L: np.ndarray  # evaluated detections in accumulate order


@dataclass(frozen=True, eq=False)
class CocoObjects:
    """Per-object matches (area 'all'): ``dt_match``/``gt_match`` (T, D)/(T, G) partner or -1,
    ``dt_ignore`` (T, D); of all objects or of one chunk (see :func:`record`)."""

    dt_match: np.ndarray
    dt_ignore: np.ndarray
    gt_match: np.ndarray


def prepare(gt: GtArrays, dt: DtArrays, params: CocoParams | None = None) -> CocoPlan:
    """Ranks, accumulate order and GT ignore flags: everything that does not need pairs."""
    p = validate_params(params or CocoParams())
    iou_thrs = np.asarray(p.iou_thrs, dtype=np.float64)
    max_dets = sorted(int(m) for m in p.max_dets)
    area_rng = np.asarray(p.area_rng, dtype=np.float64).reshape(-1, 2)
    n_img = int(gt.n_images)
    n_cat_all = int(gt.n_categories)

    g_img = np.asarray(gt.img, dtype=np.int64)
    g_cat_raw = np.asarray(gt.cat, dtype=np.int64)
    g_area = np.asarray(gt.area, dtype=np.float64)
    g_crowd = np.asarray(gt.iscrowd).astype(bool)
    d_img = np.asarray(dt.img, dtype=np.int64)
    d_cat_raw = np.asarray(dt.cat, dtype=np.int64)
    d_score = np.asarray(dt.score, dtype=np.float64)
    n_gt, n_dt = len(g_img), len(d_img)

    # --- detection order and per-group rank (pycocotools sorts with mergesort) ---
    valid = (d_cat_raw >= 0) & (d_cat_raw < n_cat_all) & (d_img >= 0) & (d_img < n_img)
    vidx = np.flatnonzero(valid)
    acc_v, rank_v = _orders(d_img[vidx], d_cat_raw[vidx], d_score[vidx], n_img, n_cat_all, p.use_cats)
    rank = np.full(n_dt, -1, np.int64)
    rank[vidx] = rank_v
    max_det = max_dets[-1]
    evaluated = valid & (rank < max_det)
    L = vidx[acc_v]
    L = L[rank[L] < max_det]  # accumulate order of evaluated detections

    # --- GT ignore flags per area range, tie order ---
    g_ig = g_crowd[None, :] | (g_area[None, :] < area_rng[:, :1]) | (g_area[None, :] > area_rng[:, 1:])
    if gt.ignore is not None:
        g_ig |= np.asarray(gt.ignore, dtype=bool)[None, :]
    if p.use_cats:
        gt_order = None
        same_key = (d_img, g_img, d_cat_raw, g_cat_raw)
    else:  # pycocotools concatenates GTs category by category
        gt_order = np.empty(n_gt, np.int64)
        gt_order[_argsort_small(g_cat_raw, n_cat_all)] = np.arange(n_gt)
        same_key = (d_img, g_img)
    return CocoPlan(
        params=p, iou_thrs=iou_thrs, rec_thrs=np.asarray(p.rec_thrs, dtype=np.float64), max_dets=max_dets,
        area_rng=area_rng, K=n_cat_all if p.use_cats else 1,
        a_all=p.area_lbl.index("all") if "all" in p.area_lbl else 0,
        g_cat=g_cat_raw if p.use_cats else np.zeros(n_gt, np.int64), g_crowd=g_crowd, g_ig=g_ig,
        gt_order=gt_order, ann_id=None if gt.ann_id is None else np.asarray(gt.ann_id),
        same_key=same_key, d_cat=d_cat_raw if p.use_cats else np.zeros(n_dt, np.int64), d_score=d_score,
        d_area=np.asarray(dt.area, dtype=np.float64), rank=rank, rank_eval=np.where(evaluated, rank, -1),
        evaluated=evaluated, L=L,
    )


def match(plan: CocoPlan, pairs: PairArrays, dt_index: np.ndarray | None = None,
          gt_index: np.ndarray | None = None) -> CocoMatches:
    """Greedy matches (global indices) for a set of pairs covering whole (image, category) groups.

    With ``dt_index``/``gt_index`` (ascending global indices of a chunk's objects) the pairs use
    positions in them and the matching runs on the chunk's objects only.
    """
    pd = np.asarray(pairs.dt, dtype=np.int64)
    pg = np.asarray(pairs.gt, dtype=np.int64)
    piou = np.asarray(pairs.iou, dtype=np.float64)
    keys = plan.same_key
    rank, crowd, g_ig, order = plan.rank_eval, plan.g_crowd, plan.g_ig, plan.gt_order
    if dt_index is not None:
        keys = tuple(k[dt_index] if i % 2 == 0 else k[gt_index] for i, k in enumerate(keys))
        rank, crowd, g_ig = rank[dt_index], crowd[gt_index], g_ig[:, gt_index]
        order = None if order is None else order[gt_index]
    same = keys[0][pd] == keys[1][pg]
    if len(keys) == 4:
        same &= keys[2][pd] == keys[3][pg]
    if not same.all():
        pd, pg, piou = pd[same], pg[same], piou[same]
    mt = coco_greedy_match(rank, crowd, g_ig, pd, pg, piou, plan.iou_thrs, order)
    if dt_index is None:
        return mt
    idx_t = mt.dt.dtype
    return CocoMatches(mt.thr, mt.area, dt_index[mt.dt].astype(idx_t), gt_index[mt.gt].astype(idx_t))


def concat_matches(parts: list[CocoMatches]) -> CocoMatches:
    """One CocoMatches from per-chunk ones (row order does not matter downstream)."""
    if len(parts) == 1:
        return parts[0]
    return CocoMatches(*(np.concatenate([getattr(m, f) for m in parts]) for f in ("thr", "area", "dt", "gt")))


def new_objects(plan: CocoPlan, dt_index: np.ndarray | None = None,
                gt_index: np.ndarray | None = None, thrs: np.ndarray | None = None) -> CocoObjects:
    """Empty per-object outputs (all objects, or a chunk's): unmatched; dt_ignore = evaluated and
    out of area 'all'. One row per IoU threshold, or per threshold index in ``thrs``."""
    T = len(plan.iou_thrs) if thrs is None else len(thrs)
    d_area, evaluated = plan.d_area, plan.evaluated
    if dt_index is not None:
        d_area, evaluated = d_area[dt_index], evaluated[dt_index]
    n_gt = len(plan.g_crowd) if gt_index is None else len(gt_index)
    lo, hi = plan.area_rng[plan.a_all]
    out_all = (d_area < lo) | (d_area > hi)
    return CocoObjects(dt_match=np.full((T, len(d_area)), -1, np.int32),
                       dt_ignore=np.broadcast_to(out_all & evaluated, (T, len(d_area))).copy(),
                       gt_match=np.full((T, n_gt), -1, np.int32))


def _id0(plan: CocoPlan, mt: CocoMatches) -> np.ndarray:
    if plan.ann_id is not None:
        return plan.ann_id[mt.gt] == 0
    return np.zeros(len(mt.gt), bool)


def record(plan: CocoPlan, mt: CocoMatches, objs: CocoObjects, dt_index: np.ndarray | None = None,
           gt_index: np.ndarray | None = None, thrs: np.ndarray | None = None) -> None:
    """Write the per-object outputs (area 'all') of matches into ``objs``.

    ``mt`` (global indices) must hold every match of the groups it touches. With ``dt_index`` /
    ``gt_index`` (a chunk's ascending global indices) ``objs`` is the chunk's and is written in
    its local indices, partners included. With ``thrs`` (threshold indices, as given to
    :func:`new_objects`) only those thresholds are recorded, row ``i`` for ``thrs[i]``.
    """
    sel = mt.area == plan.a_all
    row_of = None
    if thrs is not None:  # a commit reads one threshold of ten: skip the others' matches
        row_of = np.full(len(plan.iou_thrs), -1, np.int64)
        row_of[np.asarray(thrs, np.int64)] = np.arange(len(thrs))
        sel &= row_of[mt.thr] >= 0
    t_s, d_s, g_s = mt.thr[sel], mt.dt[sel], mt.gt[sel]
    if row_of is not None:
        t_s = row_of[t_s]
    id0_s = _id0(plan, mt)[sel]
    lo, hi = plan.area_rng[plan.a_all]
    out_d = (plan.d_area[d_s] < lo) | (plan.d_area[d_s] > hi)
    ig = plan.g_ig[plan.a_all, g_s] | (id0_s & out_d)
    cr = plan.g_crowd[g_s]
    rank_s = plan.rank[d_s]
    if dt_index is not None:  # positions inside the chunk
        d_s, g_s = np.searchsorted(dt_index, d_s), np.searchsorted(gt_index, g_s)
    n_gt = objs.gt_match.shape[1]
    objs.dt_match[t_s[~id0_s], d_s[~id0_s]] = g_s[~id0_s]
    objs.dt_ignore[t_s, d_s] = ig
    objs.gt_match[t_s[~cr], g_s[~cr]] = d_s[~cr]  # a non-crowd GT is matched at most once
    if cr.any():  # a crowd keeps its last (lowest-ranked) match, as pycocotools overwrites
        tc, gc, dc, rc = t_s[cr], g_s[cr], d_s[cr], rank_s[cr]
        o = np.lexsort((rc, gc, tc))
        key = tc[o].astype(np.int64) * n_gt + gc[o]
        last = np.r_[key[1:] != key[:-1], True]
        objs.gt_match[tc[o][last], gc[o][last]] = dc[o][last]


def accumulate_inputs(plan: CocoPlan) -> object:
    """The part of :func:`finish`'s accumulate that needs no matches (detections in accumulate order,
    area flags, GT counts), to build beside the matching and pass to :func:`finish`. It holds a few
    arrays per detection until then: worth it for a small evaluation, not when memory is what counts."""
    return accumulate_context(plan.L, plan.rank, plan.d_cat, plan.d_score, plan.d_area, plan.g_cat, plan.g_ig,
                              plan.max_dets, plan.area_rng, plan.K, len(plan.iou_thrs), prefix=True)


def finish(plan: CocoPlan, mt: CocoMatches, per_object: bool = True, prepared: object = None) -> CocoResult:
    """Accumulate and summarize all matches into a CocoResult (with the per-object outputs unless
    ``per_object`` is False: then ``dt_match``/``dt_ignore``/``gt_match`` are None; a commit has
    already recorded them chunk by chunk, and at 20M detections they take ~1 GB). ``prepared``:
    :func:`accumulate_inputs` of the plan, if built already (it is used up)."""
    p, a_all = plan.params, plan.a_all
    m_ig = plan.g_ig[mt.area, mt.gt]
    precision, recall, scores = accumulate_curves(
        plan.L, plan.rank, plan.d_cat, plan.d_score, plan.d_area, plan.g_cat, plan.g_ig, mt, m_ig,
        _id0(plan, mt), plan.iou_thrs, plan.rec_thrs, plan.max_dets, plan.area_rng, plan.K, ctx=prepared,
        split=prepared is not None,
    )
    del m_ig
    stats = summarize_keypoints(precision, recall, p) if p.iou_type == "keypoints" else summarize(precision, recall, p)
    objs = None
    if per_object:
        objs = new_objects(plan)
        record(plan, mt, objs)
    m_last = len(plan.max_dets) - 1
    ap = _masked_mean(precision[:, :, :, a_all, m_last], k_axis=2)
    t50 = np.flatnonzero(plan.iou_thrs == .5)
    ap50 = _masked_mean(precision[t50][:, :, :, a_all, m_last], k_axis=2)
    ar = _masked_mean(recall[:, :, a_all, m_last], k_axis=1)
    return CocoResult(
        params=p, precision=precision, recall=recall, scores=scores, stats=stats,
        ap_per_class=ap, ap50_per_class=ap50, ar_per_class=ar,
        dt_match=None if objs is None else objs.dt_match, dt_ignore=None if objs is None else objs.dt_ignore,
        gt_match=None if objs is None else objs.gt_match,
        gt_ignore=plan.g_ig[a_all].copy(), dt_dropped=~plan.evaluated, dt_rank=plan.rank,
    )


def evaluate(gt: GtArrays, dt: DtArrays, pairs: PairArrays, params: CocoParams | None = None) -> CocoResult:
    """Run COCO evaluation (evaluate + accumulate + summarize) on flat arrays.

    Same as ``prepare``, ``match`` and ``finish`` on all pairs at once; callers that cannot hold
    all pairs run ``match`` per chunk of images and ``finish`` on the concatenated matches.

    Args:
        gt: ground truth arrays (defines the image and category universe).
        dt: detections.
        pairs: candidate pairs with IoU > 0; pairs whose detection and GT are
            not in the same image (and category, unless class-agnostic) are ignored.
        params: evaluation parameters, pycocotools defaults when None.
    """
    plan = prepare(gt, dt, params)
    return finish(plan, match(plan, pairs))


def _masked_mean(x: np.ndarray, k_axis: int) -> np.ndarray:
    """Per-class mean of the entries > -1 along all other axes, -1 when none (detectron2 style)."""
    xk = np.moveaxis(x, k_axis, -1)
    out = np.full(x.shape[k_axis], -1.0)
    for k in range(len(out)):  # K is small; np.mean keeps pycocotools' summation order
        v = xk[..., k][xk[..., k] > -1]
        if v.size:
            out[k] = np.mean(v)
    return out


def summarize(precision: np.ndarray, recall: np.ndarray, params: CocoParams | None = None) -> np.ndarray:
    """The 12 pycocotools summarize() stats (same indexing and masked means)."""
    p = validate_params(params or CocoParams())
    iou_thrs = np.asarray(p.iou_thrs, dtype=np.float64)
    max_dets = sorted(int(m) for m in p.max_dets)

    def one(ap: int, iou_thr: float | None = None, area: str = "all", mdet: int = 100) -> float:
        aind = [i for i, lbl in enumerate(p.area_lbl) if lbl == area]
        mind = [i for i, m in enumerate(max_dets) if m == mdet]
        if ap == 1:
            s = precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == iou_thrs)[0]]
            s = s[:, :, :, aind, mind]
        else:
            s = recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == iou_thrs)[0]]
            s = s[:, :, aind, mind]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    md = [max_dets[min(i, len(max_dets) - 1)] for i in range(3)]  # pycocotools needs 3; fewer: repeat the last
    return np.array([
        one(1), one(1, .5, mdet=md[2]), one(1, .75, mdet=md[2]),
        one(1, area="small", mdet=md[2]), one(1, area="medium", mdet=md[2]), one(1, area="large", mdet=md[2]),
        one(0, mdet=md[0]), one(0, mdet=md[1]), one(0, mdet=md[2]),
        one(0, area="small", mdet=md[2]), one(0, area="medium", mdet=md[2]), one(0, area="large", mdet=md[2]),
    ])


_KP_ROWS = ((1, None, "all"), (1, .5, "all"), (1, .75, "all"), (1, None, "medium"), (1, None, "large"),
            (0, None, "all"), (0, .5, "all"), (0, .75, "all"), (0, None, "medium"), (0, None, "large"))


def summarize_keypoints(precision: np.ndarray, recall: np.ndarray, params: CocoParams) -> np.ndarray:
    """The 10 pycocotools keypoint stats (``_summarizeKps``: maxDets 20, areas all / medium / large)."""
    iou_thrs = np.asarray(params.iou_thrs, dtype=np.float64)
    max_dets = sorted(int(m) for m in params.max_dets)
    out = []
    for ap, thr, area in _KP_ROWS:
        aind = [i for i, lbl in enumerate(params.area_lbl) if lbl == area]
        mind = [i for i, m in enumerate(max_dets) if m == 20]
        s = precision if ap == 1 else recall
        if thr is not None:
            s = s[np.where(thr == iou_thrs)[0]]
        s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
        out.append(-1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1])))
    return np.array(out)


def keypoint_summary_lines(stats: np.ndarray, params: CocoParams) -> list[str]:
    """The 10 lines pycocotools' summarize() prints for keypoints."""
    i_str = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    lines = []
    for (ap, thr, area), v in zip(_KP_ROWS, stats):
        title = "Average Precision" if ap == 1 else "Average Recall"
        typ = "(AP)" if ap == 1 else "(AR)"
        iou = "{:0.2f}:{:0.2f}".format(params.iou_thrs[0], params.iou_thrs[-1]) if thr is None else "{:0.2f}".format(thr)
        lines.append(i_str.format(title, typ, iou, area, 20, v))
    return lines


def summary_lines(stats: np.ndarray, params: CocoParams | None = None) -> list[str]:
    """The 12 lines pycocotools' summarize() prints, for the given stats."""
    p = params or CocoParams()
    md = sorted(int(m) for m in p.max_dets)
    md = [md[min(i, len(md) - 1)] for i in range(3)]
    i_str = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    rows = [
        (1, None, "all", 100), (1, .5, "all", md[2]), (1, .75, "all", md[2]),
        (1, None, "small", md[2]), (1, None, "medium", md[2]), (1, None, "large", md[2]),
        (0, None, "all", md[0]), (0, None, "all", md[1]), (0, None, "all", md[2]),
        (0, None, "small", md[2]), (0, None, "medium", md[2]), (0, None, "large", md[2]),
    ]
    lines = []
    for (ap, thr, area, mdet), v in zip(rows, stats):
        title = "Average Precision" if ap == 1 else "Average Recall"
        typ = "(AP)" if ap == 1 else "(AR)"
        iou = "{:0.2f}:{:0.2f}".format(p.iou_thrs[0], p.iou_thrs[-1]) if thr is None else "{:0.2f}".format(thr)
        lines.append(i_str.format(title, typ, iou, area, mdet, v))
    return lines
