"""`loupe eval` and stored runs (ingest → commit → metrics) against live pycocotools.

The kernel alone is checked in test_cocoeval_*.py; these tests cover the whole Loupe path,
including import order, label mapping, the SQL pair join and the commit index.
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

import engine  # noqa: E402
from engine.cli import _load_commands, cli  # noqa: E402
from tests.conftest import shared_path  # noqa: E402
from tests.oracle.coco_random import random_pair  # noqa: E402

_load_commands()


def coco_eval(gt: dict | str, dets: list | str, iou_type: str = "bbox") -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, str):
            cg = COCO(gt)
        else:
            cg = COCO()
            cg.dataset = json.loads(json.dumps(gt))
            cg.createIndex()
        cd = cg.loadRes(dets if isinstance(dets, str) else json.loads(json.dumps(dets)))
        e = COCOeval(cg, cd, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def loupe_eval_json(gt_path, res_path, iou_type="bbox") -> dict:
    r = CliRunner().invoke(cli, ["eval", str(gt_path), str(res_path), "--iou-type", iou_type, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output.strip().splitlines()[-1])


@pytest.mark.parametrize("iou_type,results", [("bbox", "instances_val2014_fakebbox100_results.json"),
                                               ("segm", "instances_val2014_fakesegm100_results.json")])
def test_real_subset_cli_equals_pycocotools(iou_type, results):
    d = shared_path("coco_subset", "instances_val2014_100")
    gt, res = d / "instances_val2014_100.json", d / results
    ours = loupe_eval_json(gt, res, iou_type)
    ref = coco_eval(str(gt), str(res), iou_type)
    np.testing.assert_allclose(ours["stats"], ref.stats, rtol=0, atol=1e-12)
    # per-class AP against pycocotools' precision array (area all, maxDets 100)
    names = {c["id"]: c["name"] for c in ref.cocoGt.dataset["categories"]}
    prec = ref.eval["precision"][:, :, :, 0, -1]
    for k, cat_id in enumerate(ref.params.catIds):
        p = prec[:, :, k]
        want = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
        got = ours["per_class"].get(names[cat_id], {"ap": -1.0})["ap"]
        assert got == pytest.approx(want, abs=1e-12), names[cat_id]


def _write(tmp_path, gt, dets):
    g, r = tmp_path / "gt.json", tmp_path / "res.json"
    g.write_text(json.dumps(gt))
    r.write_text(json.dumps(dets))
    return g, r


@pytest.mark.parametrize("seed", range(12))
def test_random_pairs_cli_equals_pycocotools(tmp_path, seed):
    gt, dets = random_pair(seed, first_ann_id=0 if seed % 3 == 0 else 1)
    if not dets:
        pytest.skip("pycocotools cannot load an empty results list")
    g, r = _write(tmp_path, gt, dets)
    ours = loupe_eval_json(g, r)
    ref = coco_eval(gt, dets)
    np.testing.assert_allclose(ours["stats"], ref.stats, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_commit_index_equals_pycocotools_matches(tmp_path, seed):
    """Per detection TP/FP/ignored and per GT TP/FN at IoU 0.5 equal pycocotools' evalImgs (area all)."""
    gt, dets = random_pair(100 + seed)
    g, r = _write(tmp_path, gt, dets)
    ref = coco_eval(gt, dets)
    want_dt: dict[int, str] = {}
    want_gt: dict[int, str] = {}
    for e in ref.evalImgs:
        if e is None or e["aRng"] != ref.params.areaRng[0]:
            continue
        for j, did in enumerate(e["dtIds"]):
            ign = bool(e["dtIgnore"][0, j])
            want_dt[did] = "ignored" if ign else ("tp" if e["dtMatches"][0, j] > 0 else "fp")
        for j, gid in enumerate(e["gtIds"]):
            want_gt[gid] = "ignored" if e["gtIgnore"][j] else ("tp" if e["gtMatches"][0, j] > 0 else "fn")
    with engine.connect() as ws:
        ws.import_coco(g, dataset="d", results=r, run="run", check_images=False, clip="keep")
        ws.get_run("run").commit(iou_threshold=0.5)
        rows = ws.sql(
            """SELECT m.source, m.status, p.seq AS pseq, a.annotation_id FROM matches m
               LEFT JOIN predictions p ON m.source = 'prediction' AND p.pred_key = m.pred_key
               LEFT JOIN annotations a ON m.source = 'gt' AND a.ann_key = m.ann_key""").to_pylist()
    got_dt = {int(x["pseq"]) + 1: x["status"] for x in rows if x["source"] == "prediction"}  # loadRes ids are 1..N
    got_gt = {int(x["annotation_id"]): x["status"] for x in rows if x["source"] == "gt"}
    known_cats = {c["id"] for c in gt["categories"]}
    for did, st in want_dt.items():
        assert got_dt[did] == st, f"detection {did}"
    for did, st in got_dt.items():  # detections pycocotools never evaluated (beyond maxDets)
        if did not in want_dt:
            assert st == "ignored"
    for gid, st in want_gt.items():
        assert got_gt[gid] == st, f"gt {gid}"
    assert all(c in known_cats for c in {d["category_id"] for d in dets})


def _stored_metrics(g, r, **params) -> dict:
    with engine.connect() as ws:
        ws.import_coco(g, dataset="gt", results=r, run="eval", check_images=False, clip="keep", bad_masks="drop")
        return ws.get_run("eval").metrics(**params)


@pytest.mark.parametrize("seed", range(8))
def test_unstored_results_equal_a_stored_run(tmp_path, seed):
    """`loupe eval`'s box path (results validated, never stored) gives exactly a stored run's metrics dict:
    stats, per class and counts, bit for bit, also with custom parameters and result rows that are not boxes
    (a polygon, keypoints only, a label whose spaces the store trims)."""
    from engine.metrics.params import coco_params
    from engine.runs.coco_pair import evaluate_coco_pair

    gt, dets = random_pair(200 + seed, first_ann_id=seed % 2)
    gt["categories"][0]["name"] = " padded  "
    if seed % 2:
        x, y = dets[0]["bbox"][:2]
        dets.append({"image_id": dets[0]["image_id"], "category_id": 2, "score": 0.7,
                     "segmentation": [[x, y, x + 30, y, x + 30, y + 20, x, y + 20]]})
        dets.append({"image_id": dets[0]["image_id"], "category_id": 1, "score": 0.6, "keypoints": [5, 6, 2]})
    g, r = _write(tmp_path, gt, dets)
    params = {} if seed < 4 else {"iou_thresholds": [0.3, 0.5, 0.6], "max_dets": [1, 2, 20], "recall_thresholds": [0, 0.5, 1]}
    with engine.connect() as ws:
        got = evaluate_coco_pair(ws, g, r, coco_params(**params))
    assert got == _stored_metrics(g, r, **params)
    assert got["counts"]["tp"] > 0


def test_unstored_results_refused_like_stored_ones(tmp_path):
    """A bad detection is refused with the import's own error, naming the record and field."""
    from engine.errors import ValidationError
    from engine.runs.coco_pair import evaluate_coco_pair

    gt, dets = random_pair(7)
    dets[3]["bbox"][2] = -4.0
    g, r = _write(tmp_path, gt, dets)
    with pytest.raises(ValidationError) as stored:
        _stored_metrics(g, r)
    with engine.connect() as ws, pytest.raises(ValidationError) as unstored:
        evaluate_coco_pair(ws, g, r)
    assert str(unstored.value) == str(stored.value)
    assert "width" in str(unstored.value)
