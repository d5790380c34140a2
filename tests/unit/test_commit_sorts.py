"""Session 9's faster equivalents of plain numpy steps (engine/metrics/cocoeval.py, udfs/matching.py,
engine/runs/inputs.py): each must give exactly what the step it replaces gives, ties included."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.metrics.cocoeval import _score_desc_order
from engine.runs.inputs import _ascending, _image_index
from udfs.matching import _gt_star_winners


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_desc_order_is_the_stable_argsort(seed):
    rng = np.random.default_rng(seed)
    n = 20_000
    cases = [rng.random(n), np.round(rng.random(n), 2), np.round(rng.normal(size=n) * 10, 1),
             rng.choice([0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 5e-324], n)]
    for s in cases:
        assert np.array_equal(_score_desc_order(s), np.argsort(-s, kind="stable"))
    s = rng.random(n)
    s[5] = np.nan  # non-finite: the plain argsort
    assert np.array_equal(_score_desc_order(s), np.argsort(-s, kind="stable"))


def _reference(g, iou, thr, crowd):
    """The (T, rows) computation _gt_star_winners replaced."""
    n = len(g)
    elig = iou[None, :] >= thr[:, None]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    key = np.where(elig, n - np.arange(n), 0)
    best = np.maximum.reduceat(key, starts, axis=1)
    t_i, s_i = np.nonzero(best > 0)
    hit = elig & crowd[None, :]
    hit[t_i, n - best[t_i, s_i]] = True
    return np.nonzero(hit)


@pytest.mark.parametrize("thr", [np.linspace(0.5, 0.95, 10), np.array([0.5, 0.5, 0.75]), np.array([0.1]),
                                 np.array([0.75, 0.5, 0.6])])  # the last unsorted: the fallback
def test_gt_star_winners_match_the_dense_computation(thr):
    rng = np.random.default_rng(7)
    n = 5_000
    g = np.sort(rng.integers(0, 800, n))
    iou = np.round(rng.random(n), 2)  # ties with the thresholds
    crowd = (g % 13 == 0)
    t_i, r_i = _gt_star_winners(g, iou, thr, crowd)
    t_ref, r_ref = _reference(g, iou, thr, crowd)
    assert np.array_equal(t_i, t_ref) and np.array_equal(r_i, r_ref)


def test_image_index_and_ascending():
    images = np.arange(10, 20)
    item = np.array([10, 19, 15, 15])
    assert np.array_equal(_image_index(images, item), np.searchsorted(images, item))
    gaps = np.array([1, 4, 9])
    assert np.array_equal(_image_index(gaps, np.array([4, 9, 1])), [1, 2, 0])
    outside = np.array([25, 10])
    assert np.array_equal(_image_index(images, outside), np.searchsorted(images, outside))
    assert _ascending(pa.chunked_array([[1, 2], [], [3, 7]]))
    assert not _ascending(pa.chunked_array([[1, 5], [5, 7]]))
    assert not _ascending(pa.chunked_array([[1, 3, 2]]))
