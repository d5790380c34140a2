"""The fields of the query language: names, types and one-line meanings (the reference page lists them).

Item-level fields describe an item (and, in a run, its predictions); object-level fields describe one
ground-truth annotation or prediction with its match row. The compiler (``compiler.py``) maps each to SQL.
"""
from __future__ import annotations

from .catalog import BOOLEAN, NUMBER, STRING

KINDS = ("box", "polygon", "segmentation", "category", "keypoints")
STATUSES = ("tp", "fp", "fn", "ignored")
SOURCES = ("gt", "prediction")

# item-level columns of `items`
ITEM_COLUMNS: dict[str, tuple[str, str]] = {
    "reference_id": (STRING, "the item's unique id in the dataset"),
    "image_location": (STRING, "path or URL of the image"),
    "width": (NUMBER, "image width in pixels"),
    "height": (NUMBER, "image height in pixels"),
}

# annotations.<name>: per-item counts of current ground truth
ANNOTATION_AGGREGATES: dict[str, str] = {
    "count": "number of ground-truth annotations on the item",
}

# predictions.<name> (in a run): per-item statistics of the run's predictions and matches
PREDICTION_AGGREGATES: dict[str, tuple[str, str]] = {
    "count": ("predictions", "number of predictions on the item"),
    "tp": ("matches", "true-positive predictions on the item"),
    "fp": ("matches", "false-positive predictions on the item"),
    "fn": ("matches", "ground-truth objects the run missed (false negatives) on the item"),
    "max_confidence": ("predictions", "highest prediction confidence on the item"),
    "min_confidence": ("predictions", "lowest prediction confidence on the item"),
    "avg_confidence": ("predictions", "mean prediction confidence on the item"),
    "max_iou": ("matches", "best IoU of a true-positive prediction on the item"),
    "min_iou": ("matches", "worst IoU of a true-positive prediction on the item"),
}
LABEL_STATS = ("count", "tp", "fp", "fn")  # predictions.<label>.<stat>
# the counts among them read from `matches`: stat -> (matches.source, matches.status) of the rows counted
MATCH_COUNTS: dict[str, tuple[str, str]] = {"tp": ("prediction", "tp"), "fp": ("prediction", "fp"), "fn": ("gt", "fn")}

# bare item-level names that stand for predictions.<name> (need a run)
ITEM_ALIASES = ("max_iou", "min_iou", "max_confidence", "min_confidence", "avg_confidence")

# object-level fields: name -> (type, meaning)
OBJECT_FIELDS: dict[str, tuple[str, str]] = {
    "source": (STRING, '"gt" for ground truth, "prediction" for a prediction'),
    "label": (STRING, "class label"),
    "kind": (STRING, "box, polygon, segmentation, category or keypoints"),
    "annotation_id": (STRING, "the object's id (annotation_id of the GT or the prediction)"),
    "x": (NUMBER, "left edge of the box, pixels"),
    "y": (NUMBER, "top edge of the box, pixels"),
    "width": (NUMBER, "box width, pixels"),
    "height": (NUMBER, "box height, pixels"),
    "area": (NUMBER, "area in pixels (mask or polygon area when there is one, else width * height)"),
    "aspect": (NUMBER, "width / height of the box"),
    "iscrowd": (BOOLEAN, "COCO crowd flag (ground truth)"),
    "confidence": (NUMBER, "prediction confidence (NULL for ground truth)"),
    "iou": (NUMBER, "IoU with the matched partner (NULL when unmatched)"),
    "best_iou": (NUMBER, "best IoU with any object of any label on the other side"),
    "status": (STRING, '"tp", "fp", "fn" or "ignored" (NULL without a committed run)'),
    "error_type": (STRING, "error type of an fp / fn (from the run's commit)"),
    "reference_id": (STRING, "reference_id of the object's item (same as item.reference_id)"),
}

FUNCTIONS: dict[str, str] = {
    "slice": 'slice("name"): membership in a slice of the dataset',
    "predictions": 'predictions("run").<field>: a prediction statistic of another run',
    "abs": "abs(x): absolute value",
    "round": "round(x) or round(x, digits)",
    "floor": "floor(x)",
    "ceil": "ceil(x)",
    "sqrt": "sqrt(x)",
    "lower": "lower(s): lower-case string",
    "upper": "upper(s): upper-case string",
    "length": "length(s): number of characters",
    "similarity": 'similarity("set", "id", ...): cosine similarity to the given items (scores.py)',
    "uniqueness": 'uniqueness("set"): FiftyOne-style uniqueness in [0, 1]',
    "uncertainty": 'uncertainty("entropy" | "margin" | "least_confidence"): prediction uncertainty (in a run)',
}


def item_field_names() -> list[str]:
    """Every fixed item-level name (for suggestions and the docs test)."""
    names = list(ITEM_COLUMNS) + ["metadata.<key>", "annotations.count", "annotations.<label>",
                                  "annotations.<kind>.count"]
    names += [f"predictions.{k}" for k in PREDICTION_AGGREGATES] + ["predictions.<label>"]
    names += [f"predictions.<label>.{s}" for s in LABEL_STATS] + list(ITEM_ALIASES)
    return names


def object_field_names() -> list[str]:
    return list(OBJECT_FIELDS) + ["metadata.<key>", "item.<field>", "item.metadata.<key>"]
