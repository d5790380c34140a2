"""``loupe eval`` for boxes: a COCO ground-truth + results pair evaluated without storing the results.

The ground truth goes into the (throwaway) workspace as an import stores it; the detections are
checked by every rule a stored run passes (:func:`engine.ingest.annotations.validate_predictions`)
and evaluated straight from their Arrow columns. Writing 500,000 predictions into DuckDB only to
read them back cost ~0.45 s CPU of a 2.3 s process. Same inputs, order and numbers as importing the
pair and calling ``run.metrics()`` (tests/oracle/test_eval_full_path.py holds them equal).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ingest.annotations import validate_predictions
from ..io._common import Progress, write_import
from ..io.coco import load_json, parse_gt, results_reader
from ..metrics.cocoeval import CocoParams
from ..metrics.report import metrics_of
from .evaluate import evaluate_unstored

if TYPE_CHECKING:
    from ..api.workspace import Workspace


def evaluate_coco_pair(ws: "Workspace", gt: str | Path, results: str | Path, params: CocoParams | None = None,
                       dataset: str = "gt", progress: Progress | None = None) -> dict[str, Any]:
    """COCO box metrics of a results file against an instances file (``ModelRun.metrics``' dict).

    The ground truth is imported into ``ws`` as dataset ``dataset`` (no image checks, boxes kept as
    given, masks that do not fit their image dropped with a warning: a box evaluation never reads
    them); the results are validated as an import would, and refused the same way, but not stored.
    """
    with results_reader(results) as predictions_for:  # DuckDB reads the results while the GT is parsed and stored
        items, anns, index, patch = parse_gt(load_json(gt), None, bad_masks="drop")
        write_import(ws, dataset, items, anns, check_images=False, clip="keep", metadata=patch, progress=progress)
        del items, anns
        preds = predictions_for(index)
    ds_id = ws.get_dataset(dataset).id
    checked = validate_predictions(ws.store, ds_id, preds, clip="keep")
    del preds
    return metrics_of(evaluate_unstored(ws.store, ds_id, checked, params))
