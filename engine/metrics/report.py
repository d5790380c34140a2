"""Metrics of a run as dicts and Arrow tables: COCO stats, per class, PR curves, P/R/F1, confusion, errors.

COCO numbers come from :func:`engine.runs.evaluate.evaluate_run` (pycocotools semantics). A run's
last commit caches its full-dataset stats; any subset (slice, reference ids) or other label
version is evaluated afresh, which is cheap.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa

from udfs.matching import greedy_match

from ..errors import LoupeError
from .cocoeval import CocoParams
from .params import params_json
from ..runs.evaluate import evaluate_run, stats_dict
from ..runs.inputs import box_pairs, gather
from ..store import match_counts

if TYPE_CHECKING:
    from ..api.model import ModelRun
    from ..runs.evaluate import RunEvaluation

Subset = str | Sequence[str] | None


def subset_item_ids(run: "ModelRun", subset: Subset) -> np.ndarray | None:
    """Item ids of a slice (by name or a ``Slice``) or of a list of reference ids; None = every item."""
    if subset is None:
        return None
    store = run.ws.store
    if hasattr(subset, "item_ids_sql"):  # a Slice object: use it by name
        subset = subset.name
    if isinstance(subset, str):
        ds = run.dataset
        get_slice = getattr(ds, "get_slice", None)
        if get_slice is None:
            raise LoupeError("slices are not available in this build")
        refs = get_slice(subset).items().column("reference_id")
    else:
        refs = pa.array([str(r) for r in subset], pa.string())
    con = store.con
    con.register("__subset_refs", pa.table({"reference_id": refs}))
    try:
        found = con.execute(
            "SELECT r.reference_id, i.item_id FROM __subset_refs r LEFT JOIN items i "
            "ON i.reference_id = r.reference_id AND i.dataset_id = ?", [run.dataset_id]).fetchnumpy()
    finally:
        con.unregister("__subset_refs")
    ids = found["item_id"]
    if np.ma.isMaskedArray(ids) and ids.mask.any():
        bad = np.asarray(found["reference_id"], dtype=object)[ids.mask][0]
        raise LoupeError(f"unknown reference_id '{bad}' in dataset {run.dataset_name}")
    return np.unique(np.asarray(ids, dtype=np.int64))


def coco_metrics(run: "ModelRun", iou_type: str = "bbox", slice: Subset = None,
                 label_version: int | None = None, class_agnostic: bool = False,
                 params: CocoParams | None = None) -> dict[str, Any]:
    """The 12 COCO stats, per-class AP/AR and TP/FP/FN counts at IoU 0.5.

    ``params``: custom thresholds / max detections / area ranges (``engine.metrics.params``);
    counts are then at IoU 0.5 if it is one of the thresholds, else at the first one.
    """
    store = run.ws.store
    if slice is None:
        cached = _cached(run, iou_type, label_version, class_agnostic, params)
        if cached is not None:
            return cached
    items = subset_item_ids(run, slice)
    ev = evaluate_run(store, run.dataset_id, run.id, iou_type=iou_type, label_version=label_version,
                      item_ids=items, class_agnostic=class_agnostic, params=params)
    return metrics_of(ev)


def metrics_of(ev: "RunEvaluation") -> dict[str, Any]:
    """An evaluation's metrics dict (see :func:`coco_metrics`): stats, per class, counts at IoU 0.5."""
    r = ev.result
    inp = ev.inputs
    t50 = np.flatnonzero(np.asarray(r.params.iou_thrs) == 0.5)
    t50 = int(t50[0]) if len(t50) else 0
    dm, di = r.dt_match[t50], r.dt_ignore[t50]
    live = ~r.dt_dropped
    tp = int(((dm >= 0) & ~di & live).sum())
    fp = int(((dm < 0) & ~di & live).sum())
    gt_real = ~r.gt_ignore
    fn = int(((r.gt_match[t50] < 0) & gt_real).sum())
    n_gt = np.bincount(inp.gt.cat[~inp.gt.crowd], minlength=len(inp.labels))
    n_dt = np.bincount(inp.dt.cat, minlength=len(inp.labels))
    per_class = [{"label": lab, "ap": float(r.ap_per_class[k]), "ap50": float(r.ap50_per_class[k]),
                  "ar": float(r.ar_per_class[k]), "gt": int(n_gt[k]), "predictions": int(n_dt[k])}
                 for k, lab in enumerate(inp.labels)]
    return {"iou_type": ev.iou_type, "stats": stats_dict(r.stats), "per_class": per_class,
            "counts": {"tp": tp, "fp": fp, "fn": fn}}


