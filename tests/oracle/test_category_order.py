"""Category order through the stored-run path, against live pycocotools (issue 13, C9 and C10).

pycocotools sorts categories by id: the means of summarize() add per-category values in that order,
and with ``useCats=0`` an image's detections (and GT) are gathered category by category before the
stable score sort, so tied scores across categories are ordered by category id. Loupe orders a COCO
dataset's labels by category id too, so the stats are bit-identical (``==``, not approx).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

import engine  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

RESULTS = {"bbox": "instances_val2014_fakebbox100_results.json", "segm": "instances_val2014_fakesegm100_results.json"}


@pytest.fixture(scope="module")
def subset():
    d = shared_path("coco_subset", "instances_val2014_100")
    gt = d / "instances_val2014_100.json"
    ws = engine.connect()
    ws.import_coco(gt, dataset="gt", results=d / RESULTS["bbox"], run="bbox", check_images=False, clip="keep")
    ws.import_coco(gt, dataset="gt", results=d / RESULTS["segm"], run="segm", check_images=False, clip="keep")
    yield ws, d, gt
    ws.close()


def _ref(gt, res, iou_type="bbox", use_cats=1, img_ids=None, iou_thrs=None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(str(gt))
        e = COCOeval(cg, cg.loadRes(str(res)), iou_type)
        e.params.useCats = use_cats
        if img_ids is not None:
            e.params.imgIds = img_ids
        if iou_thrs is not None:
            e.params.iouThrs = np.asarray(iou_thrs)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_stats_bit_identical(subset, iou_type):
    """C10: with categories in id order every stat is the same float (by name, 14 differed in the last digit)."""
    ws, d, gt = subset
    ours = np.asarray(list(ws.get_run(iou_type).metrics(iou_type=iou_type)["stats"].values()))
    ref = _ref(gt, d / RESULTS[iou_type], iou_type).stats
    assert ours.tolist() == ref.tolist()


def test_per_class_in_category_id_order(subset):
    ws, d, gt = subset
    per_class = ws.get_run("bbox").metrics()["per_class"]
    ref = _ref(gt, d / RESULTS["bbox"])
    names = {c["id"]: c["name"] for c in ref.cocoGt.dataset["categories"]}
    ours = [r["label"] for r in per_class]  # labels that occur (pycocotools lists every category)
    assert len(ours) > 50 and ours == [names[c] for c in ref.params.catIds if names[c] in set(ours)]


def test_class_agnostic_ties_by_category_id(subset):
    """C9: image 623 has tied scores across categories; pycocotools (useCats=0) takes them in category id order."""
    ws, d, gt = subset
    run = ws.get_run("bbox")
    ref_623 = _ref(gt, d / RESULTS["bbox"], use_cats=0, img_ids=[623]).stats
    got_623 = run.metrics(class_agnostic=True, slice=["COCO_val2014_000000000623"])["stats"]
    assert round(ref_623[0], 4) == 0.8010  # the case of the issue (file order gave 0.7881)
    assert list(got_623.values()) == ref_623.tolist()
    ref_all = _ref(gt, d / RESULTS["bbox"], use_cats=0).stats
    got_all = run.metrics(class_agnostic=True)["stats"]
    assert got_all["AR1"] == ref_all[6]  # 0.090482 (file order gave 0.090361)
    assert list(got_all.values()) == ref_all.tolist()


@pytest.mark.parametrize("thr", [0.5, 0.52])
def test_class_agnostic_commit_index(subset, thr):
    """The commit index, class-agnostic, at a threshold of the evaluation grid and off it (own greedy pass)."""
    ws, d, gt = subset
    ref = _ref(gt, d / RESULTS["bbox"], use_cats=0, iou_thrs=[thr])
    want: dict[int, str] = {}
    for e in ref.evalImgs:
        if e is None or e["aRng"] != ref.params.areaRng[0]:
            continue
        for j, did in enumerate(e["dtIds"]):
            want[did] = "ignored" if e["dtIgnore"][0, j] else ("tp" if e["dtMatches"][0, j] > 0 else "fp")
    run = ws.get_run("bbox")
    run.commit(iou_threshold=thr, class_agnostic=True)
    rows = ws.sql("""SELECT p.seq, m.status FROM matches m JOIN predictions p ON p.pred_key = m.pred_key
                     WHERE m.source = 'prediction' AND m.run_id = ?""", [run.id]).to_pylist()
    got = {int(r["seq"]) + 1: r["status"] for r in rows}  # loadRes ids are 1..N in file order
    assert {k: got[k] for k in want} == want
