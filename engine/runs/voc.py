"""Pascal VOC AP of a stored run: SQL inputs and box IoU pairs → the VOC kernel (engine.metrics.voc).

``difficult`` is read from the GT annotation's metadata (VOC XML imports store it there; COCO files
carrying a ``difficult`` key keep it there too); crowd GT counts as difficult. ``plus_one`` uses the
VOC devkit's inclusive-pixel box convention: widths and heights are ``x2 - x1 + 1`` for the areas and
the intersection. Loupe's VOC XML import already stores ``width = xmax - xmin + 1`` with
``x = xmin - 1``, so VOC-imported boxes give the devkit's numbers without it; use it for boxes given
as inclusive pixel corners (x2 = x + w), as other VOC tools read them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from ..metrics.voc import VocResult, voc_evaluate
from engine.store.database import Store
from .inputs import EvalInputs, gather

# Same-label pairs in the same image with their VOC IoU; $one is 1.0 for the "+1 pixel" convention.
_PAIRS_SQL = """
WITH j AS (
    SELECT d.di, g.gi,
           least(d.x + d.w, g.x + g.w) - greatest(d.x, g.x) + $one AS iw,
           least(d.y + d.h, g.y + g.h) - greatest(d.y, g.y) + $one AS ih,
           (d.w + $one) * (d.h + $one) + (g.w + $one) * (g.h + $one) AS areas
    FROM __voc_d d JOIN __voc_g g ON d.img = g.img AND d.cat = g.cat
)
SELECT di, gi, iw * ih / (areas - iw * ih) AS iou FROM j WHERE iw > 0 AND ih > 0
"""

_DIFFICULT_SQL = """
SELECT coalesce(lower(json_extract_string(a.metadata, '$.difficult')) IN ('1', 'true'), false) AS difficult
FROM __voc_k k JOIN annotations a ON a.ann_key = k.key ORDER BY k.pos
"""


def _difficult(store: Store, keys: np.ndarray) -> np.ndarray:
    con = store.con
    con.register("__voc_k", pa.table({"key": keys, "pos": np.arange(len(keys))}))
    try:
        out = con.execute(_DIFFICULT_SQL).fetchnumpy()["difficult"]
    finally:
        con.unregister("__voc_k")
    return np.asarray(out, dtype=bool)


def voc_pairs(store: Store, inp: EvalInputs, plus_one: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(detection, GT, IoU) for overlapping same-label boxes in the same image."""
    con = store.con
    g, d = inp.gt, inp.dt
    con.register("__voc_g", pa.table({"gi": np.arange(len(g)), "img": g.img, "cat": g.cat, "x": g.x, "y": g.y,
                                      "w": g.w, "h": g.h}))
    con.register("__voc_d", pa.table({"di": np.arange(len(d)), "img": d.img, "cat": d.cat, "x": d.x, "y": d.y,
                                      "w": d.w, "h": d.h}))
    try:
        r = con.execute(_PAIRS_SQL, {"one": 1.0 if plus_one else 0.0}).fetchnumpy()
    finally:
        con.unregister("__voc_g")
        con.unregister("__voc_d")
    return (np.asarray(r["di"], np.int64), np.asarray(r["gi"], np.int64), np.asarray(r["iou"], np.float64))


def voc_run(store: Store, dataset_id: int, run_id: int, iou_threshold: float = 0.5, eleven_point: bool = False,
            plus_one: bool = False, label_version: int | None = None,
            item_ids: Sequence[int] | None = None) -> tuple[EvalInputs, VocResult]:
    """VOC AP of a run's boxes against the GT boxes (at a label version, on all or some items)."""
    thr = float(iou_threshold)
    if not 0 < thr <= 1:
        raise ValidationError(f"must be in (0, 1], got {iou_threshold}", field="iou_threshold")
    inp = gather(store, dataset_id, run_id, label_version=label_version, item_ids=item_ids)
    diff = _difficult(store, inp.gt.key) | inp.gt.crowd
    pd, pg, piou = voc_pairs(store, inp, plus_one)
    res = voc_evaluate(inp.gt.img, inp.gt.cat, diff, inp.dt.img, inp.dt.cat, inp.dt.score, pd, pg, piou,
                       len(inp.labels), thr, eleven_point)
    return inp, res


def voc_report(inp: EvalInputs, res: VocResult) -> dict[str, Any]:
    """``{"mAP": ..., "per_class": {label: AP}}`` over the labels with non-difficult GT."""
    return {"mAP": res.mAP,
            "per_class": {lab: float(res.ap[k]) for k, lab in enumerate(inp.labels) if res.n_pos[k] > 0}}
