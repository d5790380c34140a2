"""What a query may name: the dataset, its labels, metadata keys with their JSON types, runs and slices.

The compiler checks every name against a :class:`Catalog` before building SQL. ``queries/`` never reads
the database: the engine implements a catalog over DuckDB (``engine/execution/catalog.py``); tests use
:class:`StaticCatalog`; :class:`OpenCatalog` accepts any name (``engine.explain`` without a workspace).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# JSON value types as the compiler sees them
NUMBER, STRING, BOOLEAN, NULL, OBJECT, ARRAY, ANY = "number", "string", "boolean", "null", "object", "array", "any"
SCALARS = (NUMBER, STRING, BOOLEAN)
ARRAY_ITEM = "[]"  # path segment standing for "any element of an array"

# DuckDB json_structure() type names -> ours
_DUCK_TYPES = {"VARCHAR": STRING, "BIGINT": NUMBER, "UBIGINT": NUMBER, "DOUBLE": NUMBER, "HUGEINT": NUMBER,
               "BOOLEAN": BOOLEAN, "NULL": NULL, "JSON": ANY}


class MetadataSchema:
    """Known metadata paths and the JSON types seen at each (``('weather', 'rain') -> {'number'}``)."""

    def __init__(self, types: Mapping[tuple[str, ...], Iterable[str]] | None = None):
        self._types: dict[tuple[str, ...], frozenset[str]] = {k: frozenset(v) for k, v in (types or {}).items()}

    def __repr__(self) -> str:
        return f"MetadataSchema({ {'.'.join(k): sorted(v) for k, v in self._types.items()} })"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetadataSchema) and other._types == self._types

    def types(self, path: tuple[str, ...]) -> frozenset[str] | None:
        """JSON types seen at ``path`` (None: no item has that path)."""
        return self._types.get(tuple(path))

    def paths(self) -> list[tuple[str, ...]]:
        return sorted(self._types)

    def children(self, path: tuple[str, ...]) -> list[str]:
        n = len(path)
        return sorted({p[n] for p in self._types if len(p) > n and p[:n] == tuple(path)})

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> "MetadataSchema":
        """Schema of Python JSON values (dicts); for tests and small data."""
        acc: dict[tuple[str, ...], set[str]] = {}
        for v in values:
            if isinstance(v, str):
                v = json.loads(v)
            if isinstance(v, dict):
                _walk_value(v, (), acc)
        return cls(acc)

    @classmethod
    def from_structures(cls, structures: Iterable[Any]) -> "MetadataSchema":
        """Merge DuckDB ``json_structure`` results (JSON text or parsed) into one schema."""
        acc: dict[tuple[str, ...], set[str]] = {}
        for s in structures:
            if isinstance(s, str):
                s = json.loads(s)
            if isinstance(s, dict):
                for k, v in s.items():
                    _walk_structure(v, (k,), acc)
        return cls(acc)


def _walk_value(v: Any, path: tuple[str, ...], acc: dict[tuple[str, ...], set[str]]) -> None:
    if path:
        acc.setdefault(path, set()).add(_py_type(v))
    if isinstance(v, dict):
        for k, sub in v.items():
            _walk_value(sub, path + (str(k),), acc)
    elif isinstance(v, list) and path:
        for sub in v:
            _walk_value(sub, path + (ARRAY_ITEM,), acc)


def _py_type(v: Any) -> str:
    if v is None:
        return NULL
    if isinstance(v, bool):
        return BOOLEAN
    if isinstance(v, (int, float)):
        return NUMBER
    if isinstance(v, str):
        return STRING
    return OBJECT if isinstance(v, dict) else ARRAY


def _walk_structure(s: Any, path: tuple[str, ...], acc: dict[tuple[str, ...], set[str]]) -> None:
    if isinstance(s, dict):
        acc.setdefault(path, set()).add(OBJECT)
        for k, v in s.items():
            _walk_structure(v, path + (k,), acc)
    elif isinstance(s, list):
        acc.setdefault(path, set()).add(ARRAY)
        for v in s:
            _walk_structure(v, path + (ARRAY_ITEM,), acc)
    else:
        acc.setdefault(path, set()).add(_DUCK_TYPES.get(str(s), ANY))


@dataclass(frozen=True)
class RunInfo:
    """A run of the dataset. ``iou_threshold`` is None until the run is committed (no matches yet)."""

    name: str
    run_id: int | None
    iou_threshold: float | None = None
    labels_current: bool = False  # committed against the dataset's current label version
    match_counts: bool = False  # item_match_counts holds the per-item tp / fp / fn of its current matches rows

    @property
    def committed(self) -> bool:
        return self.iou_threshold is not None


@dataclass(frozen=True)
class SliceInfo:
    """A slice of the dataset: static (ids stored) or dynamic (``query`` re-evaluated on read)."""

    name: str
    slice_id: int | None
    kind: str = "items"  # items | objects
    query: str | None = None
    run: str | None = None


class Catalog:
    """Names a query may use. Subclasses load lazily; the compiler asks only for what a query names."""

    dataset_id: int | None = None
    open: bool = False  # accept any label / metadata key / run (explain without a workspace)

    def labels(self) -> frozenset[str]:
        """Labels of the dataset's ground truth and of its runs' predictions."""
        raise NotImplementedError

    def item_metadata(self) -> MetadataSchema:
        raise NotImplementedError

    def object_metadata(self) -> MetadataSchema:
        """Metadata of annotations and predictions."""
        raise NotImplementedError

    def runs(self) -> Mapping[str, RunInfo]:
        raise NotImplementedError

    def slices(self) -> Mapping[str, SliceInfo]:
        raise NotImplementedError

    def label_counts(self) -> bool:
        """Whether ``item_counts`` holds the current per-item GT counts (else count ``annotations``)."""
        return False

    def label_slots(self) -> Mapping[tuple[str | None, str | None], int]:
        """The counts ``item_count_columns`` holds for the dataset: (label, kind) -> its column ``n<k>``
        (label and kind as in ``item_counts``: the other one NULL; both NULL for the total). Empty when
        the table is not current; only read when :meth:`label_counts` is true."""
        return {}

    def item_values(self) -> bool:
        """Whether ``item_metadata_values`` holds the current item metadata leaves (else parse the JSON)."""
        return False

    def refresh(self) -> bool:
        """Drop cached answers; True when something was cached (so a retry may see newer data)."""
        return False


@dataclass
class StaticCatalog(Catalog):
    """A catalog given in full (tests, or a caller that already knows the names)."""

    dataset_id: int | None = 1
    label_set: Iterable[str] = ()
    items_meta: MetadataSchema = field(default_factory=MetadataSchema)
    objects_meta: MetadataSchema = field(default_factory=MetadataSchema)
    run_list: Iterable[RunInfo] = ()
    slice_list: Iterable[SliceInfo] = ()

    def labels(self) -> frozenset[str]:
        return frozenset(self.label_set)

    def item_metadata(self) -> MetadataSchema:
        return self.items_meta

    def object_metadata(self) -> MetadataSchema:
        return self.objects_meta

    def runs(self) -> Mapping[str, RunInfo]:
        return {r.name: r for r in self.run_list}

    def slices(self) -> Mapping[str, SliceInfo]:
        return {s.name: s for s in self.slice_list}


class OpenCatalog(Catalog):
    """Accepts every name; ids become placeholders (``$dataset_id``, ``$run_id``). For ``explain``."""

    dataset_id = None
    open = True

    def labels(self) -> frozenset[str]:
        return frozenset()

    def item_metadata(self) -> MetadataSchema:
        return MetadataSchema()

    def object_metadata(self) -> MetadataSchema:
        return MetadataSchema()

    def runs(self) -> Mapping[str, RunInfo]:
        return {}

    def slices(self) -> Mapping[str, SliceInfo]:
        return {}
