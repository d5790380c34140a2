"""Prediction uncertainty from a run's confidences / class distributions, per prediction and per item.

With a ``class_pdf`` the probabilities are its values (scaled to sum 1); without, a binary distribution
(confidence, 1 - confidence). Methods, each in [0, 1] (1 = most uncertain):
- ``entropy``: -sum p ln p / ln K (K classes; normalised so methods compare);
- ``margin``: 1 - (p1 - p2), the two highest probabilities;
- ``least_confidence``: 1 - p1.
An item's uncertainty is that of its most uncertain prediction (NULL without predictions), so items with
one confusing object rank high, as in detection active-learning practice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ValidationError
from queries.scores import UNCERTAINTY_METHODS

if TYPE_CHECKING:
    from engine.api.model import ModelRun


def scores(probs: list[np.ndarray], method: str) -> np.ndarray:
    """Uncertainty of each probability vector (already >= 0; scaled to sum 1 here). Vectorised over a padded matrix."""
    if method not in UNCERTAINTY_METHODS:
        raise ValidationError(f"method must be one of {', '.join(UNCERTAINTY_METHODS)}, got {method!r}", field="method")
    n = len(probs)
    if n == 0:
        return np.zeros(0)
    width = max(2, max(len(p) for p in probs))
    m = np.zeros((n, width))
    k = np.array([len(p) for p in probs])
    for i, p in enumerate(probs):  # ragged -> padded (one short copy per row; the math below is vectorised)
        m[i, :len(p)] = p
    tot = m.sum(axis=1, keepdims=True)
    m = np.divide(m, tot, out=np.zeros_like(m), where=tot > 0)
    if method == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(m > 0, m * np.log(m), 0.0).sum(axis=1)
        return np.where(k > 1, h / np.log(np.maximum(k, 2)), 0.0)
    top = -np.sort(-m, axis=1)
    if method == "margin":
        return 1.0 - (top[:, 0] - top[:, 1])
    return 1.0 - top[:, 0]


def per_prediction(run: "ModelRun", method: str = "entropy", keys: bool = False) -> pa.Table:
    """One row per prediction of the run: ``reference_id``, ``annotation_id``, ``label``, ``confidence``,
    ``uncertainty`` (plus ``pred_key``, ``item_id`` with ``keys=True``)."""
    if method not in UNCERTAINTY_METHODS:
        raise ValidationError(f"method must be one of {', '.join(UNCERTAINTY_METHODS)}, got {method!r}", field="method")
    t = run.ws.store.arrow(
        """SELECT p.pred_key, p.item_id, i.reference_id, p.annotation_id, p.label, p.confidence,
                  map_values(p.class_pdf) AS pdf
           FROM predictions p JOIN items i USING (item_id) WHERE p.run_id = $run ORDER BY p.seq""", {"run": run.id})
    conf = t.column("confidence").to_numpy(zero_copy_only=False).astype(float)
    pdf = t.column("pdf").to_pylist()
    has_pdf = np.array([p is not None and len(p) > 0 for p in pdf])
    probs = [np.asarray(p, float) if h else np.array([c, 1.0 - c]) for p, h, c in zip(pdf, has_pdf, conf)]
    u = scores(probs, method)
    u[~has_pdf & np.isnan(conf)] = np.nan  # neither a distribution nor a confidence
    out = t.drop_columns(["pdf"]).append_column("uncertainty", pa.array(u, from_pandas=True))
    return out if keys else out.drop_columns(["pred_key", "item_id"])


def per_item(pred: pa.Table) -> pa.Table:
    """Max uncertainty per item of a ``per_prediction(..., keys=True)`` table: item_id, reference_id, uncertainty."""
    g = pred.filter(pc.invert(pc.is_nan(pred.column("uncertainty")))).group_by(["item_id", "reference_id"]) \
        .aggregate([("uncertainty", "max"), ("uncertainty", "count")])
    return pa.table({"item_id": g.column("item_id"), "reference_id": g.column("reference_id"),
                     "uncertainty": g.column("uncertainty_max"), "predictions": g.column("uncertainty_count")})


def uncertainty(run: "ModelRun", method: str = "entropy", per: str = "prediction") -> pa.Table:
    """See ``ModelRun.uncertainty``."""
    if per not in ("prediction", "item"):
        raise ValidationError(f"per must be 'prediction' or 'item', got {per!r}", field="per")
    t = per_prediction(run, method, keys=per == "item")
    if per == "prediction":
        return t
    it = per_item(t)
    order = pc.sort_indices(it, [("uncertainty", "descending"), ("item_id", "ascending")])
    return it.take(order).drop_columns(["item_id"])
