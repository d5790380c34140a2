"""Matching kernels vs a plain per-group transcription of the COCO greedy rules."""
from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from udfs.matching import (
    coco_greedy_match,
    greedy_match,
    hungarian_match,
    rank_within_groups,
    stable_order,
)


def reference_greedy(dt_group, dt_score, gt_group, gt_crowd, gt_ignore, iou, thr, max_dets=100):
    """Per-group loop with pycocotools' rules (dense IoU matrix ``iou[d, g]``)."""
    n_dt, n_gt = iou.shape
    dt_match = np.full(n_dt, -1)
    gt_match = np.full(n_gt, -1)
    for grp in np.unique(np.r_[dt_group, gt_group]):
        ds = np.flatnonzero(dt_group == grp)
        ds = ds[np.argsort(-dt_score[ds], kind="mergesort")][:max_dets]
        gs = np.flatnonzero(gt_group == grp)
        gs = gs[np.argsort(gt_ignore[gs], kind="mergesort")]
        for d in ds:
            best, m = min(thr, 1 - 1e-10), -1
            for g in gs:
                if gt_match[g] >= 0 and not gt_crowd[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if iou[d, g] < best:
                    continue
                best, m = iou[d, g], g
            if m > -1:
                dt_match[d] = m
                gt_match[m] = d
    return dt_match, gt_match


def random_problem(seed: int, n_groups: int = 6):
    rng = np.random.default_rng(seed)
    n_dt, n_gt = rng.integers(0, 40), rng.integers(0, 25)
    dt_group = rng.integers(0, n_groups, n_dt)
    gt_group = rng.integers(0, n_groups, n_gt)
    dt_score = rng.integers(0, 4, n_dt) / 4  # many ties
    gt_crowd = rng.random(n_gt) < 0.2
    gt_ignore = gt_crowd | (rng.random(n_gt) < 0.2)
    levels = np.array([0.0, 0.0, 0.3, 0.5, 0.55, 0.7, 0.7, 0.9, 1.0])  # repeated values -> IoU ties
    iou = levels[rng.integers(0, len(levels), (n_dt, n_gt))]
    iou *= rng.random((n_dt, n_gt)) < [0.1, 0.3, 1.0][seed % 3]  # sparse -> star components, dense -> general
    iou[dt_group[:, None] != gt_group[None, :]] = 0.0
    return dt_group, dt_score, gt_group, gt_crowd, gt_ignore, iou


def sparse(iou):
    d, g = np.nonzero(iou > 0)
    return d, g, iou[d, g]


@pytest.mark.parametrize("seed", range(150))
def test_greedy_match_equals_reference(seed):
    dt_group, dt_score, gt_group, gt_crowd, gt_ignore, iou = random_problem(seed)
    thr = [0.5, 0.55, 0.7, 0.95][seed % 4]
    max_dets = [100, 3][seed % 2]
    ref_dt, ref_gt = reference_greedy(dt_group, dt_score, gt_group, gt_crowd, gt_ignore, iou, thr, max_dets)
    res = greedy_match(dt_group, dt_score, gt_crowd, *sparse(iou), thr, gt_ignore=gt_ignore, max_dets=max_dets)
    np.testing.assert_array_equal(res.dt_match, ref_dt)
    np.testing.assert_array_equal(res.gt_match, ref_gt)
    np.testing.assert_array_equal(res.dt_ignored, np.append(gt_ignore, False)[ref_dt])  # -1 -> False


@pytest.mark.parametrize("seed", range(40))
def test_batched_thresholds_and_ignore_sets_equal_single_runs(seed):
    dt_group, dt_score, gt_group, gt_crowd, _, iou = random_problem(seed + 1000, n_groups=3)
    rng = np.random.default_rng(seed)
    ignore_sets = gt_crowd[None, :] | (rng.random((3, len(gt_crowd))) < 0.3)
    thrs = np.array([0.5, 0.6, 0.7, 0.9])
    rank = rank_within_groups(dt_group, dt_score)
    m = coco_greedy_match(rank, gt_crowd, ignore_sets, *sparse(iou), thrs)
    for t, thr in enumerate(thrs):
        for a in range(3):
            ref_dt, _ = reference_greedy(dt_group, dt_score, gt_group, gt_crowd, ignore_sets[a], iou, thr)
            sel = (m.thr == t) & (m.area == a)
            got = np.full(len(dt_group), -1)
            got[m.dt[sel]] = m.gt[sel]
            np.testing.assert_array_equal(got, ref_dt)


def test_crowd_absorbs_many_and_keeps_last_match():
    # One crowd GT (0) and one regular GT (1) in one image; three detections.
    iou = np.array([[0.0, 0.8], [0.6, 0.7], [0.9, 0.0]])
    res = greedy_match([0, 0, 0], [0.9, 0.8, 0.7], [True, False], *sparse(iou), 0.5)
    np.testing.assert_array_equal(res.dt_match, [1, 0, 0])  # dt1 prefers crowd once GT 1 is taken
    np.testing.assert_array_equal(res.dt_ignored, [False, True, True])
    np.testing.assert_array_equal(res.gt_match, [2, 0])  # crowd stores the last detection


def test_iou_tie_goes_to_the_later_gt_and_regular_beats_ignored():
    iou = np.array([[0.6, 0.6, 0.9]])  # GT 2 ignored: regular GTs win even with lower IoU
    res = greedy_match([0], [1.0], [False, False, False], *sparse(iou), 0.5, gt_ignore=[False, False, True])
    assert res.dt_match[0] == 1
    res = greedy_match([0], [1.0], [False, False, False], *sparse(iou), 0.7, gt_ignore=[False, False, True])
    assert res.dt_match[0] == 2 and res.dt_ignored[0]


def test_score_ties_keep_input_order_and_iou_equal_to_threshold_matches():
    iou = np.array([[0.5], [0.5]])
    res = greedy_match([0, 0], [0.3, 0.3], [False], *sparse(iou), 0.5)
    np.testing.assert_array_equal(res.dt_match, [0, -1])


def test_thresholds_must_be_positive():
    with pytest.raises(ValueError):
        coco_greedy_match([0], [False], [[False]], [0], [0], [0.5], [0.0, 0.5])


def test_rank_within_groups_and_stable_order():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 5, 500)
    s = rng.integers(0, 3, 500).astype(float)
    rank = rank_within_groups(g, s)
    for grp in range(5):
        idx = np.flatnonzero(g == grp)
        np.testing.assert_array_equal(rank[idx[np.argsort(-s[idx], kind="mergesort")]], np.arange(len(idx)))
    a = rng.integers(0, 70000, 3000)
    b = rng.integers(0, 7, 3000)
    np.testing.assert_array_equal(stable_order((a, 70000), (b, 7)), np.lexsort((a, b)))


