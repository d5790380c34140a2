"""Loupe: an embedded analytics engine for computer-vision datasets and model errors.

Example:
    >>> import engine
    >>> ws = engine.connect()                      # in memory; pass a path for a file
    >>> ds = ws.create_dataset("demo")
    >>> ds.append([engine.DatasetItem("a.png", "a", width=640, height=480)], check_images=False)
    >>> ds.annotate([engine.BoxAnnotation("pedestrian", "a", x=10, y=20, width=30, height=60)])
"""
from .api import Dataset, Model, ModelRun, Workspace, connect
from .errors import (
    AlreadyExistsError,
    LoupeError,
    NotFoundError,
    SchemaVersionError,
    ValidationError,
    WorkspaceLocked,
)
from .objects import (
    BoxAnnotation,
    BoxPrediction,
    CategoryAnnotation,
    CategoryPrediction,
    DatasetItem,
    Keypoint,
    KeypointsAnnotation,
    KeypointsPrediction,
    Point,
    PolygonAnnotation,
    PolygonPrediction,
    SegmentationAnnotation,
    SegmentationPrediction,
)

__version__ = "0.1.0"

__all__ = [
    "connect", "Workspace", "Dataset", "Model", "ModelRun",
    "LoupeError", "ValidationError", "NotFoundError", "AlreadyExistsError", "WorkspaceLocked", "SchemaVersionError",
    "DatasetItem", "Point", "Keypoint",
    "BoxAnnotation", "PolygonAnnotation", "SegmentationAnnotation", "CategoryAnnotation", "KeypointsAnnotation",
    "BoxPrediction", "PolygonPrediction", "SegmentationPrediction", "CategoryPrediction", "KeypointsPrediction",
]
