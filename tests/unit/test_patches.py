"""Patches view: the matches index joined to boxes, partners, items; filters and sorting."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import engine
from analysis_data import MATCHERS, compute_matches, insert_matches, iou, load_sample, sample_workspace
from engine.api.dataset import Dataset
from engine.errors import LoupeError, ValidationError


@pytest.fixture(scope="module", params=MATCHERS)
def sample(request, tmp_path_factory):
    ws = engine.connect()
    ds, run, m = sample_workspace(ws, tmp_path_factory.mktemp("sample"), n_images=30,
                                 commit=request.param == "commit")
    yield ws, ds, run, m
    ws.close()


def boxes_by_id(table: pa.Table) -> dict[tuple[str, str], tuple]:
    return {(r["reference_id"], r["annotation_id"]): (r["label"], r["x"], r["y"], r["width"], r["height"],
                                                      r.get("confidence"))
            for r in table.to_pylist()}


def test_every_matches_row_is_one_patch_with_its_own_box(sample):
    ws, ds, run, m = sample
    p = run.patches(pairs=False)
    assert p.num_rows == m.num_rows
    gt, dt = boxes_by_id(ds.annotations()), boxes_by_id(run.predictions())
    for r in p.to_pylist():
        own = (gt if r["source"] == "gt" else dt)[(r["reference_id"], r["annotation_id"])]
        assert (r["label"], r["x"], r["y"], r["width"], r["height"]) == own[:5]
        assert r["confidence"] == (own[5] if r["source"] == "prediction" else
                                   (dt[(r["reference_id"], r["partner_annotation_id"])][5] if r["status"] == "tp" else None))
    counts = {s: sum(1 for v in m.column("status").to_pylist() if v == s) for s in ("tp", "fp", "fn")}
    got = {s: sum(1 for v in p.column("status").to_pylist() if v == s) for s in ("tp", "fp", "fn")}
    assert got == counts


def test_matched_partner_box_and_iou_agree_with_geometry(sample):
    ws, ds, run, m = sample
    gt, dt = boxes_by_id(ds.annotations()), boxes_by_id(run.predictions())
    tps = run.patches(status="tp").to_pylist()
    assert tps and all(r["source"] == "prediction" for r in tps)  # one row per TP pair
    for r in tps:
        partner = gt[(r["reference_id"], r["partner_annotation_id"])]
        assert (r["partner_label"], r["partner_x"], r["partner_y"], r["partner_width"], r["partner_height"]) == partner[:5]
        assert r["partner_label"] == r["label"] and r["partner_status"] == "tp"
        expect = iou([[r["x"], r["y"], r["width"], r["height"]]], [partner[1:5]])[0, 0]
        assert r["iou"] == pytest.approx(expect, abs=1e-9) and r["iou"] >= 0.5


def test_unmatched_objects_get_the_most_overlapping_object_as_partner(sample):
    ws, ds, run, m = sample
    gt = ds.annotations().to_pylist()
    dt = run.predictions().to_pylist()
    rows = run.patches(status=["fp", "fn"]).to_pylist()
    checked = 0
    for r in rows:
        other = [o for o in (gt if r["source"] == "prediction" else dt) if o["reference_id"] == r["reference_id"]]
        ious = iou([[r["x"], r["y"], r["width"], r["height"]]],
                   [[o["x"], o["y"], o["width"], o["height"]] for o in other])[0] if other else np.zeros(0)
        assert r["iou"] is None
        if len(ious) and ious.max() > 0:
            best = other[int(np.argmax(ious))]
            assert r["partner_annotation_id"] == best["annotation_id"]
            assert r["best_iou"] == pytest.approx(ious.max(), abs=1e-9)
            checked += 1
        else:
            assert r["partner_annotation_id"] is None and r["partner_x"] is None
    assert checked >= 10
    # a classification error's partner is the GT of the other label it sits on
    cls = run.patches(error_type="classification").to_pylist()
    assert cls and all(r["partner_label"] != r["label"] and r["best_iou"] >= 0.5 for r in cls)


@pytest.mark.parametrize("key", ["iou", "confidence", "area", "best_iou"])
@pytest.mark.parametrize("descending", [False, True])
def test_sorting_nulls_last_and_limit(sample, key, descending):
    ws, ds, run, m = sample
    p = run.patches(sort=key, descending=descending)
    vals = p.column(key).to_pylist()
    present = [v for v in vals if v is not None]
    assert vals[:len(present)] == present  # NULLs last
    assert present == sorted(present, reverse=descending)
    top = run.patches(sort=key, descending=descending, limit=7)
    assert top.num_rows == 7 and top.column(key).to_pylist() == vals[:7]


@pytest.mark.parametrize("key", ["iou", "confidence", "area", "best_iou"])
def test_a_page_is_the_slice_of_the_whole_answer_ties_included(sample, key):
    # the page is a top-k before the partner joins: it must cut the same rows, in the same order, as the
    # whole sorted answer, also inside runs of equal keys (NULL iou of every FP/FN, equal areas)
    ws, ds, run, m = sample
    for kw in ({}, {"pairs": False}, {"status": ["fp", "fn"]}, {"descending": True}):
        whole = run.patches(sort=key, **kw)
        vals = whole.column(key).to_pylist()
        assert key == "area" or len(vals) > len(set(vals))  # ties to cut through (areas are all distinct here)
        for k in sorted({1, 2, 5, 13, len(vals) // 2, max(0, len(vals) - 1)}):
            assert run.patches(sort=key, limit=k, **kw).equals(whole.slice(0, k)), (key, kw, k)


def test_status_label_and_error_type_filters(sample):
    ws, ds, run, m = sample
    fp = run.patches(status="fp")
    assert set(fp.column("status").to_pylist()) == {"fp"}
    assert fp.num_rows == sum(1 for s in m.column("status").to_pylist() if s == "fp")
    fn = run.patches(status=["fn"], error_type="missed")
    assert fn.num_rows == sum(1 for r in m.to_pylist() if r["status"] == "fn" and r["error_type"] == "missed") > 0
    assert set(fn.column("error_type").to_pylist()) == {"missed"}
    cyc = run.patches(label="cyclist", pairs=False)
    assert set(cyc.column("label").to_pylist()) == {"cyclist"}
    n_cyc = sum(1 for r in ds.annotations().to_pylist() if r["label"] == "cyclist") + \
        sum(1 for r in run.predictions().to_pylist() if r["label"] == "cyclist")
    assert cyc.num_rows == n_cyc
    assert run.patches(label="o'brien; DROP TABLE items").num_rows == 0  # parameters, not SQL text
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 30


def test_item_columns(sample):
    ws, ds, run, m = sample
    items = {r["reference_id"]: r for r in ds.items().to_pylist()}
    for r in run.patches(limit=20).to_pylist():
        it = items[r["reference_id"]]
        assert (r["image_location"], r["item_width"], r["item_height"]) == (it["image_location"], it["width"], it["height"])


def test_bad_arguments_and_uncommitted_run(sample):
    ws, ds, run, m = sample
    with pytest.raises(ValidationError, match="sort"):
        run.patches(sort="size")
    with pytest.raises(ValidationError, match="status"):
        run.patches(status="tn")
    with pytest.raises(ValidationError, match="0.75"):
        run.patches(iou_threshold=0.75)
    other = ws.get_model("simdet").create_run("uncommitted", ds, run.predictions().drop_columns(["class_pdf"]))
    with pytest.raises(LoupeError, match="commit"):
        other.patches()


def test_query_without_the_query_language_is_a_clear_error(sample, monkeypatch):
    ws, ds, run, m = sample
    monkeypatch.delattr(Dataset, "query_objects", raising=False)
    with pytest.raises(LoupeError, match="query language"):
        run.patches(query="label = 'cyclist'")


def test_query_result_keeps_exactly_its_objects(sample, monkeypatch):
    ws, ds, run, m = sample
    fps = run.patches(status="fp").to_pylist()[:3]
    picked = pa.table({"reference_id": [r["reference_id"] for r in fps],
                       "annotation_id": [r["annotation_id"] for r in fps]})
    seen = {}

    def fake(self, dsl, run=None):
        seen["dsl"], seen["run"] = dsl, run
        return picked

    monkeypatch.setattr(Dataset, "query_objects", fake, raising=False)
    got = run.patches(query="anything", pairs=False)
    assert seen["dsl"] == "anything" and seen["run"].id == run.id
    assert sorted(got.column("annotation_id").to_pylist()) == sorted(r["annotation_id"] for r in fps)


def test_query_with_the_object_dsl(sample):
    ws, ds, run, m = sample
    if not hasattr(Dataset, "query_objects"):
        pytest.skip("the object query language is not installed")
    got = run.patches(query='status = "fp" AND confidence > 0.8', sort="confidence", descending=True)
    want = [r for r in run.patches(status="fp", sort="confidence", descending=True).to_pylist()
            if r["confidence"] > 0.8]
    assert want and got.to_pylist() == want
    cyc = run.patches(query='label = "cyclist"', pairs=False)
    assert cyc.num_rows == run.patches(label="cyclist", pairs=False).num_rows > 0


def test_patches_show_the_labels_the_run_was_matched_against(tmp_path):
    ws = engine.connect()
    ds, run = load_sample(ws, tmp_path, n_images=6)
    insert_matches(ws, run, compute_matches(ws, run))
    gt_row = [r for r in run.patches(status="tp", pairs=False).to_pylist() if r["source"] == "gt"][0]
    ds.annotate([engine.BoxAnnotation(gt_row["label"], gt_row["reference_id"], gt_row["annotation_id"],
                                      x=1, y=1, width=5, height=5)], update=True)  # a later correction
    again = [r for r in run.patches(status="tp", pairs=False).to_pylist()
             if r["source"] == "gt" and r["annotation_id"] == gt_row["annotation_id"]]
    assert len(again) == 1
    assert (again[0]["x"], again[0]["width"]) == (gt_row["x"], gt_row["width"]) != (1, 5)
    ws.close()


def test_real_commit_if_available(tmp_path):
    from engine.api.model import ModelRun

    if not hasattr(ModelRun, "commit"):
        pytest.skip("run.commit() is not available yet")
    ws = engine.connect()
    ds, run = load_sample(ws, tmp_path, n_images=12)
    run.commit()
    p = run.patches(pairs=False)
    stored = ws.sql("SELECT status, count(*) AS n FROM matches WHERE run_id = ? AND iou_threshold = "
                    "(SELECT min(iou_threshold) FROM matches WHERE run_id = ? AND abs(iou_threshold - 0.5) < 1e-9) "
                    "GROUP BY status", [run.id, run.id]).to_pylist()
    got = {}
    for s in p.column("status").to_pylist():
        got[s] = got.get(s, 0) + 1
    assert got == {r["status"]: r["n"] for r in stored}
    for r in p.to_pylist():
        assert r["label"] is not None and not math.isnan(r["x"])
    ws.close()
