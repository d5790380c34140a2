"""The metric reduce: per category, pycocotools' accumulate from the per-object commit results.

Accumulation is independent per category, so Spark groups the kernel's rows by category and runs
:func:`accumulate_category` on each group (``applyInArrow``); the driver stacks the (T, R, A, M)
curves in category order and summarizes them exactly as the local path (:func:`combine`).
A category's detections are ordered by input order (``seq``) and their images by item id, which is
the local path's global order restricted to the category, so ranks and ties come out the same.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udfs.matching import CocoMatches

from ..metrics.coco_accumulate import accumulate_curves
from ..metrics.cocoeval import CocoParams, DtArrays, GtArrays, _masked_mean, prepare, summarize

CURVES_SCHEMA = pa.schema([
    ("cat", pa.int32()), ("precision", pa.binary()), ("recall", pa.binary()), ("scores", pa.binary()),
    ("n_gt", pa.int64()), ("n_dt", pa.int64()),
])


def accumulate_category(t: pa.Table, params: CocoParams | None = None) -> pa.Table:
    """One category's curves from its kernel rows (source, item_id, seq, score, area, crowd, hit, tp)."""
    p = params or CocoParams()
    is_dt = np.asarray(pc.equal(t.column("source"), "prediction").to_numpy(zero_copy_only=False), bool)
    g_t = t.filter(pa.array(~is_dt))
    d_t = t.filter(pa.array(is_dt))
    d_t = d_t.take(np.argsort(d_t.column("seq").to_numpy(), kind="stable"))
    g_t = g_t.take(np.argsort(g_t.column("seq").to_numpy(), kind="stable"))
    images, inv = np.unique(np.r_[g_t.column("item_id").to_numpy(), d_t.column("item_id").to_numpy()],
                            return_inverse=True)
    ng = g_t.num_rows
    g_crowd = g_t.column("crowd").to_numpy(zero_copy_only=False).astype(bool)
    plan = prepare(
        GtArrays(img=inv[:ng], cat=np.zeros(ng, np.int64), area=g_t.column("area").to_numpy(zero_copy_only=False),
                 iscrowd=g_crowd, n_images=len(images), n_categories=1),
        DtArrays(img=inv[ng:], cat=np.zeros(d_t.num_rows, np.int64),
                 score=d_t.column("score").to_numpy(zero_copy_only=False),
                 area=d_t.column("area").to_numpy(zero_copy_only=False)), p)
    T, A = len(plan.iou_thrs), len(plan.area_rng)
    hit = d_t.column("hit").to_numpy().astype(np.int64).view(np.uint64)
    tp = d_t.column("tp").to_numpy().astype(np.int64).view(np.uint64)
    bits = np.arange(T * A, dtype=np.uint64)
    on = (hit[:, None] >> bits[None, :]) & np.uint64(1)
    dt_i, b = np.nonzero(on)
    is_tp = ((tp[dt_i] >> b.astype(np.uint64)) & np.uint64(1)).astype(bool)
    mt = CocoMatches(thr=(b // A).astype(np.int64), area=(b % A).astype(np.int64), dt=dt_i.astype(np.int64),
                     gt=np.zeros(len(dt_i), np.int64))
    precision, recall, scores = accumulate_curves(
        plan.L, plan.rank, plan.d_cat, plan.d_score, plan.d_area, plan.g_cat, plan.g_ig, mt, ~is_tp,
        np.zeros(len(dt_i), bool), plan.iou_thrs, plan.rec_thrs, plan.max_dets, plan.area_rng, 1)
    cat = int(t.column("cat")[0].as_py()) if t.num_rows else -1
    return pa.table({"cat": [cat], "precision": [precision.tobytes()], "recall": [recall.tobytes()],
                     "scores": [scores.tobytes()], "n_gt": [int((~g_crowd).sum())], "n_dt": [d_t.num_rows]},
                    schema=CURVES_SCHEMA)


def combine(curves: pa.Table, labels: list[str], params: CocoParams | None = None) -> dict[str, Any]:
    """Stack per-category curves (any row order) and summarize: stats, per class, precision / scores arrays."""
    p = params or CocoParams()
    T, R, A, M = len(p.iou_thrs), len(p.rec_thrs), len(p.area_rng), len(p.max_dets)
    K = len(labels)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    n_gt = np.zeros(K, np.int64)
    n_dt = np.zeros(K, np.int64)
    for row in curves.to_pylist():  # one row per category
        k = row["cat"]
        precision[:, :, k] = np.frombuffer(row["precision"]).reshape(T, R, 1, A, M)[:, :, 0]
        recall[:, k] = np.frombuffer(row["recall"]).reshape(T, 1, A, M)[:, 0]
        scores[:, :, k] = np.frombuffer(row["scores"]).reshape(T, R, 1, A, M)[:, :, 0]
        n_gt[k], n_dt[k] = row["n_gt"], row["n_dt"]
    stats = summarize(precision, recall, p)
    a_all = p.area_lbl.index("all")
    ap = _masked_mean(precision[:, :, :, a_all, M - 1], k_axis=2)
    t50 = np.flatnonzero(np.asarray(p.iou_thrs) == .5)
    ap50 = _masked_mean(precision[t50][:, :, :, a_all, M - 1], k_axis=2)
    ar = _masked_mean(recall[:, :, a_all, M - 1], k_axis=1)
    per_class = [{"label": lab, "ap": float(ap[k]), "ap50": float(ap50[k]), "ar": float(ar[k]),
                  "gt": int(n_gt[k]), "predictions": int(n_dt[k])} for k, lab in enumerate(labels)]
    return {"stats": stats, "per_class": per_class, "precision": precision, "scores": scores, "recall": recall}


def pr_curves_table(precision: np.ndarray, scores: np.ndarray, labels: list[str],
                    params: CocoParams | None = None, area: str = "all", max_dets: int = 100) -> pa.Table:
    """PR curves as ``ModelRun.pr_curves`` returns them (label, iou_threshold, recall, precision, score)."""
    p = params or CocoParams()
    a = list(p.area_lbl).index(area)
    m = sorted(p.max_dets).index(max_dets)
    prec, sc = precision[:, :, :, a, m], scores[:, :, :, a, m]
    T, R, K = prec.shape
    t_idx, r_idx, k_idx = np.meshgrid(np.arange(T), np.arange(R), np.arange(K), indexing="ij")
    keep = prec.reshape(-1) > -1
    lab = np.asarray(labels, dtype=object)
    return pa.table({"label": pa.array(lab[k_idx.reshape(-1)[keep]], pa.string()),
                     "iou_threshold": np.asarray(p.iou_thrs)[t_idx.reshape(-1)[keep]],
                     "recall": np.asarray(p.rec_thrs)[r_idx.reshape(-1)[keep]],
                     "precision": prec.reshape(-1)[keep], "score": sc.reshape(-1)[keep]})
