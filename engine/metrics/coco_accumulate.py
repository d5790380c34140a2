"""pycocotools ``COCOeval.accumulate`` computed from sparse matches, bit for bit.

Only true positives matter for a precision/recall curve: recall grows only at
TPs, so ``searchsorted(rc, thr, 'left')`` lands on the n-th TP (n = smallest
with ``n / npig >= thr``, the same float test) or, for thr <= 0, on the first
detection; the precision envelope there is the max TP precision from that TP
on, since a false positive never raises precision. Each TP's precision is
``n / ((fp + n) + eps)`` from integer counts, the same float operations as
pycocotools. All curves (T x K x A x maxDets) are processed at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from udfs.matching import CocoMatches, stable_order

__all__ = ["accumulate_context", "accumulate_curves"]

_EPS = np.spacing(1)


def _first_recall_index(npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """(K, A, R) smallest n >= 1 with ``n / npig >= thr`` using pycocotools' float test.

    pycocotools samples ``searchsorted(tp / npig, thr, 'left')``; recall only
    grows at true positives, so the sample lands on the n-th TP (or on the
    first detection when thr <= 0, i.e. n = 1 for the envelope).
    """
    safe = np.maximum(npig, 1)[:, :, None].astype(np.int64)
    c = np.ceil(rec_thrs[None, None, :] * safe).astype(np.int64)
    for _ in range(2):  # ceil(thr * npig) is off by at most one ulp-driven step
        c = np.where((c >= 1) & ((c - 1) / safe >= rec_thrs), c - 1, c)
        c = np.where(c / safe < rec_thrs, c + 1, c)
    return np.maximum(c, 1)


def accumulate_context(
    L: np.ndarray, rank: np.ndarray, d_cat: np.ndarray, d_score: np.ndarray, d_area: np.ndarray,
    g_cat: np.ndarray, g_ig: np.ndarray, max_dets: list[int], area_rng: np.ndarray, K: int, T: int,
    n_matches: int = 0, prefix: bool = False,
) -> "_Ctx":
    """What :func:`accumulate_curves` needs besides the matches: the detections in accumulate order,
    area flags, GT counts, detections per category. Built before the pairs are matched, it can run
    beside them (engine.runs.evaluate); ``n_matches`` only picks the index width (0: decided later).

    ``prefix``: also the running counts of inside & evaluated detections per maxDet and area (int32 or
    int64, (M, A, N + 1)); the accumulate then reads them at its cut points instead of summing between
    them. 48 MB at 1M detections: for evaluations of one chunk.
    """
    A, M, N = len(area_rng), len(max_dets), len(L)
    i32 = np.int32 if max(N * A, n_matches, T * A * K * M) < 2 ** 30 else np.int64
    areaL = d_area[L][None, :]
    catL, rankL = d_cat[L].astype(i32), rank[L].astype(i32)
    ctx = _Ctx(A=A, K=K, N=N, i32=i32, max_dets=max_dets, catL=catL, rankL=rankL, scoreL=d_score[L],
               inside=~((areaL < area_rng[:, :1]) | (areaL > area_rng[:, 1:])))  # (A, N)
    del areaL
    ctx.npig = np.stack([np.bincount(g_cat[~g_ig[a]], minlength=K) for a in range(A)], axis=1)  # (K, A)
    ctx.Lpos = np.full(len(rank), -1, i32)
    ctx.Lpos[L] = np.arange(N, dtype=i32)
    # per maxDet: detections per category and each category's first detection score (recall threshold <= 0)
    ctx.nd, ctx.first_score = np.zeros((M, K), np.int64), np.zeros((M, K))
    if prefix:
        ctx.prefix = np.zeros((M, A, N + 1), i32)
    top = int(rankL.max(initial=-1))
    for mi, mdet in enumerate(max_dets):
        every = top < mdet  # the largest maxDet: L holds ranks below it only, no mask or gather needed
        in_m = None if every else rankL < mdet
        if prefix:
            np.cumsum(ctx.inside if every else ctx.inside & in_m[None, :], axis=1, dtype=i32,
                      out=ctx.prefix[mi, :, 1:])
        ctx.nd[mi] = np.bincount(catL if every else catL[in_m], minlength=K)
        pos_in = None if every else np.flatnonzero(in_m)
        n_in = N if every else len(pos_in)
        if n_in:
            f = np.minimum(np.searchsorted(catL if every else catL[pos_in], np.arange(K)), n_in - 1)
            f = f if every else pos_in[f]
            has = ctx.nd[mi] > 0
            ctx.first_score[mi, has] = ctx.scoreL[f[has]]
    return ctx


def accumulate_curves(
    L: np.ndarray, rank: np.ndarray, d_cat: np.ndarray, d_score: np.ndarray, d_area: np.ndarray,
    g_cat: np.ndarray, g_ig: np.ndarray, mt: CocoMatches, m_ig: np.ndarray, id0: np.ndarray,
    iou_thrs: np.ndarray, rec_thrs: np.ndarray, max_dets: list[int], area_rng: np.ndarray, K: int,
    ctx: "_Ctx | None" = None, split: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycocotools ``accumulate``: (precision (T,R,K,A,M), recall (T,K,A,M), scores (T,R,K,A,M)).

    Args:
        L: evaluated detection indices in accumulate order (category-major, then
            score desc, image, input order).
        rank: (D,) rank of each detection inside its image/category group.
        d_cat, d_score, d_area: per-detection category (0 if class-agnostic), score, area.
        g_cat: (G,) GT category (0 if class-agnostic); g_ig: (A, G) GT ignore flags.
        mt: sparse greedy matches; m_ig: ignore flag of each match's GT at its area;
        id0: match is to annotation id 0 (pycocotools then stores "unmatched").
        iou_thrs, rec_thrs, max_dets (sorted), area_rng: the parameters; K: categories.
        ctx: :func:`accumulate_context` of the same arguments, if already built (it is used up).
    """
    T, A, M = len(iou_thrs), len(area_rng), len(max_dets)
    N = len(L)
    if ctx is None or (ctx.i32 is np.int32 and len(mt.dt) >= 2 ** 30):
        ctx = accumulate_context(L, rank, d_cat, d_score, d_area, g_cat, g_ig, max_dets, area_rng, K, T, len(mt.dt))
    i32, npig, Lpos = ctx.i32, ctx.npig, ctx.Lpos
    ctx.Lpos = None

    # Matches that count as matched in accumulate (id-0 quirk: a match to a non-ignored GT
    # with annotation id 0 counts as unmatched); TP = matched to a non-ignored GT.
    keep = np.flatnonzero(~(id0 & ~m_ig))
    pos = Lpos[mt.dt[keep]]
    del Lpos
    thr = mt.thr[keep]
    area = mt.area[keep].astype(i32)
    tp = (~m_ig & ~id0)[keep]
    hit = np.zeros(N, bool)
    hit[pos] = True
    ctx.P = np.flatnonzero(hit).astype(i32)  # matched positions; cp: column of each match
    cp = (np.cumsum(hit, dtype=i32) - 1)[pos]
    ex = _before_counts(ctx, hit)
    nd, first_score = ctx.nd, ctx.first_score

    # One threshold at a time keeps memory bounded (its TP precisions are sampled before the next
    # threshold's are made: 20M detections hold ~4 GB of them over all thresholds); curves come out
    # in (m, a, k) order per threshold.
    # threshold-major order of the matches (timsort: the matching emits long runs of one threshold;
    # 1M matches: 4 ms, 16-bit radix passes 12 ms)
    by_t = np.argsort(thr, kind="stable")
    t_bounds = np.searchsorted(thr[by_t], np.arange(T + 1))
    R = len(rec_thrs)
    # (1, 1, A, K, R) first TP count reaching each recall threshold: the same for every threshold
    nr = np.ascontiguousarray(_first_recall_index(npig, rec_thrs).transpose(1, 0, 2))[None, None]
    precision, scores = np.empty((T, R, K, A, M)), np.empty((T, R, K, A, M))
    recall = np.empty((T, K, A, M))

    def curves(ts: range) -> None:  # reads ctx and the match arrays only: safe on two threads
        for t in ts:
            sub = by_t[t_bounds[t]:t_bounds[t + 1]]
            pr_parts: list = []
            sc_parts: list = []
            gid_parts: list = []
            _curves_at_threshold(ctx, t, area[sub], cp[sub], tp[sub], ex, pr_parts, sc_parts, gid_parts)
            gid = np.concatenate(gid_parts) - i32(t * M * A * K)
            p_t, r_t, s_t = _sample_curves(np.concatenate(pr_parts + [np.zeros(1)]),
                                           np.concatenate(sc_parts + [np.zeros(1)]), gid, npig, nd, first_score,
                                           rec_thrs, 1, M, A, K, nr)
            precision[t], recall[t], scores[t] = p_t[0], r_t[0], s_t[0]
            del pr_parts, sc_parts, gid_parts, gid, p_t, r_t, s_t

    if split and T > 1:  # every other threshold on a second thread (two thresholds' temporaries at once)
        with ThreadPoolExecutor(1, thread_name_prefix="loupe-accumulate") as pool:  # waits for it on error too
            odd = pool.submit(curves, range(1, T, 2))
            curves(range(0, T, 2))
            odd.result()
    else:
        curves(range(T))
    return precision, recall, scores


