"""Measure a label-error ranking against known errors (the sample data's ``truth.json``).

A suggestion *hits* a true error when it points at the erroneous object with a fix of the right
kind:

* ``missing`` / ``inconsistent_occluded`` (an object left out): a suggestion carrying a prediction box
  (missing_annotation, inconsistent_labeling, or any other) in the same image with IoU >= 0.3 with the
  object's visible box or >= 0.5 with its full (amodal) box — the nearest such error is taken;
* ``wrong_label`` / ``loose_box`` (an annotated object): a suggestion naming that annotation
  (``reference_id`` + ``annotation_id`` = the PennFudan object index).

Each error counts once: a second suggestion for an error already hit is a miss. precision@k = hits
in the top k / k, recall@k = distinct errors hit in the top k / all errors.

The baseline is the rule FiftyOne's detection-mistakes tutorial applies to a run's evaluation:
every unmatched prediction with confidence > 0.95 is a possible missing label, every unmatched GT a
possible spurious one. It has no ranking of its own; predictions come first (by confidence), then
unmatched GT by area, largest first.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa

from .patches import match_threshold

if TYPE_CHECKING:
    from ..api.model import ModelRun

ADD_REASONS = ("missing", "inconsistent_occluded")
KS = (10, 25, 50, 100)


def truth_errors(truth_path: str | Path) -> list[dict[str, Any]]:
    """The injected errors with the object's visible and amodal boxes (annotation id for GT errors).

    ``loose_box`` errors of the sample data are loose *text* boxes beside a tight mask: the PennFudan
    importer stores the mask box (the text box only as ``txt_box`` metadata), so the stored labels hold
    no such error and a fix would change nothing; they are left out.
    """
    truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    out = []
    for e in truth["errors"]:
        if e["reason"] == "loose_box" and e.get("mask_index") is not None:
            continue
        obj = next(o for o in truth["images"][e["reference_id"]]["objects"] if o["id"] == e["object_id"])
        out.append({"reference_id": e["reference_id"], "reason": e["reason"], "box": obj["box"],
                    "amodal_box": obj["amodal_box"],
                    "annotation_id": None if e["mask_index"] is None else str(e["mask_index"])})
    return out


def _iou(a: Sequence[float], b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, float).reshape(-1, 4)
    ix = np.maximum(0, np.minimum(a[0] + a[2], b[:, 0] + b[:, 2]) - np.maximum(a[0], b[:, 0]))
    iy = np.maximum(0, np.minimum(a[1] + a[3], b[:, 1] + b[:, 3]) - np.maximum(a[1], b[:, 1]))
    inter = ix * iy
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_suggestions(suggestions: pa.Table, errors: list[dict[str, Any]]) -> np.ndarray:
    """Per suggestion (in order): the index of the true error it hits first, or -1."""
    by_ref: dict[str, list[int]] = {}
    for j, e in enumerate(errors):
        by_ref.setdefault(e["reference_id"], []).append(j)
    by_ann = {(e["reference_id"], e["annotation_id"]): j for j, e in enumerate(errors)
              if e["reason"] not in ADD_REASONS and e["annotation_id"] is not None}
    rows = suggestions.select(["reference_id", "annotation_id", "prediction_id", "x", "y", "width",
                               "height"]).to_pylist()
    taken = np.zeros(len(errors), bool)
    out = np.full(len(rows), -1, np.int64)
    for i, r in enumerate(rows):  # a few hundred rows: plain Python is fine here
        j = -1
        if r["annotation_id"] is not None:
            j = by_ann.get((r["reference_id"], r["annotation_id"]), -1)
        elif r["x"] is not None:
            cands = [k for k in by_ref.get(r["reference_id"], []) if errors[k]["reason"] in ADD_REASONS
                     and errors[k]["box"] is not None]
            if cands:
                box = (r["x"], r["y"], r["width"], r["height"])
                vis = _iou(box, np.array([errors[k]["box"] for k in cands]))
                amo = _iou(box, np.array([errors[k]["amodal_box"] for k in cands]))
                ok = (vis >= 0.3) | (amo >= 0.5)
                if ok.any():
                    j = cands[int(np.argmax(np.where(ok, np.maximum(vis, amo), -1)))]
        if j >= 0 and not taken[j]:
            taken[j] = True
            out[i] = j
    return out


def precision_recall_at(hits: np.ndarray, n_errors: int, ks: Sequence[int] = KS) -> list[dict[str, Any]]:
    """precision@k and recall@k rows (k capped at the list length; precision over k itself)."""
    rows = []
    for k in ks:
        h = hits[:k] >= 0
        rows.append({"k": int(k), "suggestions": int(min(k, len(hits))), "hits": int(h.sum()),
                     "precision": float(h.sum() / k) if k else 0.0,
                     "recall": float(h.sum() / n_errors) if n_errors else 0.0})
    return rows


def fiftyone_baseline(run: "ModelRun", confidence: float = 0.95, iou_threshold: float | None = None) -> pa.Table:
    """FiftyOne's rule on the committed run: unmatched predictions above ``confidence`` = possible missing
    (by confidence), then every unmatched GT = possible spurious (largest first)."""
    store = run.ws.store
    thr = match_threshold(store, run.id, iou_threshold)
    return store.arrow(
        """SELECT * FROM (
               SELECT 'missing_annotation' AS reason, i.reference_id, NULL::VARCHAR AS annotation_id,
                      p.annotation_id AS prediction_id, p.x, p.y, p.width, p.height, p.confidence AS score, 0 AS grp
               FROM matches m JOIN predictions p ON p.pred_key = m.pred_key JOIN items i ON i.item_id = p.item_id
               WHERE m.run_id = $run AND m.iou_threshold = $thr AND m.source = 'prediction' AND m.status = 'fp'
                 AND p.confidence > $conf
               UNION ALL
               SELECT 'spurious_gt', i.reference_id, a.annotation_id, NULL, a.x, a.y, a.width, a.height,
                      a.width * a.height, 1
               FROM matches m JOIN annotations a ON a.ann_key = m.ann_key JOIN items i ON i.item_id = a.item_id
               WHERE m.run_id = $run AND m.iou_threshold = $thr AND m.source = 'gt' AND m.status = 'fn')
           ORDER BY grp, score DESC, reference_id, annotation_id, prediction_id""",
        {"run": run.id, "thr": thr, "conf": float(confidence)})


def evaluate_ranking(suggestions: pa.Table, truth_path: str | Path, ks: Sequence[int] = KS) -> dict[str, Any]:
    """precision/recall at k of a ranking, and recall per error reason over the whole list."""
    errors = truth_errors(truth_path)
    hits = match_suggestions(suggestions, errors)
    per_reason: dict[str, list[int]] = {}
    for e in errors:
        per_reason.setdefault(e["reason"], [0, 0])[1] += 1
    for j in hits[hits >= 0]:
        per_reason[errors[j]["reason"]][0] += 1
    return {"at_k": precision_recall_at(hits, len(errors), ks), "n_errors": len(errors),
            "n_suggestions": int(suggestions.num_rows), "hits": hits,
            "recall_by_reason": {r: {"found": f, "total": t} for r, (f, t) in sorted(per_reason.items())}}
