"""The Nucleus client's record classes, with its argument names and order, converted to Loupe's records.

``nucleus.BoxAnnotation(label, x, y, width, height, reference_id, annotation_id, metadata, ...)`` takes
its arguments positionally in the client's order; :func:`to_loupe` turns a list of them into Loupe's
own records (engine.api.records), which then take Loupe's one Arrow path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from ..api import records as lr
from .offline import NotAvailableOffline


@dataclass
class DatasetItem:
    """An image: ``image_location`` (a local path), ``reference_id`` and metadata, as in Nucleus."""

    image_location: Optional[str] = None
    reference_id: Optional[str] = None
    metadata: Optional[dict] = None
    pointcloud_location: Optional[str] = None
    embedding_info: Any = None
    width: Optional[int] = None
    height: Optional[int] = None

    def to_loupe(self) -> lr.DatasetItem:
        if self.pointcloud_location is not None:
            raise NotAvailableOffline("point-cloud items (pointcloud_location)")
        return lr.DatasetItem(image_location=self.image_location, reference_id=self.reference_id,
                              metadata=self.metadata, width=self.width, height=self.height)


Point = lr.Point  # the same (x, y) point as Loupe's own records


@dataclass
class Keypoint:
    """A keypoint; ``visible=False`` or missing coordinates are COCO visibility 0, else 2."""

    x: Optional[float] = None
    y: Optional[float] = None
    visible: bool = True


@dataclass
class Segment:
    """One class of a segmentation mask: the pixels equal to ``index`` carry ``label``."""

    label: str
    index: Optional[int] = None
    metadata: Optional[dict] = None


@dataclass
class BoxAnnotation:
    label: str
    x: Union[float, int]
    y: Union[float, int]
    width: Union[float, int]
    height: Union[float, int]
    reference_id: str
    annotation_id: Optional[str] = None
    metadata: Optional[Dict] = None
    embedding_vector: Optional[list] = None
    track_reference_id: Optional[str] = None


@dataclass
class PolygonAnnotation:
    label: str
    vertices: List[Point]
    reference_id: str
    annotation_id: Optional[str] = None
    metadata: Optional[Dict] = None
    embedding_vector: Optional[list] = None
    track_reference_id: Optional[str] = None


@dataclass
class KeypointsAnnotation:
    label: str
    keypoints: List[Keypoint]
    names: List[str]
    reference_id: str
    skeleton: Optional[List[List[int]]] = None
    annotation_id: Optional[str] = None
    metadata: Optional[Dict] = None
    track_reference_id: Optional[str] = None


@dataclass
class SegmentationAnnotation:
    """A semantic/instance mask PNG (a LOCAL path here) whose pixel values index ``annotations``."""

    mask_url: str
    annotations: List[Segment]
    reference_id: str
    annotation_id: Optional[str] = None


@dataclass
class CategoryAnnotation:
    label: str
    reference_id: str
    taxonomy_name: Optional[str] = None
    metadata: Optional[Dict] = None
    track_reference_id: Optional[str] = None


class BoxPrediction(BoxAnnotation):
    def __init__(self, label: str, x: Union[float, int], y: Union[float, int], width: Union[float, int],
                 height: Union[float, int], reference_id: str, confidence: Optional[float] = None,
                 annotation_id: Optional[str] = None, metadata: Optional[Dict] = None,
                 class_pdf: Optional[Dict] = None, embedding_vector: Optional[list] = None,
                 track_reference_id: Optional[str] = None):
        super().__init__(label, x, y, width, height, reference_id, annotation_id, metadata, embedding_vector,
                         track_reference_id)
        self.confidence = confidence
        self.class_pdf = class_pdf


class PolygonPrediction(PolygonAnnotation):
    def __init__(self, label: str, vertices: List[Point], reference_id: str, confidence: Optional[float] = None,
                 annotation_id: Optional[str] = None, metadata: Optional[Dict] = None,
                 class_pdf: Optional[Dict] = None, embedding_vector: Optional[list] = None,
                 track_reference_id: Optional[str] = None):
        super().__init__(label, vertices, reference_id, annotation_id, metadata, embedding_vector, track_reference_id)
        self.confidence = confidence
        self.class_pdf = class_pdf


class KeypointsPrediction(KeypointsAnnotation):
    def __init__(self, label: str, keypoints: List[Keypoint], names: List[str], skeleton: List[List[int]],
                 reference_id: str, confidence: Optional[float] = None, annotation_id: Optional[str] = None,
                 metadata: Optional[Dict] = None, class_pdf: Optional[Dict] = None,
                 track_reference_id: Optional[str] = None):
        super().__init__(label, keypoints, names, reference_id, skeleton, annotation_id, metadata, track_reference_id)
        self.confidence = confidence
        self.class_pdf = class_pdf


class SegmentationPrediction(SegmentationAnnotation):
    """Nucleus stores no confidence on segmentation predictions; neither does this."""


class CategoryPrediction(CategoryAnnotation):
    def __init__(self, label: str, reference_id: str, taxonomy_name: Optional[str] = None,
                 confidence: Optional[float] = None, metadata: Optional[Dict] = None,
                 class_pdf: Optional[Dict] = None, track_reference_id: Optional[str] = None):
        super().__init__(label, reference_id, taxonomy_name, metadata, track_reference_id)
        self.confidence = confidence
        self.class_pdf = class_pdf


def _pred(o: Any) -> dict[str, Any]:
    if not hasattr(o, "confidence"):
        return {}
    return {"confidence": o.confidence, "class_pdf": o.class_pdf}


def _local_mask(url: str, reference_id: str) -> str:
    if "://" in url:
        raise NotAvailableOffline(f"remote mask_url '{url}' (item '{reference_id}'): give a local PNG path")
    if not Path(url).is_file():
        from ..errors import ValidationError

        raise ValidationError(f"mask file not found: {url}", record=f"reference_id '{reference_id}'",
                              field="mask_url")
    return url


def to_loupe(objs: Iterable[Any], predictions: bool = False) -> list[Any]:
    """Nucleus annotation/prediction objects → Loupe records (predictions keep confidence and class_pdf)."""
    out: list[Any] = []
    for o in objs:
        extra = _pred(o) if predictions else {}
        is_pred = predictions
        base = {"label": getattr(o, "label", ""), "reference_id": o.reference_id, "annotation_id": o.annotation_id}
        if isinstance(o, BoxAnnotation):
            cls = lr.BoxPrediction if is_pred else lr.BoxAnnotation
            out.append(cls(**base, metadata=o.metadata, x=o.x, y=o.y, width=o.width, height=o.height, **extra))
        elif isinstance(o, PolygonAnnotation):
            cls = lr.PolygonPrediction if is_pred else lr.PolygonAnnotation
            verts = [(v.x, v.y) if isinstance(v, Point) else (v["x"], v["y"]) if isinstance(v, dict) else tuple(v)
                     for v in o.vertices]
            out.append(cls(**base, metadata=o.metadata, vertices=verts, **extra))
        elif isinstance(o, KeypointsAnnotation):
            cls = lr.KeypointsPrediction if is_pred else lr.KeypointsAnnotation
            kps = [(0.0, 0.0, 0) if (not k.visible or k.x is None or k.y is None) else (k.x, k.y, 2)
                   for k in o.keypoints]
            out.append(cls(**base, metadata=o.metadata, keypoints=kps, names=list(o.names) if o.names else None,
                           **extra))
        elif isinstance(o, SegmentationAnnotation):
            path = _local_mask(o.mask_url, o.reference_id)
            cls = lr.SegmentationPrediction if is_pred else lr.SegmentationAnnotation
            for seg in o.annotations:
                seg_id = f"{o.annotation_id or o.reference_id}:{seg.index}"
                out.append(cls.from_png(path, int(seg.index), seg.label, o.reference_id, annotation_id=seg_id,
                                        metadata=seg.metadata))
        elif isinstance(o, CategoryAnnotation):
            cls = lr.CategoryPrediction if is_pred else lr.CategoryAnnotation
            out.append(cls(**base, metadata=o.metadata, taxonomy_name=o.taxonomy_name, **extra))
        else:
            from ..errors import ValidationError

            raise ValidationError(f"not a Nucleus annotation: {type(o).__name__}",
                                  record=f"reference_id '{getattr(o, 'reference_id', '?')}'", field="type")
    return out


def from_loupe_item(row: dict[str, Any]) -> DatasetItem:
    """A row of ``Dataset.items()`` → a Nucleus DatasetItem."""
    import json

    meta = row.get("metadata")
    return DatasetItem(image_location=row["image_location"], reference_id=row["reference_id"],
                       metadata=json.loads(meta) if isinstance(meta, str) else meta,
                       width=row.get("width"), height=row.get("height"))


__all__ = ["DatasetItem", "Point", "Keypoint", "Segment", "BoxAnnotation", "PolygonAnnotation",
           "KeypointsAnnotation", "SegmentationAnnotation", "CategoryAnnotation", "BoxPrediction",
           "PolygonPrediction", "KeypointsPrediction", "SegmentationPrediction", "CategoryPrediction",
           "to_loupe"]