@dataclass
class _Ctx:
    """Per-call arrays in accumulate order (L) shared by the helpers."""

    A: int
    K: int
    N: int
    i32: type
    max_dets: list[int]
    catL: np.ndarray
    rankL: np.ndarray
    scoreL: np.ndarray
    inside: np.ndarray
    npig: np.ndarray | None = None
    Lpos: np.ndarray | None = None
    prefix: np.ndarray | None = None
    nd: np.ndarray | None = None
    first_score: np.ndarray | None = None
    P: np.ndarray | None = None
    cut_of_P: np.ndarray | None = None
    cut_of_cat: np.ndarray | None = None
    n_cuts: int = 1


def _before_counts(ctx: _Ctx, hit: np.ndarray) -> list[np.ndarray]:
    """Per maxDet: inside & evaluated detections before each cut point (flat (A, n_cuts)).

    Counting only needs prefix sums at matched positions and category starts: read at those cut
    points from the running counts when the context has them, else sum the (A, N) flags between the
    cut points and cumsum the sums.
    """
    N, K, A, i32 = ctx.N, ctx.K, ctx.A, ctx.i32
    cat_start = np.searchsorted(ctx.catL, np.arange(K)).astype(i32)  # L is category-major
    mark = hit.copy()
    mark[cat_start[cat_start < N]] = True
    if N:
        mark[0] = True
    cuts = np.flatnonzero(mark) if N else np.zeros(1, np.intp)
    cut_of = np.cumsum(mark, dtype=i32) - 1  # position -> its cut index (at cut positions)
    ctx.n_cuts = len(cuts)
    ctx.cut_of_P = cut_of[ctx.P]
    ctx.cut_of_cat = cut_of[np.minimum(cat_start, max(N - 1, 0))] if N else np.zeros(K, i32)
    if ctx.prefix is not None:  # running counts built beforehand: read them at the cuts
        return [ctx.prefix[mi][:, cuts].ravel() for mi in range(len(ctx.max_dets))]
    ex = []
    for mdet in ctx.max_dets:
        in_m = ctx.rankL < mdet
        x = (ctx.inside & in_m[None, :]).view(np.uint8)
        between = np.add.reduceat(x, cuts, axis=1, dtype=i32) if N else np.zeros((A, 1), i32)
        ex.append((np.cumsum(between, axis=1, dtype=i32) - between).ravel())
    return ex