def brute_force_best_total(iou: np.ndarray, thr: float) -> float:
    """Best total IoU over all one-to-one assignments (pairs below thr count 0)."""
    n = max(iou.shape)
    w = np.zeros((n, n))
    w[: iou.shape[0], : iou.shape[1]] = np.where(iou >= thr, iou, 0.0)
    return max(sum(w[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("seed", range(30))
def test_hungarian_is_optimal(seed):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(seed)
    n_dt, n_gt = rng.integers(1, 6), rng.integers(1, 6)
    iou = np.round(rng.random((n_dt, n_gt)), 1) * (rng.random((n_dt, n_gt)) < 0.7)
    res = hungarian_match(*sparse(iou), n_dt, n_gt, 0.5)
    d = np.flatnonzero(res.dt_match >= 0)
    assert np.all(iou[d, res.dt_match[d]] >= 0.5)
    np.testing.assert_array_equal(res.gt_match[res.dt_match[d]], d)
    assert len(np.unique(res.dt_match[d])) == len(d)
    assert np.isclose(iou[d, res.dt_match[d]].sum(), brute_force_best_total(iou, 0.5))


def test_hungarian_beats_greedy_where_greedy_is_suboptimal():
    pytest.importorskip("scipy")
    # Greedy gives dt0 -> gt0 (0.9) and leaves dt1 unmatched; optimal is 0.8 + 0.8.
    iou = np.array([[0.9, 0.8], [0.8, 0.0]])
    res = hungarian_match(*sparse(iou), 2, 2, 0.5)
    np.testing.assert_array_equal(res.dt_match, [1, 0])
    greedy = greedy_match([0, 0], [0.9, 0.8], [False, False], *sparse(iou), 0.5)
    np.testing.assert_array_equal(greedy.dt_match, [0, -1])


def test_hungarian_without_scipy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    iou = np.array([[0.9, 0.8], [0.8, 0.0]])
    with pytest.raises(ImportError, match=r"pip install loupe\[hungarian\]"):
        hungarian_match(*sparse(iou), 2, 2, 0.5)
    # A problem without competition needs no solver at all.
    res = hungarian_match(*sparse(np.array([[0.9, 0.0], [0.0, 0.7]])), 2, 2, 0.5)
    np.testing.assert_array_equal(res.dt_match, [0, 1])