def _cached(run: "ModelRun", iou_type: str, label_version: int | None, class_agnostic: bool,
            params: CocoParams | None = None) -> dict[str, Any] | None:
    store = run.ws.store
    cur_v = int(store.scalar("SELECT label_version FROM datasets WHERE dataset_id = ?", [run.dataset_id]))
    want_v = cur_v if label_version is None else int(label_version)
    row = store.con.execute(
        "SELECT stats::VARCHAR, per_class::VARCHAR FROM evaluations WHERE run_id = ? AND iou_type = ? "
        "AND label_version = ? AND class_agnostic = ?", [run.id, iou_type, want_v, bool(class_agnostic)]).fetchall()
    if not row:
        return None
    # counts at 0.5 come from the commit index when it was built at 0.5 with COCO matching
    stored = store.scalar("SELECT params::VARCHAR FROM runs WHERE run_id = ?", [run.id])
    p = json.loads(stored) if stored else {}
    if p.get("iou_threshold") != 0.5 or p.get("method") != "coco" or p.get("allowed_label_matches"):
        return None
    if p.get("coco_params") != params_json(params):  # stats cached for other thresholds / areas / maxDets
        return None
    counts = match_counts.run_totals(store, run.id)  # None: the per-item counts lag the matches rows
    if counts is None:
        counts = {(src, st): n for src, st, n in store.con.execute(
            "SELECT source, status, count(*) FROM matches WHERE run_id = ? GROUP BY ALL", [run.id]).fetchall()}
    return {"iou_type": iou_type, "stats": json.loads(row[0][0]), "per_class": json.loads(row[0][1]),
            "counts": {"tp": int(counts.get(("prediction", "tp"), 0)), "fp": int(counts.get(("prediction", "fp"), 0)),
                       "fn": int(counts.get(("gt", "fn"), 0))}}


def per_class_table(metrics: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(metrics["per_class"]) if metrics["per_class"] else pa.table(
        {"label": pa.array([], pa.string()), "ap": pa.array([], pa.float64())})


def pr_curves(run: "ModelRun", iou_type: str = "bbox", slice: Subset = None, label_version: int | None = None,
              area: str = "all", max_dets: int = 100) -> pa.Table:
    """Interpolated PR curves (101 recall points) per label and IoU threshold, pycocotools' arrays."""
    ev = evaluate_run(run.ws.store, run.dataset_id, run.id, iou_type=iou_type, label_version=label_version,
                      item_ids=subset_item_ids(run, slice))
    r = ev.result
    p = r.params
    a = list(p.area_lbl).index(area)
    m = sorted(p.max_dets).index(max_dets)
    prec = r.precision[:, :, :, a, m]  # T, R, K
    score = r.scores[:, :, :, a, m]
    T, R, K = prec.shape
    t_idx, r_idx, k_idx = np.meshgrid(np.arange(T), np.arange(R), np.arange(K), indexing="ij")
    keep = prec.reshape(-1) > -1
    labels = np.asarray(ev.inputs.labels, dtype=object)
    return pa.table({
        "label": pa.array(labels[k_idx.reshape(-1)[keep]], pa.string()),
        "iou_threshold": np.asarray(p.iou_thrs)[t_idx.reshape(-1)[keep]],
        "recall": np.asarray(p.rec_thrs)[r_idx.reshape(-1)[keep]],
        "precision": prec.reshape(-1)[keep],
        "score": score.reshape(-1)[keep],
    })


def _thresholded(run: "ModelRun", iou: float, confidence: float, slice: Subset, label_version: int | None,
                 class_agnostic: bool):
    """Greedy matching at one IoU over predictions with confidence >= ``confidence`` (all dets, no maxDets)."""
    store = run.ws.store
    inp = gather(store, run.dataset_id, run.id, label_version=label_version,
                 item_ids=subset_item_ids(run, slice), class_agnostic=class_agnostic)
    keep = inp.dt.score >= confidence
    pairs = box_pairs(store, inp, same_category=not class_agnostic)
    ok = keep[pairs.dt]
    group = inp.dt.img * max(len(inp.labels), 1) + inp.dt.cat
    m = greedy_match(group, inp.dt.score, inp.gt.crowd, pairs.dt[ok], pairs.gt[ok], pairs.iou[ok], iou)
    return inp, keep, m


def precision_recall(run: "ModelRun", iou: float = 0.5, confidence: float = 0.0, slice: Subset = None,
                     label_version: int | None = None) -> pa.Table:
    """TP/FP/FN, precision, recall and F1 per label (and ``*`` overall) at an IoU and confidence."""
    inp, keep, m = _thresholded(run, iou, confidence, slice, label_version, False)
    K = len(inp.labels)
    dcat = inp.dt.cat[keep]
    dtp = (m.dt_match[keep] >= 0) & ~m.dt_ignored[keep]
    dign = m.dt_ignored[keep]
    tp = np.bincount(dcat[dtp], minlength=K)
    fp = np.bincount(dcat[~dtp & ~dign], minlength=K)
    real = ~inp.gt.crowd
    fn = np.bincount(inp.gt.cat[real & (m.gt_match < 0)], minlength=K)
    labels = list(inp.labels) + ["*"]
    tp, fp, fn = (np.r_[a, a.sum()] for a in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        rec = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), np.nan)
    nan = lambda a: pa.array(a, pa.float64(), mask=np.isnan(a))  # noqa: E731
    return pa.table({"label": labels, "tp": tp, "fp": fp, "fn": fn, "precision": nan(prec), "recall": nan(rec),
                     "f1": nan(f1), "iou": np.full(len(labels), float(iou)),
                     "confidence": np.full(len(labels), float(confidence))})