def _curves_at_threshold(ctx: _Ctx, t: int, area: np.ndarray, cp: np.ndarray, tp: np.ndarray,
                         ex: list[np.ndarray], pr_parts: list, sc_parts: list, gid_parts: list) -> None:
    """TP precisions of every (maxDet, area, category) curve at threshold ``t``, in curve order."""
    A, K, N, i32 = ctx.A, ctx.K, ctx.N, ctx.i32
    nP = max(len(ctx.P), 1)
    # Entries ordered by (area, position) via a bitmap over matched positions (no sort).
    bm = np.zeros((A, len(ctx.P)), np.uint8)
    bm[area, cp] = 1 + tp
    flat = np.flatnonzero(bm)
    e_tp = bm.ravel()[flat] == 2
    e_a, e_col = np.divmod(flat.astype(i32), i32(nP))
    del bm, flat
    e_pos = ctx.P[e_col]
    e_cat = ctx.catL[e_pos]
    e_in = ctx.inside.ravel()[e_a * N + e_pos]
    e_rank = ctx.rankL[e_pos]
    e_seg = e_a * K + e_cat  # curve (a, k) inside one (t, maxDet)
    e_q = e_a * ctx.n_cuts + ctx.cut_of_P[e_col]  # flat (A, n_cuts) index of the position
    e_qs = e_a * ctx.n_cuts + ctx.cut_of_cat[e_cat]  # ... and of its category start
    n_e = len(e_seg)
    st = np.flatnonzero(np.r_[True, e_seg[1:] != e_seg[:-1]]) if n_e else np.zeros(0, np.intp)
    seg_len = np.diff(np.r_[st, n_e])
    M = len(ctx.max_dets)
    e_score = ctx.scoreL[e_pos]
    top = int(e_rank.max(initial=-1))
    for mi, mdet in enumerate(ctx.max_dets):
        if top < mdet:  # every entry counts (the largest maxDet: L holds ranks below it only)
            tp_m, in_mm = e_tp, e_in
        else:
            sel = e_rank < mdet
            tp_m = e_tp & sel
            in_mm = e_in & sel
        # Segmented counts: TPs up to here (inclusive), matched-inside before here.
        ctp = np.cumsum(tp_m, dtype=i32)
        cin = np.cumsum(in_mm, dtype=i32)
        base_tp = np.repeat(ctp[st] - tp_m[st], seg_len)
        base_in = np.repeat(cin[st] - in_mm[st], seg_len)
        w = np.flatnonzero(tp_m)
        n_tp = (ctp[w] - base_tp[w]).astype(np.float64)
        # FPs before = inside evaluated before (same category) - matched inside before.
        fp = (ex[mi][e_q[w]] - ex[mi][e_qs[w]] - (cin[w] - in_mm[w] - base_in[w])).astype(np.float64)
        pr_parts.append(n_tp / (fp + n_tp + _EPS))  # pycocotools: tp / (fp + tp + eps)
        sc_parts.append(e_score[w])
        gid_parts.append(e_seg[w] + i32((t * M + mi) * A * K))


