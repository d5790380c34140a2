"""Loupe ground truth → the client's ``items_and_annotations`` shape (records grouped by kind per item)."""
from __future__ import annotations

import json
from typing import Any

from .records import BoxAnnotation, CategoryAnnotation, Keypoint, KeypointsAnnotation, Point, PolygonAnnotation, \
    from_loupe_item

_KIND_KEY = {"box": "box", "polygon": "polygon", "keypoints": "keypoints", "category": "category",
             "segmentation": "segmentation"}


def _record(r: dict[str, Any]) -> Any:
    meta = json.loads(r["metadata"]) if r["metadata"] else None
    kind = r["kind"]
    if kind == "box":
        return BoxAnnotation(r["label"], r["x"], r["y"], r["width"], r["height"], r["reference_id"],
                             r["annotation_id"], meta)
    if kind == "polygon":
        ring = (r["polygon"] or [[]])[0]
        return PolygonAnnotation(r["label"], [Point(ring[i], ring[i + 1]) for i in range(0, len(ring), 2)],
                                 r["reference_id"], r["annotation_id"], meta)
    if kind == "keypoints":
        k = r["keypoints"] or []
        kps = [Keypoint(k[i], k[i + 1], bool(k[i + 2])) for i in range(0, len(k), 3)]
        return KeypointsAnnotation(r["label"], kps, list(r["keypoint_names"] or []), r["reference_id"],
                                   annotation_id=r["annotation_id"], metadata=meta)
    if kind == "category":
        return CategoryAnnotation(r["label"], r["reference_id"], metadata=meta)
    return r  # masks stay Loupe rows (RLE): the client's form is a PNG URL


def annotations_by_item(ds: Any) -> list[dict[str, Any]]:
    """``[{"item": DatasetItem, "annotations": {"box": [...], "polygon": [...], ...}}]`` in dataset order."""
    rows: dict[str, dict[str, Any]] = {}
    for it in ds.items().to_pylist():
        rows[it["reference_id"]] = {"item": from_loupe_item(it), "annotations": {k: [] for k in _KIND_KEY.values()}}
    for r in ds.annotations().to_pylist():
        rows[r["reference_id"]]["annotations"][_KIND_KEY.get(r["kind"], r["kind"])].append(_record(r))
    return list(rows.values())
