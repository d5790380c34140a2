"""Imports of the real data in ../shared/datasets, checked against facts computed independently.

PennFudan: 170 items, 423 boxes, each equal to the 0-based tight bbox of its instance mask (computed
here with numpy from the PedMasks PNGs). COCO val2014 subset: 100 images, 839 annotations, 9 crowd,
734 predictions per results file, and field-by-field agreement with pycocotools' ``COCO``/``loadRes``.
"""
from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import engine
from tests.conftest import shared_path
from udfs import rle


@pytest.fixture(scope="module")
def pennfudan():
    root = shared_path("PennFudanPed")
    ws = engine.connect()
    summary = ws.import_pennfudan(root, "pennfudan")
    yield root, ws, summary
    ws.close()


def test_pennfudan_counts(pennfudan):
    root, ws, s = pennfudan
    assert (s.items, s.annotations) == (170, 423)
    info = ws.get_dataset("pennfudan").info()
    assert info["items"] == 170 and info["kinds"] == {"box": 423} and info["labels"] == {"pedestrian": 423}
    # every object of the annotation texts is there, with its original label kept
    n_text = sum(len(re.findall(r"^Bounding box for object", f.read_text(errors="replace"), re.M))
                 for f in (root / "Annotation").glob("*.txt"))
    assert n_text == 423


def test_pennfudan_boxes_are_tight_zero_based_mask_boxes(pennfudan):
    root, ws, _ = pennfudan
    rows = ws.get_dataset("pennfudan").annotations().to_pylist()
    by_ref: dict[str, list[dict]] = {}
    for r in rows:
        by_ref.setdefault(r["reference_id"], []).append(r)
    assert len(by_ref) == 170
    for ref, objs in by_ref.items():
        ids = np.asarray(Image.open(root / "PedMasks" / f"{ref}_mask.png"))
        assert sorted(int(o["annotation_id"]) for o in objs) == sorted(set(np.unique(ids)) - {0})
        for o in objs:
            m = ids == int(o["annotation_id"])
            ys, xs = np.nonzero(m)
            want = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert [o["x"], o["y"], o["width"], o["height"]] == want, (ref, o["annotation_id"])
            assert o["area"] == m.sum()
            assert np.array_equal(rle.decode(o["mask"], *m.shape).astype(bool), m)


def test_pennfudan_text_boxes_kept(pennfudan):
    _, ws, _ = pennfudan
    rows = ws.get_dataset("pennfudan").annotations().to_pylist()
    meta = [json.loads(r["metadata"]) for r in rows]
    assert sum(m["added"] for m in meta) == 78  # added-object-list.txt
    assert {m["pf_label"] for m in meta} == {"PASpersonWalking", "PASpersonStanding"}
    # SOURCE.txt: the text box is the mask box + 1 px on the far sides for 407 of 423 objects
    # (1-based inclusive corners), i.e. txt_box (0-based x, y, w, h) equals the box there
    same = sum(m["txt_box"] == [r["x"], r["y"], r["width"], r["height"]] for m, r in zip(meta, rows))
    assert same == 407


COCO_DIR = ("coco_subset", "instances_val2014_100")


@pytest.fixture(scope="module")
def coco_ws():
    d = shared_path(*COCO_DIR)
    ws = engine.connect()
    s = ws.import_coco(d / "instances_val2014_100.json", "coco", results=d / "instances_val2014_fakebbox100_results.json",
                       run="bbox")
    s2 = ws.import_coco(d / "instances_val2014_fakesegm100_results.json", "coco", run="segm")
    yield d, ws, s, s2
    ws.close()


def _pycoco(d):
    coco = pytest.importorskip("pycocotools.coco")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco.COCO(str(d / "instances_val2014_100.json"))
        dt_b = gt.loadRes(str(d / "instances_val2014_fakebbox100_results.json"))
        dt_s = gt.loadRes(str(d / "instances_val2014_fakesegm100_results.json"))
    return gt, dt_b, dt_s


def test_coco_subset_facts(coco_ws):
    _, ws, s, s2 = coco_ws
    assert (s.items, s.annotations, s.predictions, s2.predictions) == (100, 839, 734, 734)
    n = ws.sql("SELECT count(*) FILTER (WHERE iscrowd) AS crowd, count(*) AS n FROM annotations").to_pylist()[0]
    assert n == {"crowd": 9, "n": 839}


def test_coco_subset_matches_pycocotools(coco_ws):
    d, ws, _, _ = coco_ws
    gt, dt_b, dt_s = _pycoco(d)
    items = ws.get_dataset("coco").items().to_pylist()
    assert [json.loads(i["metadata"])["coco_id"] for i in items] == sorted(gt.getImgIds())  # item order
    ref_of = {json.loads(i["metadata"])["coco_id"]: i["reference_id"] for i in items}
    cat = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    rows = ws.get_dataset("coco").annotations().to_pylist()
    src = gt.dataset["annotations"]
    assert [r["annotation_id"] for r in rows] == [str(a["id"]) for a in src]  # file order kept
    for r, a in zip(rows, src):
        assert r["reference_id"] == ref_of[a["image_id"]] and r["label"] == cat[a["category_id"]]
        assert [r["x"], r["y"], r["width"], r["height"]] == a["bbox"]
        assert r["area"] == a["area"] and r["iscrowd"] == bool(a["iscrowd"])
        if isinstance(a["segmentation"], dict):
            img = gt.imgs[a["image_id"]]
            assert np.array_equal(rle.decode(r["mask"], img["height"], img["width"]), gt.annToMask(a))
        else:
            assert r["polygon"] == a["segmentation"]
    for run, dt in (("bbox", dt_b), ("segm", dt_s)):
        preds = ws.get_run(run).predictions().to_pylist()
        anns = [dt.anns[k] for k in sorted(dt.anns)]  # loadRes ids follow file order
        assert len(preds) == len(anns) == 734
        for p, a in zip(preds, anns):
            assert p["reference_id"] == ref_of[a["image_id"]] and p["label"] == cat[a["category_id"]]
            assert p["confidence"] == a["score"]
            assert p["area"] == pytest.approx(a["area"], rel=1e-12)
            assert [p["x"], p["y"], p["width"], p["height"]] == pytest.approx(a["bbox"], rel=1e-12)


@pytest.mark.slow
def test_coco_export_evaluates_to_the_published_stats(coco_ws, tmp_path):
    """The exported GT + results, evaluated by pycocotools, give the SOURCE.txt numbers (bbox)."""
    d, ws, _, _ = coco_ws
    ev = pytest.importorskip("pycocotools.cocoeval")
    coco = pytest.importorskip("pycocotools.coco")
    ds = ws.get_dataset("coco")
    ds.export_coco(tmp_path / "gt.json")
    ds.export_coco(tmp_path / "bbox.json", run="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco.COCO(str(tmp_path / "gt.json"))
        e = ev.COCOeval(gt, gt.loadRes(str(tmp_path / "bbox.json")), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    text = (d / "SOURCE.txt").read_text()
    block = text[text.index("bbox  (asserted"):text.index("segm  (same")]
    want = [float(v) for v in re.findall(r"^\s+A[PR]\w*\s+([0-9.]+)$", block, re.M)]
    assert len(want) == 12
    np.testing.assert_allclose(e.stats, want, rtol=0, atol=1e-12)
