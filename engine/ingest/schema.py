"""The Arrow input schemas every bulk path converges on, and their normalisation.

Items: ``reference_id``, ``image_location``, ``width``, ``height``, ``metadata`` (JSON text or struct).
Annotations / predictions: ``reference_id``, ``annotation_id``, ``kind``, ``label``, ``x``, ``y``,
``width``, ``height`` (top-left box, pixels), ``polygon`` (list of rings ``[x1, y1, x2, y2, ...]``),
``mask`` (COCO RLE counts, uncompressed, column-major) with ``mask_height``/``mask_width``,
``keypoints`` (flat x, y, v), ``keypoint_names``, ``iscrowd``, ``area``, ``metadata``, and for
predictions ``confidence`` and ``class_pdf`` (map label → probability). Missing columns are NULL.
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError

KINDS = ("box", "polygon", "segmentation", "category", "keypoints")

ITEM_COLUMNS: dict[str, pa.DataType] = {
    "reference_id": pa.string(),
    "image_location": pa.string(),
    "width": pa.int64(),
    "height": pa.int64(),
    "metadata": pa.string(),
}

ANNOTATION_COLUMNS: dict[str, pa.DataType] = {
    "reference_id": pa.string(),
    "annotation_id": pa.string(),
    "kind": pa.string(),
    "label": pa.string(),
    "x": pa.float64(),
    "y": pa.float64(),
    "width": pa.float64(),
    "height": pa.float64(),
    "polygon": pa.list_(pa.list_(pa.float64())),
    "mask": pa.list_(pa.uint32()),
    "mask_height": pa.int64(),
    "mask_width": pa.int64(),
    "keypoints": pa.list_(pa.float64()),
    "keypoint_names": pa.list_(pa.string()),
    "iscrowd": pa.bool_(),
    "area": pa.float64(),
    "metadata": pa.string(),
    "confidence": pa.float64(),
    "class_pdf": pa.map_(pa.string(), pa.float64()),
}


def annotation_schema() -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in ANNOTATION_COLUMNS.items()])


def normalize(table: pa.Table, columns: dict[str, pa.DataType], what: str) -> pa.Table:
    """Cast a user table to the canonical columns: missing ones become NULL, extra ones are refused.

    Raises:
        ValidationError: naming the column (and the first bad row) when a cast is impossible.
    """
    if not isinstance(table, pa.Table):
        raise ValidationError(f"expected a pyarrow.Table of {what}, got {type(table).__name__}")
    extra = [c for c in table.column_names if c not in columns]
    if extra:
        raise ValidationError(
            f"unknown column(s) {extra} in {what} table; expected a subset of {list(columns)}", field=extra[0]
        )
    n = table.num_rows
    out = {}
    for name, typ in columns.items():
        if name not in table.column_names:
            out[name] = pa.nulls(n, typ)
            continue
        col = table.column(name)
        if name == "metadata" and not pa.types.is_string(col.type) and not pa.types.is_null(col.type):
            col = pa.array([None if v is None else json.dumps(v) for v in col.to_pylist()], pa.string())
        out[name] = _cast(col, typ, name, what)
    t = pa.table(out)
    if "metadata" in columns:
        _refuse_non_standard_json(t)
    return t


_NON_STANDARD = r"NaN|Infinity|\binf\b"  # DuckDB's JSON reader accepts these literals; JSON (RFC 8259) does not


def _refuse_non_standard_json(t: pa.Table) -> None:
    """Refuse metadata holding NaN or Infinity (``json.dumps`` writes them; other readers choke on them).

    A vectorized regex finds the candidates; only those (rare: the words inside strings) are parsed.
    """
    col = t.column("metadata")
    if col.null_count == len(col):
        return
    hits = pc.fill_null(pc.match_substring_regex(col, _NON_STANDARD, ignore_case=True), False)
    if not pc.any(hits).as_py():
        return
    for i in pc.indices_nonzero(hits).to_pylist():  # error path (or strings mentioning NaN)
        try:
            json.loads(col[i].as_py(), parse_constant=_no_constant)
        except ValueError as e:
            if not str(e).startswith("non-standard"):
                continue  # invalid JSON: the metadata rule names it
            aid = t.column("annotation_id")[i].as_py() if "annotation_id" in t.column_names else None
            raise ValidationError(f"metadata holds {e}; JSON has no NaN or Infinity (use null)",
                                  record=record_name(t.column("reference_id")[i].as_py(), i, aid),
                                  field="metadata") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON value {name}")


def _cast(col: pa.ChunkedArray | pa.Array, typ: pa.DataType, name: str, what: str) -> pa.Array:
    if col.type == typ:
        return col
    if pa.types.is_floating(typ) and not (
        pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)
    ) or pa.types.is_string(typ) and pa.types.is_floating(col.type):
        first = next((i for i, v in enumerate(col.to_pylist()) if v is not None), None)  # error path only
        raise ValidationError(f"{what}: column has type {col.type}, expected {typ}",
                              record=None if first is None else f"row {first}", field=name)
    try:
        return pc.cast(col, typ, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        bad = _first_uncastable(col, typ)
        where = f"row {bad}" if bad is not None else None
        raise ValidationError(f"cannot convert {col.type} to {typ}: {e}", record=where, field=name) from None


def _first_uncastable(col: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> int | None:
    for i, v in enumerate(col.to_pylist()):  # error path only
        try:
            pa.array([v]).cast(typ, safe=True)
        except Exception:  # noqa: BLE001
            return i
    return None


def record_name(ref: object, row: int, annotation_id: object = None) -> str:
    """How errors name a record: its ids when known, always with the row number."""
    parts = []
    if ref is not None:
        parts.append(f"reference_id '{ref}'")
    if annotation_id is not None:
        parts.append(f"annotation_id '{annotation_id}'")
    parts.append(f"row {row}")
    return ", ".join(parts[:-1]) + f" ({parts[-1]})" if len(parts) > 1 else parts[0]
