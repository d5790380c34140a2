"""Insights: every table checked against counts computed independently with numpy / collections."""
from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import engine
from analysis_data import MATCHERS, sample_workspace
from engine.errors import LoupeError, NotFoundError, ValidationError

BINS = 20


@pytest.fixture(scope="module", params=MATCHERS)
def sample(request, tmp_path_factory):
    ws = engine.connect()
    ds, run, m = sample_workspace(ws, tmp_path_factory.mktemp("sample"), n_images=30,
                                 commit=request.param == "commit")
    yield ws, ds, run, m, ds.insights(run=run)
    ws.close()


def gt_arrays(ds, refs=None):
    rows = [r for r in ds.annotations().to_pylist() if refs is None or r["reference_id"] in refs]
    w = np.array([r["width"] for r in rows], float)
    h = np.array([r["height"] for r in rows], float)
    return rows, w, h


def test_labels_and_annotations_per_item(sample):
    ws, ds, run, m, ins = sample
    rows, _, _ = gt_arrays(ds)
    labels = {r["label"]: r for r in ins["labels"].to_pylist()}
    want = Counter(r["label"] for r in rows)
    assert {k: v["annotations"] for k, v in labels.items()} == dict(want)
    for lab, r in labels.items():
        assert r["items"] == len({x["reference_id"] for x in rows if x["label"] == lab})
        assert r["fraction"] == pytest.approx(want[lab] / len(rows))
    per_item = Counter(r["reference_id"] for r in rows)
    refs = ds.items().column("reference_id").to_pylist()
    hist = Counter(per_item.get(ref, 0) for ref in refs)
    assert {r["annotations"]: r["items"] for r in ins["annotations_per_item"].to_pylist()} == dict(hist)
    empty = [ref for ref in refs if ref not in per_item]
    assert ins["items_without_labels"].column("reference_id").to_pylist() == empty
    assert ins["summary"].to_pylist()[0] == {"items": 30, "annotations": len(rows), "labels": len(want),
                                             "items_without_labels": len(empty)}


def test_box_stats_histograms_and_size_buckets(sample):
    ws, ds, run, m, ins = sample
    rows, w, h = gt_arrays(ds)
    values = {"width": w, "height": h, "area": w * h, "aspect": w / h}
    stats = {r["measure"]: r for r in ins["box_stats"].to_pylist()}
    assert list(stats) == ["width", "height", "area", "aspect"]
    for k, v in values.items():
        s = stats[k]
        assert s["count"] == len(v)
        assert (s["min"], s["max"]) == pytest.approx((v.min(), v.max()))
        assert s["mean"] == pytest.approx(v.mean()) and s["std"] == pytest.approx(v.std(ddof=1))
        assert [s["p05"], s["p25"], s["p50"], s["p75"], s["p95"]] == pytest.approx(
            np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95]))
        hist = [r for r in ins["box_histograms"].to_pylist() if r["measure"] == k]
        counts, edges = np.histogram(v, bins=BINS)
        assert [r["count"] for r in hist] == counts.tolist()
        assert [r["lower"] for r in hist] + [hist[-1]["upper"]] == pytest.approx(edges.tolist())
    area = w * h
    buckets = np.where(area < 32 ** 2, "small", np.where(area < 96 ** 2, "medium", "large"))
    got = {(r["label"], r["bucket"]): r["count"] for r in ins["size_buckets"].to_pylist()}
    labels = np.array([r["label"] for r in rows])
    for lab in set(labels.tolist()) | {"(all)"}:
        sel = buckets if lab == "(all)" else buckets[labels == lab]
        for b in ("small", "medium", "large"):
            assert got[(lab, b)] == int((sel == b).sum())


def test_integer_values_on_bin_edges_follow_numpy(ws):
    ds = ws.create_dataset("edges")
    ds.append([engine.DatasetItem(None, "i", width=1000, height=1000)], check_images=False)
    widths = [10, 15, 20, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 100, 110]  # many exact edges
    ds.annotate([engine.BoxAnnotation("a", "i", x=0, y=0, width=float(v), height=10.0) for v in widths])
    for bins in (5, 7, 20):
        hist = [r for r in ds.insights(bins=bins)["box_histograms"].to_pylist() if r["measure"] == "width"]
        assert [r["count"] for r in hist] == np.histogram(widths, bins=bins)[0].tolist()


