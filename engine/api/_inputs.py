"""Turn what users pass to bulk methods (objects, lists, Arrow tables) into Arrow tables."""
from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from ..errors import ValidationError
from engine.api.records import annotations_to_table, items_to_table


def items_table(items: Iterable[Any] | pa.Table) -> pa.Table:
    if isinstance(items, pa.Table):
        return items
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValidationError(f"expected a list of DatasetItem or a pyarrow.Table, got {type(items).__name__}")
    return items_to_table(items)


def annotations_table(objs: Iterable[Any] | pa.Table) -> pa.Table:
    if isinstance(objs, pa.Table):
        return objs
    if isinstance(objs, (str, bytes)) or not hasattr(objs, "__iter__"):
        raise ValidationError(f"expected a list of annotations or a pyarrow.Table, got {type(objs).__name__}")
    return annotations_to_table(objs)


def check_name(value: Any, what: str, field: str = "name") -> str:
    """A model/run name must be a string that shows something (not empty, not only whitespace)."""
    if not isinstance(value, str) or not any(c.isprintable() and not c.isspace() for c in value):
        raise ValidationError(f"must be a non-empty string, got {value!r}", record=what, field=field)
    return value