def _sample_curves(pr: np.ndarray, sc: np.ndarray, gid: np.ndarray, npig: np.ndarray, nd: np.ndarray,
                   first_score: np.ndarray, rec_thrs: np.ndarray, T: int, M: int, A: int, K: int,
                   nr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolated precision / scores at the recall thresholds, and max recall.

    ``pr``/``sc`` hold each curve's TP precisions/scores (curve g = ((t*M+m)*A+a)*K+k,
    contiguous, in order; one trailing pad element). ``nr``: :func:`_first_recall_index` of ``npig``
    as (1, 1, A, K, R), if computed already.
    """
    R = len(rec_thrs)
    cnt = np.bincount(gid, minlength=T * M * A * K).reshape(T, M, A, K, 1)
    off = (np.cumsum(cnt) - cnt.ravel()).reshape(T, M, A, K, 1)
    if nr is None:
        nr = np.ascontiguousarray(_first_recall_index(npig, rec_thrs).transpose(1, 0, 2))[None, None]  # (1,1,A,K,R)
    # Suffix max of TP precisions from the n_r-th TP: max over [b_r, b_{r+1}) then reverse cummax.
    idx = np.empty((T, M, A, K, R + 1), np.intp)
    np.minimum(nr - 1, cnt, out=idx[..., :R])
    idx[..., :R] += off
    idx[..., R:] = off + cnt
    seg_max = np.maximum.reduceat(pr, idx.ravel()).reshape(T, M, A, K, R + 1)[..., :R]
    seg_max[idx[..., 1:] <= idx[..., :R]] = 0.0  # empty interval
    q = np.maximum.accumulate(seg_max[..., ::-1], axis=-1)[..., ::-1]
    ss = sc[idx[..., :R]]
    low = rec_thrs <= 0  # sample at the first detection, whatever it is
    ss[..., low] = first_score[None, :, None, :, None]
    # Samples past the curve end raise IndexError in pycocotools: that one and all later stay 0.
    ok = np.where(low, nd[None, :, None, :, None] > 0, nr <= cnt)
    ok = np.logical_and.accumulate(ok, axis=-1)
    q[~ok] = 0.0
    ss[~ok] = 0.0

    # (T, M, A, K, R) -> (T, R, K, A, M); -1 where the category has no non-ignored GT.
    no_gt = (npig == 0)[None, None, :, :, None]  # (1, 1, K, A, 1)
    precision = np.empty((T, R, K, A, M))
    precision[...] = q.transpose(0, 4, 3, 2, 1)
    np.copyto(precision, -1.0, where=no_gt)
    scores = np.empty((T, R, K, A, M))
    scores[...] = ss.transpose(0, 4, 3, 2, 1)
    np.copyto(scores, -1.0, where=no_gt)
    rc = cnt[..., 0].transpose(0, 3, 2, 1) / np.maximum(npig, 1)[None, :, :, None]  # tp[-1] / npig
    recall = np.ascontiguousarray(np.where(no_gt[:, 0], -1.0, rc))
    return precision, recall, scores
