"""Metric tables of a committed run against pycocotools and hand counts: subsets, PR curves, P/R/F1,
confusion matrix, error types; and the commit's atomicity."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from engine.errors import LoupeError  # noqa: E402
from tests.oracle.coco_random import import_pair, random_pair  # noqa: E402


def _ref(gt: dict, dets: list, img_ids: list[int] | None = None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = json.loads(json.dumps(gt))
        cg.createIndex()
        cd = cg.loadRes(json.loads(json.dumps(dets)))
        e = COCOeval(cg, cd, "bbox")
        if img_ids is not None:
            e.params.imgIds = sorted(img_ids)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    gt, dets = random_pair(7, n_images=20)
    ws, run = import_pair(tmp_path_factory.mktemp("m"), gt, dets)
    run.commit()
    yield ws, run, gt, dets
    ws.close()


def test_metrics_on_a_subset_equal_pycocotools_imgids(committed):
    ws, run, gt, dets = committed
    chosen = gt["images"][::3]
    refs = ws.sql("SELECT reference_id, json_extract(metadata, '$.coco_id')::BIGINT AS id FROM items").to_pylist()
    by_id = {r["id"]: r["reference_id"] for r in refs}
    ours = run.metrics(slice=[by_id[im["id"]] for im in chosen])
    ref = _ref(gt, dets, [im["id"] for im in chosen])
    np.testing.assert_allclose(list(ours["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    full = run.metrics()
    assert list(full["stats"].values()) != list(ours["stats"].values())


def test_pr_curves_are_pycocotools_precision(committed):
    ws, run, gt, dets = committed
    ref = _ref(gt, dets)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    curves = run.pr_curves().to_pylist()
    got = {(r["label"], round(r["iou_threshold"], 2), round(r["recall"], 2)): r["precision"] for r in curves}
    prec = ref.eval["precision"][:, :, :, 0, -1]
    n = 0
    for k, cat in enumerate(ref.params.catIds):
        for t, thr in enumerate(ref.params.iouThrs):
            for r_i, rec in enumerate(ref.params.recThrs):
                v = prec[t, r_i, k]
                key = (names[cat], round(thr, 2), round(rec, 2))
                if v > -1:
                    assert got[key] == v
                    n += 1
                else:
                    assert key not in got
    assert n == len(curves)


def _hand_match(gt, dets, iou_thr, conf, agnostic=False):
    """Greedy matching transcribed directly (per image and class, score order, best IoU, crowds
    absorb). Returns (tp, fp, fn) per class and the confusion pairs (gt_label, pred_label)."""
    from udfs.iou import box_iou_matrix

    names = {c["id"]: c["name"] for c in gt["categories"]}
    tp, fp, fn = {}, {}, {}
    pairs: list[tuple[str, str]] = []
    groups = [None] if agnostic else list(names)
    for im in gt["images"]:
        for cid in groups:
            name = names.get(cid)
            g = [a for a in gt["annotations"] if a["image_id"] == im["id"] and (agnostic or a["category_id"] == cid)]
            d = [x for x in dets if x["image_id"] == im["id"] and (agnostic or x["category_id"] == cid)
                 and x["score"] >= conf]
            d = sorted(d, key=lambda x: -x["score"])
            used = set()
            crowd = np.array([a["iscrowd"] for a in g], bool)
            iou = box_iou_matrix(np.array([x["bbox"] for x in d]).reshape(-1, 4),
                                 np.array([a["bbox"] for a in g]).reshape(-1, 4), crowd)
            for i in range(len(d)):
                best, bj = -1.0, -1
                for j in range(len(g)):
                    if (j in used and not crowd[j]) or iou[i, j] < iou_thr:
                        continue
                    better = bj < 0 or (crowd[bj] and not crowd[j]) or (crowd[bj] == crowd[j] and iou[i, j] >= best)
                    if better:
                        best, bj = iou[i, j], j
                if bj < 0:
                    fp[name] = fp.get(name, 0) + 1
                    pairs.append(("background", names[d[i]["category_id"]]))
                elif not crowd[bj]:
                    used.add(bj)
                    tp[name] = tp.get(name, 0) + 1
                    pairs.append((names[g[bj]["category_id"]], names[d[i]["category_id"]]))
            fn[name] = fn.get(name, 0) + sum(1 for j in range(len(g)) if j not in used and not crowd[j])
            pairs += [(names[g[j]["category_id"]], "background") for j in range(len(g)) if j not in used and not crowd[j]]
    return tp, fp, fn, pairs


@pytest.mark.parametrize("iou,conf", [(0.5, 0.0), (0.3, 0.5), (0.75, 0.25)])
def test_precision_recall_counts(committed, iou, conf):
    ws, run, gt, dets = committed
    t = {r["label"]: r for r in run.precision_recall(iou=iou, confidence=conf).to_pylist()}
    tp, fp, fn, _ = _hand_match(gt, dets, iou, conf)
    for label, r in t.items():
        if label == "*":
            continue
        assert (r["tp"], r["fp"], r["fn"]) == (tp.get(label, 0), fp.get(label, 0), fn.get(label, 0)), label
        if r["tp"] + r["fp"]:
            assert r["precision"] == pytest.approx(r["tp"] / (r["tp"] + r["fp"]))
    total = t["*"]
    assert total["tp"] == sum(tp.values()) and total["fp"] == sum(fp.values()) and total["fn"] == sum(fn.values())


@pytest.mark.parametrize("iou,conf", [(0.5, 0.0), (0.3, 0.4)])
def test_confusion_matrix_equals_class_agnostic_matching(committed, iou, conf):
    ws, run, gt, dets = committed
    cm = {(r["gt_label"], r["pred_label"]): r["count"] for r in run.confusion_matrix(iou=iou, confidence=conf).to_pylist()}
    *_, pairs = _hand_match(gt, dets, iou, conf, agnostic=True)
    want: dict = {}
    for p in pairs:
        want[p] = want.get(p, 0) + 1
    assert cm == want
    assert any(g != p and "background" not in (g, p) for g, p in cm)  # real confusions exist in this data


def test_error_types_sum_to_fp_and_fn(committed):
    ws, run, gt, dets = committed
    et = run.error_types().to_pylist()
    counts = run.metrics()["counts"]
    assert sum(r["count"] for r in et) == counts["fp"] + counts["fn"]
    assert {r["error_type"] for r in et} <= {"duplicate", "classification", "localization", "both", "background",
                                             "missed"}


def test_commit_failure_keeps_previous_index(committed, monkeypatch):
    ws, run, gt, dets = committed
    before = ws.sql("SELECT * FROM matches ORDER BY source, pred_key, ann_key").to_pylist()
    import engine.runs.commit as cm

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cm, "_per_class", boom)  # fails inside the writing transaction
    with pytest.raises(RuntimeError):
        run.commit(iou_threshold=0.3)
    after = ws.sql("SELECT * FROM matches ORDER BY source, pred_key, ann_key").to_pylist()
    assert after == before and {r["iou_threshold"] for r in after} == {0.5}


def test_commit_options(committed):
    ws, run, gt, dets = committed
    base = run.commit()
    agn = run.commit(class_agnostic=True)
    assert agn["tp"] >= base["tp"]  # matching across labels can only find more partners
    pairs_sql = """SELECT m.iou, a.label AS gl, p.label AS pl, m.ann_key FROM matches m
                   JOIN predictions p ON p.pred_key = m.pred_key JOIN annotations a ON a.ann_key = m.ann_key
                   WHERE m.source = 'prediction' AND m.status = 'tp'"""
    assert any(r["gl"] != r["pl"] for r in ws.sql(pairs_sql).to_pylist())
    run.commit(method="hungarian")
    rows = ws.sql(pairs_sql).to_pylist()
    assert rows and all(r["iou"] >= 0.5 and r["gl"] == r["pl"] for r in rows)
    assert len({r["ann_key"] for r in rows}) == len(rows)  # one-to-one
    with pytest.raises(LoupeError, match="method"):
        run.commit(method="nope")
    labels = sorted({c["name"] for c in gt["categories"]})
    allowed = {(labels[0], labels[1]), (labels[1], labels[0])}
    run.commit(allowed_label_matches=list(allowed))
    rows = ws.sql(pairs_sql).to_pylist()
    assert all(r["gl"] == r["pl"] or (r["gl"], r["pl"]) in allowed for r in rows)
    run.commit()  # restore the default index for other tests