def test_run_tables(sample):
    ws, ds, run, m, ins = sample
    gt_label = {r["ann_key"]: r["label"] for r in ws.sql("SELECT ann_key, label FROM annotations").to_pylist()}
    pred = {r["pred_key"]: r for r in ws.sql("SELECT pred_key, label, confidence FROM predictions").to_pylist()}
    rows = m.to_pylist()
    per_class = {r["label"]: r for r in ins["per_class"].to_pylist()}
    for lab in {r["label"] for r in pred.values()} | set(gt_label.values()):
        def n(src, status):
            return sum(1 for r in rows if r["source"] == src and r["status"] == status and
                       (gt_label[r["ann_key"]] if src == "gt" else pred[r["pred_key"]]["label"]) == lab)
        c = per_class[lab]
        assert (c["tp"], c["fp"], c["fn"]) == (n("prediction", "tp"), n("prediction", "fp"), n("gt", "fn"))
        assert c["tp"] == n("gt", "tp")
        assert c["recall"] == pytest.approx(c["tp"] / (c["tp"] + c["fn"]))
    total = per_class["(all)"]
    assert total["tp"] + total["fn"] == len(gt_label) and total["predictions"] == len(pred)
    conf = {s: np.array([pred[r["pred_key"]]["confidence"] for r in rows
                         if r["source"] == "prediction" and r["status"] == s]) for s in ("tp", "fp")}
    scores = ins["scores"].to_pylist()
    for s in ("tp", "fp"):
        assert [r[s] for r in scores] == np.histogram(conf[s], bins=BINS, range=(0, 1))[0].tolist()
    tp_iou = [r["iou"] for r in rows if r["source"] == "prediction" and r["status"] == "tp"]
    fn_best = [r["best_iou"] or 0.0 for r in rows if r["source"] == "gt" and r["status"] == "fn"]  # NULL: no overlap
    ious = ins["ious"].to_pylist()
    assert [r["tp"] for r in ious] == np.histogram(tp_iou, bins=BINS, range=(0, 1))[0].tolist()
    assert [r["fn_best"] for r in ious] == np.histogram(fn_best, bins=BINS, range=(0, 1))[0].tolist()
    errs = Counter((r["source"], r["error_type"]) for r in rows if r["status"] != "tp")
    assert {(r["source"], r["error_type"]): r["count"] for r in ins["error_types"].to_pylist()} == dict(errs)


def test_slices_restrict_everything(sample):
    ws, ds, run, m, ins = sample
    refs = ds.items().column("reference_id").to_pylist()[:10]
    sub = ds.insights(slice=refs, run=run)
    rows, _, _ = gt_arrays(ds, set(refs))
    assert sub["summary"].to_pylist()[0]["items"] == 10
    assert sum(r["annotations"] for r in sub["labels"].to_pylist()) == len(rows)
    item_ids = {r["item_id"] for r in ws.sql("SELECT item_id FROM items WHERE reference_id IN "
                                             "(SELECT unnest(?::VARCHAR[]))", [refs]).to_pylist()}
    fn = sum(1 for r in m.to_pylist() if r["status"] == "fn" and r["item_id"] in item_ids)
    assert [r for r in sub["per_class"].to_pylist() if r["label"] == "(all)"][0]["fn"] == fn
    # a stored slice gives the same tables as its reference ids
    if hasattr(ds, "create_slice"):
        ds.create_slice("first10", reference_ids=refs)
    else:
        ws.store.con.execute("INSERT INTO slices VALUES (1, ?, 'first10', 'items', NULL, NULL, NULL, "
                             "now()::TIMESTAMP)", [ds.id])
        ws.store.con.execute("INSERT INTO slice_items SELECT 1, item_id FROM items WHERE reference_id IN "
                             "(SELECT unnest(?::VARCHAR[]))", [refs])
    named = ds.insights(slice="first10", run=run)
    for k in sub:  # floats may differ in the last bit (parallel sums)
        a, b = named[k].to_pylist(), sub[k].to_pylist()
        assert len(a) == len(b), k
        for ra, rb in zip(a, b):
            assert ra.keys() == rb.keys()
            for c in ra:
                assert ra[c] == (pytest.approx(rb[c], rel=1e-12) if isinstance(rb[c], float) else rb[c]), (k, c)
    with pytest.raises(NotFoundError, match="nope"):
        ds.insights(slice="nope")
    with pytest.raises(NotFoundError, match="zzz"):
        ds.insights(slice=["zzz"])


