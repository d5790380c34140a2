"""Loupe: an embedded analytics engine for computer-vision datasets and model errors.

Example:
    >>> import engine
    >>> ws = engine.connect()                      # in memory; pass a path for a file
    >>> ds = ws.create_dataset("demo")
    >>> ds.append([engine.DatasetItem("a.png", "a", width=640, height=480)], check_images=False)
    >>> ds.annotate([engine.BoxAnnotation("pedestrian", "a", x=10, y=20, width=30, height=60)])
"""
from .analysis import crops
from .analysis.compare import compare, compare_runs
from .api import Dataset, Model, ModelRun, Workspace, connect
from .errors import (
    AlreadyExistsError,
    LoupeError,
    NotFoundError,
    SchemaVersionError,
    ValidationError,
    WorkspaceLocked,
)
from .errors import CheckpointError, WorkspaceFull
from engine.api.records import (
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

from engine.curation.slices import Slice
from queries import DSLError, DSLNameError, DSLSyntaxError, DSLTypeError


def explain(dsl: str, dialect: str = "duckdb", objects: bool = False, run: str | None = None) -> str:
    """The SQL a DSL query compiles to (no workspace: names unchecked, ids as ``$placeholders``).

    Example:
        >>> print(engine.explain('annotations.pedestrian >= 4', dialect="spark"))
    """
    from engine.execution.runner import explain as _explain

    return _explain(dsl, dialect, run=run, objects=objects)


__version__ = "0.1.0"

__all__ = [
    "connect", "Workspace", "Dataset", "Model", "ModelRun", "crops", "compare", "compare_runs",
    "explain", "Slice", "DSLError", "DSLSyntaxError", "DSLNameError", "DSLTypeError",
    "LoupeError", "ValidationError", "NotFoundError", "AlreadyExistsError", "WorkspaceLocked", "SchemaVersionError",
    "WorkspaceFull", "CheckpointError",
    "DatasetItem", "Point", "Keypoint",
    "BoxAnnotation", "PolygonAnnotation", "SegmentationAnnotation", "CategoryAnnotation", "KeypointsAnnotation",
    "BoxPrediction", "PolygonPrediction", "SegmentationPrediction", "CategoryPrediction", "KeypointsPrediction",
]
