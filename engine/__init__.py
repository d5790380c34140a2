"""Loupe: an embedded analytics engine for computer-vision datasets and model errors.

Example:
    >>> import engine
    >>> ws = engine.connect()                      # in memory; pass a path for a file
    >>> ds = ws.create_dataset("demo")
    >>> ds.append([engine.DatasetItem("a.png", "a", width=640, height=480)], check_images=False)
    >>> ds.annotate([engine.BoxAnnotation("pedestrian", "a", x=10, y=20, width=30, height=60)])
"""
from .errors import (
    AlreadyExistsError,
    LoupeError,
    NotFoundError,
    SchemaVersionError,
    ValidationError,
    WorkspaceLocked,
)
from .errors import CheckpointError, WorkspaceFull

# Imported on first use (PEP 562), so `import engine` and the `loupe` CLI start fast: name -> module.
_LAZY = {
    "crops": "engine.analysis",
    "compare": "engine.analysis.compare", "compare_runs": "engine.analysis.compare",
    "Dataset": "engine.api", "Model": "engine.api", "ModelRun": "engine.api", "Workspace": "engine.api",
    "connect": "engine.api",
    **dict.fromkeys(("BoxAnnotation", "BoxPrediction", "CategoryAnnotation", "CategoryPrediction", "DatasetItem",
                     "Keypoint", "KeypointsAnnotation", "KeypointsPrediction", "Point", "PolygonAnnotation",
                     "PolygonPrediction", "SegmentationAnnotation", "SegmentationPrediction"), "engine.api.records"),
    "Slice": "engine.curation.slices",
    **dict.fromkeys(("DSLError", "DSLNameError", "DSLSyntaxError", "DSLTypeError"), "queries"),
}


_RESOLVED: set[str] = set()


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None or name in _RESOLVED:  # resolved once: a deleted name stays deleted, as with eager imports
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    _RESOLVED.add(name)
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def explain(dsl: str, dialect: str = "duckdb", objects: bool = False, run: str | None = None) -> str:
    """The SQL a DSL query compiles to (no workspace: names unchecked, ids as ``$placeholders``).

    Example:
        >>> print(engine.explain('annotations.pedestrian >= 4', dialect="spark"))
    """
    from engine.execution.runner import explain as _explain

    return _explain(dsl, dialect, run=run, objects=objects)


def launch_app(ws_or_path, host: str = "127.0.0.1", port: int = 0, read_only: bool = False, open_browser: bool = False):
    """Serve the Loupe App over a workspace (or its file) in a background thread; ``.url``, ``.stop()``.

    Example:
        >>> app = engine.launch_app("loupe.duckdb"); print(app.url)
    """
    from engine.app.server import launch_app as _launch

    return _launch(ws_or_path, host=host, port=port, read_only=read_only, open_browser=open_browser)


__version__ = "0.1.0"

__all__ = [
    "connect", "Workspace", "Dataset", "Model", "ModelRun", "crops", "compare", "compare_runs",
    "explain", "launch_app", "Slice", "DSLError", "DSLSyntaxError", "DSLNameError", "DSLTypeError",
    "LoupeError", "ValidationError", "NotFoundError", "AlreadyExistsError", "WorkspaceLocked", "SchemaVersionError",
    "WorkspaceFull", "CheckpointError",
    "DatasetItem", "Point", "Keypoint",
    "BoxAnnotation", "PolygonAnnotation", "SegmentationAnnotation", "CategoryAnnotation", "KeypointsAnnotation",
    "BoxPrediction", "PolygonPrediction", "SegmentationPrediction", "CategoryPrediction", "KeypointsPrediction",
]
