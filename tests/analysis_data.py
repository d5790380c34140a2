"""Test data for the analysis tests: the synthetic sample dataset in a workspace, with a matches index.

The ``matches`` rows are computed here, independently of the engine's commit, with a plain
greedy COCO-style matcher over a handful of boxes per image (Python loops are fine at this size).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

import engine
import sample_data


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of x, y, w, h boxes (a: n x 4, b: m x 4)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    ix = np.maximum(0, np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
                    - np.maximum(a[:, None, 0], b[None, :, 0]))
    iy = np.maximum(0, np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
                    - np.maximum(a[:, None, 1], b[None, :, 1]))
    inter = ix * iy
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def load_sample(ws, data_dir: Path, n_images: int = 30, run_name: str = "det"):
    """Generate the sample data, ingest items, GT and the simulated detector's predictions."""
    sample_data.generate(data_dir, n_images=n_images)
    preds = sample_data.detect(data_dir)
    truth = json.loads((data_dir / "truth.json").read_text())
    meta = json.loads((data_dir / "metadata.json").read_text())
    ds = ws.create_dataset("sample")
    ds.append([engine.DatasetItem(str(data_dir / "PNGImages" / f"{ref}.png"), ref, width=im["width"],
                                  height=im["height"], metadata=meta[ref])
               for ref, im in sorted(truth["images"].items())], check_images=False)
    anns = []
    for ref, im in sorted(truth["images"].items()):
        for o in im["objects"]:
            if o["status"] == "annotated":
                x, y, w, h = o["text_box"]
                anns.append(engine.BoxAnnotation(o["annotated_label"], ref, f"{ref}-{o['mask_index']}",
                                                 metadata={"visible": o["visible_fraction"]},
                                                 x=x, y=y, width=w, height=h))
    ds.annotate(anns)
    model = ws.add_model("simdet")
    run = model.create_run(run_name, ds, [
        engine.BoxPrediction(p["label"], p["reference_id"], f"p{i}", x=p["bbox"][0], y=p["bbox"][1],
                             width=p["bbox"][2], height=p["bbox"][3], confidence=p["score"])
        for i, p in enumerate(preds)])
    return ds, run