def test_dynamic_slice(sample):
    ws, ds, run, m, ins = sample
    if not hasattr(ds, "create_slice"):
        pytest.skip("slices are not available")
    ds.create_slice("busy", query="annotations.pedestrian >= 3")
    rows, _, _ = gt_arrays(ds)
    per_item = Counter(r["reference_id"] for r in rows if r["label"] == "pedestrian")
    busy = sorted(ref for ref, n in per_item.items() if n >= 3)
    got = ds.insights(slice="busy")
    assert got["summary"].to_pylist()[0]["items"] == len(busy) > 0
    assert sum(r["annotations"] for r in got["labels"].to_pylist()) == sum(
        1 for r in rows if r["reference_id"] in busy)


def test_metadata_fields_categorical_numeric_text(ws):
    rng = np.random.default_rng(3)
    n = 300
    score = rng.normal(5, 2, n).round(6)
    cam = rng.choice(["front", "rear", "side"], n)
    ds = ws.create_dataset("meta")
    meta = [{"score": float(score[i]), "cam": str(cam[i]), "name": f"img{i}", "weird.key": 1}
            | ({"night": bool(i % 2)} if i < 200 else {}) for i in range(n)]
    ds.append([engine.DatasetItem(None, f"r{i}", width=10, height=10, metadata=meta[i]) for i in range(n)],
              check_images=False)
    ins = ds.insights(bins=10)
    fields = {r["field"]: r for r in ins["metadata_fields"].to_pylist()}
    assert {k: v["type"] for k, v in fields.items()} == {
        "score": "numeric", "cam": "categorical", "name": "text", "weird.key": "categorical", "night": "categorical"}
    assert fields["night"]["present"] == 200 and fields["night"]["coverage"] == pytest.approx(200 / 300)
    s = fields["score"]
    assert (s["min"], s["max"], s["mean"]) == pytest.approx((score.min(), score.max(), score.mean()))
    assert [s["p25"], s["p50"], s["p75"]] == pytest.approx(np.quantile(score, [0.25, 0.5, 0.75]))
    values = [(r["field"], r["value"], r["count"]) for r in ins["metadata_values"].to_pylist()]
    assert {(v, c) for f, v, c in values if f == "cam"} == set(Counter(cam.tolist()).items())
    assert {(v, c) for f, v, c in values if f == "night"} == {("true", 100), ("false", 100)}
    assert not [v for v in values if v[0] in ("score", "name")]
    hist = [r for r in ins["metadata_histograms"].to_pylist() if r["field"] == "score"]
    assert [r["count"] for r in hist] == np.histogram(score, bins=10)[0].tolist()


def test_run_of_another_dataset_is_refused(sample):
    ws, ds, run, m, ins = sample
    other = ws.create_dataset("other")
    with pytest.raises(ValidationError, match="not this one"):
        other.insights(run=run)
    assert set(ins) >= {"per_class", "scores", "ious", "error_types"}
    assert "per_class" not in ds.insights()


def test_charts_are_written(sample, tmp_path):
    pytest.importorskip("matplotlib")
    from engine.analysis.plots import save_charts

    ws, ds, run, m, ins = sample
    paths = save_charts(ins, tmp_path)
    assert {p.stem for p in paths} == {"labels", "annotations_per_item", "size_buckets", "box_sizes", "metadata",
                                        "per_class", "error_types", "scores", "ious"}
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
            assert len(np.unique(np.asarray(im.convert("L")))) > 5  # something was drawn
    assert {p.stem for p in save_charts(ds.insights(), tmp_path / "ds")} == {
        "labels", "annotations_per_item", "size_buckets", "box_sizes", "metadata"}


def test_charts_without_matplotlib_say_how_to_install(sample, tmp_path, monkeypatch):
    from engine.analysis.plots import save_charts

    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(LoupeError, match=r"loupe\[plots\]"):
        save_charts(sample[4], tmp_path)


def test_item_metadata_json_round_trip(sample):
    ws, ds, run, m, ins = sample
    empty = ins["items_without_labels"].to_pylist()
    assert all(isinstance(json.loads(r["metadata"]), dict) for r in empty)
