"""What the labeling-tool formats (CVAT, Label Studio) exchange: the current labels of some items, as rows.

Only the kinds both tools edit travel: boxes, polygons (first ring) and image-level categories. Masks and
keypoints stay in the workspace untouched (they are counted as "kept" in the export summary).
"""
from __future__ import annotations

from pathlib import PurePath
from typing import Any

import pyarrow as pa

from ..errors import ValidationError

EXCHANGED_KINDS = ("box", "polygon", "category")

EXCHANGE_SCHEMA = pa.schema([
    ("reference_id", pa.string()), ("annotation_id", pa.string()), ("kind", pa.string()), ("label", pa.string()),
    ("x", pa.float64()), ("y", pa.float64()), ("width", pa.float64()), ("height", pa.float64()),
    ("polygon", pa.list_(pa.list_(pa.float64()))),
])


def image_name(item: dict[str, Any]) -> str:
    """The image's name in a tool: reference_id + the suffix of its file (tools key images by file name)."""
    return item["reference_id"] + PurePath(item["image_location"] or "").suffix


def name_resolver(items: list[dict[str, Any]]):
    """name -> reference_id: by :func:`image_name`, by stem == reference_id, or by the file's base name."""
    exact = {image_name(it): it["reference_id"] for it in items}
    refs = {it["reference_id"] for it in items}
    base: dict[str, list[str]] = {}
    for it in items:
        base.setdefault(PurePath(it["image_location"] or "").name, []).append(it["reference_id"])

    def resolve(name: str) -> str:
        leaf = PurePath(name.replace("\\", "/")).name
        if name in exact:
            return exact[name]
        if leaf in exact:
            return exact[leaf]
        stem = PurePath(leaf).stem
        if stem in refs:
            return stem
        hits = base.get(leaf, [])
        if len(hits) == 1:
            return hits[0]
        why = "matches several items" if hits else "matches no item of the dataset"
        raise ValidationError(f"image name '{name}' {why}", record=f"image '{name}'", field="name")

    return resolve
