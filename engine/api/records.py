"""User-facing record types, named after the Nucleus client.

These are conveniences for small batches built in Python. Every bulk method also takes a
``pyarrow.Table`` with the columns of :data:`engine.ingest.schema.ANNOTATION_COLUMNS`; objects are
turned into exactly such a table by :func:`to_table` and then take the same Arrow path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa


@dataclass
class DatasetItem:
    """An image: a local path or URL, a unique ``reference_id`` and free JSON metadata.

    Example:
        >>> DatasetItem(image_location="img/0001.png", reference_id="0001", metadata={"camera": "rear"})
    """

    image_location: str | None = None
    reference_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Keypoint:
    x: float
    y: float
    visible: int = 2


@dataclass
class _Base:
    label: str = ""
    reference_id: str = ""
    annotation_id: str | None = None
    metadata: Mapping[str, Any] | None = None

    kind: str = field(init=False, default="")

    def _geometry(self) -> dict[str, Any]:
        return {}


@dataclass
class BoxAnnotation(_Base):
    """An axis-aligned box: top-left ``x``, ``y``, ``width``, ``height`` in pixels."""

    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    iscrowd: bool = False
    area: float | None = None

    def __post_init__(self) -> None:
        self.kind = "box"

    def _geometry(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height,
                "iscrowd": self.iscrowd, "area": self.area}


@dataclass
class PolygonAnnotation(_Base):
    """A polygon given by its vertices (``Point`` or ``(x, y)``); COCO multi-ring via ``polygons``."""

    vertices: Sequence[Point | tuple[float, float]] = ()
    polygons: Sequence[Sequence[float]] | None = None
    iscrowd: bool = False
    area: float | None = None

    def __post_init__(self) -> None:
        self.kind = "polygon"

    def _geometry(self) -> dict[str, Any]:
        rings = self.polygons
        if rings is None:
            flat: list[float] = []
            for v in self.vertices:
                x, y = (v.x, v.y) if isinstance(v, Point) else v
                flat += [float(x), float(y)]
            rings = [flat]
        return {"polygon": [list(map(float, r)) for r in rings], "iscrowd": self.iscrowd, "area": self.area}


@dataclass
class SegmentationAnnotation(_Base):
    """An instance mask, as a 2-D boolean array, a COCO RLE dict, or a PNG file + instance value."""

    mask: Any = None
    iscrowd: bool = False
    area: float | None = None

    def __post_init__(self) -> None:
        self.kind = "segmentation"

    @classmethod
    def from_png(cls, path: str, value: int, label: str, reference_id: str, **kw: Any) -> "SegmentationAnnotation":
        """The pixels equal to ``value`` in an 8-bit instance-mask PNG."""
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
        if arr.ndim == 3:
            arr = arr[..., 0]
        return cls(label=label, reference_id=reference_id, mask=arr == value, **kw)

    def _geometry(self) -> dict[str, Any]:
        return {"mask_input": self.mask, "iscrowd": self.iscrowd, "area": self.area}


@dataclass
class CategoryAnnotation(_Base):
    """An image-level class label."""

    taxonomy_name: str | None = None

    def __post_init__(self) -> None:
        self.kind = "category"


@dataclass
class KeypointsAnnotation(_Base):
    """Keypoints (``Keypoint`` or ``(x, y, v)``) with optional names; COCO visibility 0/1/2."""

    keypoints: Sequence[Keypoint | tuple[float, float, int]] = ()
    names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.kind = "keypoints"

    def _geometry(self) -> dict[str, Any]:
        flat: list[float] = []
        for k in self.keypoints:
            if isinstance(k, (int, float)):  # a flat x, y, v list; its length is checked with the batch
                flat.append(float(k))
                continue
            x, y, v = (k.x, k.y, k.visible) if isinstance(k, Keypoint) else k
            flat += [float(x), float(y), float(v)]
        return {"keypoints": flat, "keypoint_names": list(self.names) if self.names else None}


def _prediction(cls: type) -> type:
    """Make the prediction twin of an annotation class (adds ``confidence`` and ``class_pdf``)."""

    @dataclass
    class Pred(cls):  # type: ignore[misc, valid-type]
        confidence: float | None = None
        class_pdf: Mapping[str, float] | None = None

    Pred.__name__ = Pred.__qualname__ = cls.__name__.replace("Annotation", "Prediction")
    Pred.__doc__ = (cls.__doc__ or "") + " A model prediction, with ``confidence`` and ``class_pdf``."
    return Pred


BoxPrediction = _prediction(BoxAnnotation)
PolygonPrediction = _prediction(PolygonAnnotation)
SegmentationPrediction = _prediction(SegmentationAnnotation)
CategoryPrediction = _prediction(CategoryAnnotation)
KeypointsPrediction = _prediction(KeypointsAnnotation)


def items_to_table(items: Iterable[DatasetItem]) -> pa.Table:
    """DatasetItem objects → the Arrow item table."""
    rows = list(items)
    for i, it in enumerate(rows):
        if not isinstance(it, DatasetItem):
            from engine.errors import ValidationError

            raise ValidationError(f"expected a DatasetItem, got {type(it).__name__}", record=f"row {i}")
    cols = {"reference_id": [r.reference_id for r in rows], "image_location": [r.image_location for r in rows],
            "width": [r.width for r in rows], "height": [r.height for r in rows],
            "metadata": [_json(r.metadata, r.reference_id, i) for i, r in enumerate(rows)]}
    from engine.ingest.schema import ITEM_COLUMNS

    return _table(cols, pa.schema([pa.field(n, t) for n, t in ITEM_COLUMNS.items()]))


def _json(value: Any, ref: Any, row: int, annotation_id: Any = None) -> str | None:
    """Metadata as JSON text (NaN is written as NaN here and refused, naming the record, by normalize)."""
    if value is None:
        return None
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        from engine.errors import ValidationError
        from engine.ingest.schema import record_name

        raise ValidationError(f"metadata is not JSON-serialisable: {e}", record=record_name(ref, row, annotation_id),
                              field="metadata") from None


def _table(cols: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    """The columns as a table of ``schema``; a value that does not fit is a ValidationError naming its record."""
    try:
        return pa.table(cols, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        from engine.errors import ValidationError
        from engine.ingest.schema import record_name

        for name in cols:  # error path: find the field and row that do not fit
            typ = schema.field(name).type
            for i, v in enumerate(cols[name]):
                try:
                    pa.array([v], typ)
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                    ref, aid = cols["reference_id"][i], cols.get("annotation_id", [None] * (i + 1))[i]
                    raise ValidationError(f"wrong type: {v!r} is not {typ}", record=record_name(ref, i, aid),
                                          field=name) from None
        raise


def annotations_to_table(objs: Iterable[Any]) -> pa.Table:
    """Annotation or prediction objects → the Arrow annotation table (masks become RLE counts)."""
    from engine.errors import ValidationError
    from engine.ingest.schema import ANNOTATION_COLUMNS

    cols: dict[str, list[Any]] = {name: [] for name in ANNOTATION_COLUMNS}
    for i, o in enumerate(objs):
        if not isinstance(o, _Base):
            raise ValidationError(f"expected an annotation object, got {type(o).__name__}", record=f"row {i}")
        try:
            g = o._geometry()
        except (TypeError, ValueError) as e:
            from engine.ingest.schema import record_name

            field_ = {"polygon": "polygon", "keypoints": "keypoints"}.get(o.kind, o.kind)
            raise ValidationError(f"invalid {field_}: {e}", record=record_name(o.reference_id, i, o.annotation_id),
                                  field=field_) from None
        mask = g.pop("mask_input", None)
        if mask is not None:
            g["mask"], g["mask_height"], g["mask_width"] = _mask_counts(mask, o, i)
        row = {
            "reference_id": o.reference_id, "annotation_id": o.annotation_id, "kind": o.kind,
            "label": o.label, "metadata": _json(o.metadata, o.reference_id, i, o.annotation_id),
            "confidence": getattr(o, "confidence", None), "class_pdf": _pdf(getattr(o, "class_pdf", None)),
            **g,
        }
        for name in cols:
            cols[name].append(row.get(name))
    from engine.ingest.schema import annotation_schema

    return _table(cols, annotation_schema())


def _pdf(pdf: Mapping[str, float] | None) -> list[tuple[str, float]] | None:
    return None if pdf is None else [(str(k), float(v)) for k, v in pdf.items()]


def _mask_counts(mask: Any, o: Any, i: int) -> tuple[list[int], int, int]:
    from udfs import masks, rle

    from engine.errors import ValidationError

    record = f"reference_id '{o.reference_id}'" + (f", annotation_id '{o.annotation_id}'" if o.annotation_id else f" (row {i})")
    if isinstance(mask, Mapping):
        try:
            size = mask["size"]
            h, w = int(size[0]), int(size[1])
            counts = masks.rle_from_coco(dict(mask), h, w)
        except Exception as e:  # noqa: BLE001 - any malformed RLE is a validation error
            raise ValidationError(f"malformed RLE: {e}", record=record, field="mask") from None
        return [int(c) for c in counts], h, w
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValidationError(f"mask must be 2-D, got shape {arr.shape}", record=record, field="mask")
    return [int(c) for c in rle.encode(arr.astype(bool))], arr.shape[0], arr.shape[1]