def confusion_matrix(run: "ModelRun", iou: float = 0.5, confidence: float = 0.0, slice: Subset = None,
                     label_version: int | None = None) -> pa.Table:
    """Counts of (gt_label, pred_label) after class-agnostic greedy matching; 'background' for unmatched."""
    inp, keep, m = _thresholded(run, iou, confidence, slice, label_version, True)
    d_lab = inp.dt.label
    g_lab = inp.gt.label
    matched = keep & (m.dt_match >= 0) & ~m.dt_ignored
    rows_gt = list(g_lab[m.dt_match[matched]]) + ["background"] * int((keep & (m.dt_match < 0)).sum()) + \
        list(g_lab[(m.gt_match < 0) & ~inp.gt.crowd])
    rows_pred = list(d_lab[matched]) + list(d_lab[keep & (m.dt_match < 0)]) + \
        ["background"] * int(((m.gt_match < 0) & ~inp.gt.crowd).sum())
    t = pa.table({"gt_label": pa.array(rows_gt, pa.string()), "pred_label": pa.array(rows_pred, pa.string())})
    if t.num_rows == 0:
        return pa.table({"gt_label": pa.array([], pa.string()), "pred_label": pa.array([], pa.string()),
                         "count": pa.array([], pa.int64())})
    g = t.group_by(["gt_label", "pred_label"]).aggregate([([], "count_all")])
    g = g.rename_columns(["gt_label", "pred_label", "count"])
    return g.sort_by([("gt_label", "ascending"), ("pred_label", "ascending")])


def error_types(run: "ModelRun") -> pa.Table:
    """Counts of error types per label from the commit index (FP by predicted label, FN by GT label)."""
    store = run.ws.store
    if store.scalar("SELECT committed_at FROM runs WHERE run_id = ?", [run.id]) is None:
        raise LoupeError(f"run '{run.name}' is not committed; call run.commit() first")
    return store.arrow(
        """SELECT coalesce(p.label, a.label) AS label, m.error_type, count(*) AS count
           FROM matches m
           LEFT JOIN predictions p ON m.source = 'prediction' AND p.pred_key = m.pred_key
           LEFT JOIN annotations a ON m.source = 'gt' AND a.ann_key = m.ann_key
           WHERE m.run_id = ? AND m.status IN ('fp', 'fn')
           GROUP BY ALL ORDER BY label, error_type""", [run.id])