def compute_matches(ws, run, thr: float = 0.5) -> pa.Table:
    """Greedy per-image, per-label matching by descending confidence; TIDE-style error types."""
    gt = ws.sql("""SELECT a.ann_key, a.item_id, a.label, a.x, a.y, a.width, a.height FROM annotations a
                   JOIN runs r ON r.dataset_id = a.dataset_id WHERE r.run_id = ? AND a.valid_to IS NULL
                   ORDER BY a.seq""", [run.id]).to_pylist()
    dt = ws.sql("""SELECT pred_key, item_id, label, x, y, width, height, confidence FROM predictions
                   WHERE run_id = ? ORDER BY confidence DESC, seq""", [run.id]).to_pylist()
    rows = []
    for item in sorted({g["item_id"] for g in gt} | {d["item_id"] for d in dt}):
        g = [r for r in gt if r["item_id"] == item]
        d = [r for r in dt if r["item_id"] == item]
        m = iou([[r["x"], r["y"], r["width"], r["height"]] for r in d],
                [[r["x"], r["y"], r["width"], r["height"]] for r in g])
        g_match: dict[int, int] = {}
        d_match: dict[int, int] = {}
        for i, dr in enumerate(d):
            best, bj = thr, -1
            for j, gr in enumerate(g):
                if j in g_match or gr["label"] != dr["label"]:
                    continue
                if m[i, j] >= best:
                    best, bj = m[i, j], j
            if bj >= 0:
                g_match[bj], d_match[i] = i, bj
        for i, dr in enumerate(d):
            bi = int(np.argmax(m[i])) if len(g) else -1
            best = float(m[i, bi]) if bi >= 0 else 0.0
            if i in d_match:
                j = d_match[i]
                status, etype, partner, pi = "tp", None, g[j]["ann_key"], float(m[i, j])
            else:
                status, partner, pi = "fp", None, None
                same = [j for j in range(len(g)) if g[j]["label"] == dr["label"]]
                other = [j for j in range(len(g)) if g[j]["label"] != dr["label"]]
                s_best = max((m[i, j] for j in same), default=0.0)
                o_best = max((m[i, j] for j in other), default=0.0)
                if any(m[i, j] >= thr and j in g_match for j in same):
                    etype = "duplicate"
                elif o_best >= thr:
                    etype = "classification"
                elif s_best >= 0.1:
                    etype = "localization"
                elif o_best >= 0.1:
                    etype = "both"
                else:
                    etype = "background"
            rows.append(dict(source="prediction", ann_key=partner, pred_key=dr["pred_key"], item_id=item, iou=pi,
                             best_iou=best, best_iou_key=g[bi]["ann_key"] if bi >= 0 else None,
                             status=status, error_type=etype))
        for j, gr in enumerate(g):
            bi = int(np.argmax(m[:, j])) if len(d) else -1
            best = float(m[bi, j]) if bi >= 0 else 0.0
            if j in g_match:
                i = g_match[j]
                rows.append(dict(source="gt", ann_key=gr["ann_key"], pred_key=d[i]["pred_key"], item_id=item,
                                 iou=float(m[i, j]), best_iou=best, best_iou_key=d[bi]["pred_key"],
                                 status="tp", error_type=None))
            else:
                rows.append(dict(source="gt", ann_key=gr["ann_key"], pred_key=None, item_id=item, iou=None,
                                 best_iou=best, best_iou_key=d[bi]["pred_key"] if bi >= 0 else None,
                                 status="fn", error_type="missed"))
    cols = ["source", "ann_key", "pred_key", "item_id", "iou", "best_iou", "best_iou_key", "status", "error_type"]
    return pa.table({c: [r[c] for r in rows] for c in cols})


def insert_matches(ws, run, table: pa.Table, thr: float = 0.5) -> None:
    """Write the matches rows of ``run`` (as the commit would) and mark the run committed."""
    con = ws.store.con
    con.register("__test_matches", table)
    try:
        with ws.store.transaction():
            con.execute("DELETE FROM matches WHERE run_id = ? AND iou_threshold = ?", [run.id, thr])
            con.execute(
                """INSERT INTO matches SELECT ?, ?, source, ann_key, pred_key, item_id, iou, best_iou,
                   best_iou_key, status, error_type FROM __test_matches""", [run.id, thr])
            con.execute("UPDATE runs SET committed_at = now()::TIMESTAMP, label_version = "
                        "(SELECT label_version FROM datasets d WHERE d.dataset_id = runs.dataset_id) "
                        "WHERE run_id = ?", [run.id])
    finally:
        con.unregister("__test_matches")


def sample_workspace(ws, data_dir: Path, n_images: int = 30, thr: float = 0.5, commit: bool = False):
    """Sample dataset + run + matches at ``thr``: returns (dataset, run, matches rows of the run).

    ``commit=True`` uses the engine's ``run.commit()``; otherwise the matcher above writes the index.
    """
    ds, run = load_sample(ws, data_dir, n_images)
    if commit:
        run.commit(iou_threshold=thr)
    else:
        insert_matches(ws, run, compute_matches(ws, run, thr), thr)
    m = ws.sql("SELECT source, ann_key, pred_key, item_id, iou, best_iou, best_iou_key, status, error_type "
               "FROM matches WHERE run_id = ? AND iou_threshold = ?", [run.id, thr])
    return ds, run, m


def has_commit() -> bool:
    from engine.api.model import ModelRun

    return hasattr(ModelRun, "commit")


# fixture parameters: the hand-written index always, the engine's commit when it exists
MATCHERS = ["hand"] + (["commit"] if has_commit() else [])
