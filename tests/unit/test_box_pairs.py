"""Candidate box pairs (engine/runs/inputs.py): the packed-key sort and the join's same-category flag.

``box_pairs`` sorts (dt, gt) ids packed into one int64 and carries the join's ``d.cat = g.cat`` flag in the
key's lowest bit; the pairs must be every overlapping pair, in (dt, gt) order, with pycocotools' IoU.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.runs.evaluate import same_label
from engine.runs.inputs import _sorted_ids, box_pairs, gather
from tests.oracle.coco_random import import_pair, random_pair
from udfs.iou import box_iou_matrix


@pytest.fixture(scope="module")
def ws_inp(tmp_path_factory):
    gt, dets = random_pair(3, n_images=40)
    ws, run = import_pair(tmp_path_factory.mktemp("pairs"), gt, dets)
    yield ws, gather(ws.store, run.dataset_id, run.id)
    ws.close()


def _brute(inp, same_category):
    """Every (dt, gt) pair of one image (and category) with IoU > 0, in (dt, gt) order."""
    d, g = inp.dt, inp.gt
    iou = box_iou_matrix(np.c_[d.x, d.y, d.w, d.h], np.c_[g.x, g.y, g.w, g.h], g.crowd)
    ok = (d.img[:, None] == g.img[None, :]) & (iou > 0)
    if same_category:
        ok &= d.cat[:, None] == g.cat[None, :]
    di, gi = np.nonzero(ok)
    return di, gi, iou[di, gi]


@pytest.mark.parametrize("same_category", [True, False])
def test_pairs_are_every_overlap_in_order(ws_inp, same_category):
    ws, inp = ws_inp
    p = box_pairs(ws.store, inp, same_category=same_category)
    di, gi, iou = _brute(inp, same_category)
    assert len(di) > 5
    np.testing.assert_array_equal(p.dt, di)
    np.testing.assert_array_equal(p.gt, gi)
    np.testing.assert_array_equal(p.iou, iou)
    if same_category:
        assert p.same is None
    else:  # the join's flag is the category test, and gives the same-label join's pairs
        np.testing.assert_array_equal(p.same, inp.dt.cat[di] == inp.gt.cat[gi])
        assert p.same.any() and not p.same.all()
        sp, ref = same_label(inp, p), box_pairs(ws.store, inp, same_category=True)
        for f in ("dt", "gt", "iou"):
            np.testing.assert_array_equal(getattr(sp, f), getattr(ref, f))


def test_sorted_ids_keep_each_flag_with_its_pair():
    rng = np.random.default_rng(0)
    key = rng.choice(5000 * 3000, 4000, replace=False)
    di, gi = key // 3000, key % 3000
    flag = rng.random(4000) < 0.5
    order = np.lexsort((gi, di))
    d2, g2, f2 = _sorted_ids(di, gi, flag)
    np.testing.assert_array_equal(d2, di[order])
    np.testing.assert_array_equal(g2, gi[order])
    np.testing.assert_array_equal(f2, flag[order])
    d3, g3, f3 = _sorted_ids(di, gi)
    assert f3 is None and np.array_equal(d3, d2) and np.array_equal(g3, g2)
