"""Oracle on real data: COCO val2014 100-image subset + the cocoapi fake bbox results.

Checked against (1) the published pycocotools stats recorded in SOURCE.txt and
(2) pycocotools run live: stats, precision/recall arrays, per-class AP and
per-detection TP/FP.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.metrics.coco_arrays import arrays_from_coco
from engine.metrics.cocoeval import evaluate, summary_lines
from pycoco_oracle import assert_matches_agree, assert_same_eval, run_pycocotools

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "coco_subset" / "instances_val2014_100"
STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


@pytest.fixture(scope="module")
def coco100():
    if not (DATA / "instances_val2014_100.json").exists():
        pytest.skip(f"real dataset not available: {DATA.resolve()} (needs ../shared/datasets)")
    gt = json.loads((DATA / "instances_val2014_100.json").read_text())
    results = json.loads((DATA / "instances_val2014_fakebbox100_results.json").read_text())
    ga, da, pairs = arrays_from_coco(gt, results)
    return gt, results, ga, da, pairs, evaluate(ga, da, pairs)


def published_bbox_stats() -> np.ndarray:
    """The 12 bbox numbers listed in SOURCE.txt (external figures, not ours)."""
    text = (DATA / "SOURCE.txt").read_text()
    start = text.index("  bbox  (")
    section = text[start:text.index("  segm  (", start)]
    found = dict(re.findall(r"^\s+(AP\w*|AR\w*)\s+([0-9.]+)\s*$", section, flags=re.M))
    return np.array([float(found[n]) for n in STAT_NAMES])


def test_stats_equal_published_numbers(coco100):
    *_, res = coco100
    expected = published_bbox_stats()
    assert len(expected) == 12
    np.testing.assert_allclose(res.stats, expected, rtol=0, atol=1e-12)


def test_equals_live_pycocotools(coco100):
    gt, results, ga, _, _, res = coco100
    ev = run_pycocotools(gt, results)
    assert_same_eval(res, ev)
    assert_matches_agree(res, ev, ga.ann_id, len(results))


def test_per_class_ap_equals_pycocotools(coco100):
    gt, results, *_, res = coco100
    prec = run_pycocotools(gt, results).eval["precision"][:, :, :, 0, -1]
    assert res.ap_per_class.shape == (80,)
    for k in range(80):
        v = prec[:, :, k][prec[:, :, k] > -1]
        assert res.ap_per_class[k] == (np.mean(v) if v.size else -1.0)
    assert (res.ap_per_class == -1).sum() == (prec[0, 0] == -1).sum() > 0  # categories absent from the subset


def test_tp_fp_at_iou50_equals_pycocotools(coco100):
    gt, results, ga, _, _, res = coco100
    ev = run_pycocotools(gt, results)
    tp = np.zeros(len(results), bool)
    fp = np.zeros(len(results), bool)
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(ev.params.areaRng[0]):
            continue
        d = np.asarray(e["dtIds"], dtype=np.int64) - 1
        tp[d] = (e["dtMatches"][0] > 0) & ~e["dtIgnore"][0]
        fp[d] = (e["dtMatches"][0] == 0) & ~e["dtIgnore"][0]
    ours_tp = (res.dt_match[0] >= 0) & ~res.dt_ignore[0]
    ours_fp = (res.dt_match[0] < 0) & ~res.dt_ignore[0] & ~res.dt_dropped
    np.testing.assert_array_equal(ours_tp, tp)
    np.testing.assert_array_equal(ours_fp, fp)
    assert tp.sum() > 100 and fp.sum() > 50


def test_summary_lines_match_pycocotools_print(coco100):
    import contextlib
    import io

    gt, results, *_, res = coco100
    ev = run_pycocotools(gt, results)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.summarize()
    assert summary_lines(res.stats) == buf.getvalue().splitlines()


def published_segm_stats() -> np.ndarray:
    text = (DATA / "SOURCE.txt").read_text()
    start = text.index("  segm  (")
    section = text[start:text.index("\n  torchmetrics", start)]
    found = dict(re.findall(r"^\s+(AP\w*|AR\w*)\s+([0-9.]+)\s*$", section, flags=re.M))
    return np.array([float(found[n]) for n in STAT_NAMES])


def test_segm_with_mask_iou_pairs_equals_published_and_live(coco100):
    """The evaluator is IoU-agnostic: fed pycocotools' mask IoUs it reproduces the segm run."""
    import contextlib
    import copy
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, _, ga, *_ = coco100
    results = json.loads((DATA / "instances_val2014_fakesegm100_results.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
    img_ids = sorted(coco_gt.getImgIds())
    cat_ids = sorted(coco_gt.getCatIds())
    gt_rle = [coco_gt.annToRLE(a) for a in gt["annotations"]]
    assert len(gt_rle) == len(ga.img)  # every GT kept, same order as the arrays
    dt_anns = [coco_dt.anns[i + 1] for i in range(len(results))]  # loadRes ids are position + 1
    d_img = np.searchsorted(img_ids, [a["image_id"] for a in dt_anns])
    d_cat = np.searchsorted(cat_ids, [a["category_id"] for a in dt_anns])
    pd, pg, pv = [], [], []
    for key in sorted(set(zip(d_img, d_cat))):
        ds = np.flatnonzero((d_img == key[0]) & (d_cat == key[1]))
        gs = np.flatnonzero((ga.img == key[0]) & (ga.cat == key[1]))
        if len(gs) == 0:
            continue
        iou = mask_utils.iou([dt_anns[i]["segmentation"] for i in ds], [gt_rle[j] for j in gs],
                             [int(ga.iscrowd[j]) for j in gs])
        di, gi = np.nonzero(iou > 0)
        pd.append(ds[di])
        pg.append(gs[gi])
        pv.append(iou[di, gi])
    from engine.metrics.cocoeval import DtArrays, PairArrays

    da = DtArrays(img=d_img, cat=d_cat, score=np.array([a["score"] for a in dt_anns]),
                  area=np.array([a["area"] for a in dt_anns], dtype=np.float64))
    res = evaluate(ga, da, PairArrays(np.concatenate(pd), np.concatenate(pg), np.concatenate(pv)))
    np.testing.assert_allclose(res.stats, published_segm_stats(), rtol=0, atol=1e-12)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert_same_eval(res, ev)
