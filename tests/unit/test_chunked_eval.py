"""Chunked evaluation and commit (a few images per chunk) equal the one-chunk result exactly.

The one-chunk path is the one the oracle tests compare with pycocotools; here every output of
a run split into many chunks must be identical: stats, per-class AP/AR, precision/recall/scores,
per-object matches and the whole ``matches`` table, for bbox and segm and every commit option.
"""
from __future__ import annotations


import numpy as np
import pytest

from engine.runs.chunks import Chunk, image_bounds, plan_chunks
from engine.runs.commit import commit_run
from engine.runs.evaluate import evaluate_run
from engine.runs.inputs import gather
from tests.oracle.coco_random import import_pair, random_pair


@pytest.fixture(scope="module", params=[3, 11])
def ws_run(request, tmp_path_factory):
    gt, dets = random_pair(request.param, n_images=24, first_ann_id=request.param % 2)
    ws, run = import_pair(tmp_path_factory.mktemp("chunks"), gt, dets)
    yield ws, run
    ws.close()


def test_plan_splits_whole_images_in_order(ws_run):
    ws, run = ws_run
    inp = gather(ws.store, run.dataset_id, run.id)
    assert plan_chunks(inp, len(inp.dt)) == [Chunk(None, None)]  # small inputs: one chunk, as before
    chunks = plan_chunks(inp, 5)
    assert len(chunks) > 3
    d = np.concatenate([c.dt for c in chunks])
    g = np.concatenate([c.gt for c in chunks])
    assert sorted(d.tolist()) == list(range(len(inp.dt))) and sorted(g.tolist()) == list(range(len(inp.gt)))
    spans = [(inp.dt.img[c.dt].min(initial=10**9), inp.dt.img[c.dt].max(initial=-1)) for c in chunks]
    for c in chunks:  # ascending indices; no image shared between chunks
        assert np.all(np.diff(c.dt) > 0) and np.all(np.diff(c.gt) > 0)
    imgs = [set(inp.dt.img[c.dt].tolist()) | set(inp.gt.img[c.gt].tolist()) for c in chunks]
    assert all(not (a & b) for i, a in enumerate(imgs) for b in imgs[i + 1:])
    assert all(hi < lo2 for (lo, hi), (lo2, hi2) in zip(spans, spans[1:]) if hi >= 0 and hi2 >= 0)


def test_image_bounds_cover_all_images():
    img = np.array([0, 0, 0, 1, 3, 3, 3, 3, 4])
    b = image_bounds(img, 6, 3)
    assert b[0] == 0 and b[-1] == 6 and np.all(np.diff(b) > 0)
    # a chunk holds at most max_dets - 1 detections more than its last image brings
    counts = np.bincount(img, minlength=6)
    per_chunk = [counts[a:c].sum() for a, c in zip(b[:-1], b[1:])]
    assert sum(per_chunk) == len(img) and all(n <= 3 + counts.max() - 1 for n in per_chunk)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_chunked_evaluation_is_identical(ws_run, iou_type, agnostic):
    ws, run = ws_run
    one = evaluate_run(ws.store, run.dataset_id, run.id, iou_type=iou_type, class_agnostic=agnostic).result
    for chunk in (1, 4, 17):
        many = evaluate_run(ws.store, run.dataset_id, run.id, iou_type=iou_type, class_agnostic=agnostic,
                            chunk_dets=chunk).result
        for f in ("precision", "recall", "scores", "stats", "ap_per_class", "ap50_per_class", "ar_per_class",
                  "dt_match", "dt_ignore", "gt_match", "gt_ignore", "dt_dropped", "dt_rank"):
            np.testing.assert_array_equal(getattr(many, f), getattr(one, f), err_msg=f"{f} chunk={chunk}")
    assert (one.dt_match >= 0).any()  # the data has matches to compare


def _matches(ws) -> list[tuple]:
    return ws.store.con.execute("SELECT * FROM matches ORDER BY source, pred_key, ann_key").fetchall()


def _evaluation(ws) -> tuple:
    return ws.store.con.execute("SELECT stats, per_class FROM evaluations").fetchone()


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("opts", [{}, {"iou_threshold": 0.3}, {"class_agnostic": True}, {"method": "hungarian"},
                                  {"allowed": True}])
def test_chunked_commit_writes_the_same_index(ws_run, iou_type, opts):
    ws, run = ws_run
    opts = dict(opts)
    if opts.pop("allowed", False):
        labels = sorted({r[0] for r in ws.store.con.execute("SELECT DISTINCT label FROM annotations").fetchall()})
        opts["allowed_label_matches"] = [(labels[0], labels[1]), (labels[1], labels[0])]
    if opts.get("method") == "hungarian":
        pytest.importorskip("scipy")
    kw = dict(iou_type=iou_type, **opts)
    one = commit_run(ws.store, run.id, run.dataset_id, **kw)
    want, want_eval = _matches(ws), _evaluation(ws)
    assert len(want) == one["predictions"] + one["ground_truth"] and one["tp"] > 0
    for chunk in (1, 3, 10):
        many = commit_run(ws.store, run.id, run.dataset_id, chunk_dets=chunk, **kw)
        assert many == one
        assert _matches(ws) == want, f"chunk={chunk}"
        assert _evaluation(ws) == want_eval
