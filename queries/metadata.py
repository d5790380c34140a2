"""``metadata.<path>`` references: checked against the catalog, typed where they are used.

A metadata value has no type of its own: ``metadata.speed > 50`` reads it as a number,
``metadata.camera = "rear"`` as a string. The catalog says which JSON types occur at the path; a path
with one type is read with one JSON call, a path with mixed types is guarded by ``json_type`` so a
string never compares as a number. A missing key reads as NULL, which no comparison matches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from .catalog import ANY, ARRAY, ARRAY_ITEM, BOOLEAN, NULL, NUMBER, OBJECT, SCALARS, STRING, MetadataSchema
from .errors import DSLTypeError, unknown
from .values import ALL, Pos, Val

_JSON_TYPES = {NUMBER: ("BIGINT", "UBIGINT", "DOUBLE", "HUGEINT"), STRING: ("VARCHAR",), BOOLEAN: ("BOOLEAN",)}
_CASTS = {NUMBER: "DOUBLE", BOOLEAN: "BOOLEAN"}


@dataclass
class MetaRef:
    """An untyped reference to a metadata path.

    Attributes:
        column: the JSON column (``i.metadata``, ``a.metadata``...).
        path: keys, or ints for array positions.
        types: JSON types the catalog saw there (None: unknown, e.g. an open catalog).
        name: as written (for messages).
    """

    column: exp.Expression
    path: tuple[str | int, ...]
    types: frozenset[str] | None
    name: str
    pos: Pos
    lookup: Callable[[str, str], exp.Expression] | None = None  # (dotted path, type) -> pre-extracted value

    def preferred(self) -> str:
        """The type to read when the query does not say (ORDER BY, metadata vs metadata)."""
        vals = (self.types or frozenset()) - {NULL}
        for t in (NUMBER, STRING, BOOLEAN):
            if t in vals:
                return t
        return STRING

    def typed(self, want: str, other: Val | None = None, strict: bool = True) -> Val:
        """Read the value as ``want`` (number | string | boolean | any); type errors before execution."""
        vals = None if self.types is None else self.types - {NULL}
        if strict and vals and want in SCALARS and want not in vals and ANY not in vals:
            raise self._type_error(want, vals, other)
        if want == ANY:  # IS NULL: missing key or JSON null
            return Val(_extract(self.column, self.path, scalar=True), ANY, name=self.name, pos=self.pos)
        if self.lookup is not None and vals is not None and want in LOOKUP_TYPES and _plain(self.path):
            # the pre-extracted value of that JSON type, NULL otherwise: what the (guarded) JSON read gives
            return Val(self.lookup(".".join(self.path), want), want, name=self.name, pos=self.pos,  # type: ignore[arg-type]
                       truth=ALL)
        guard = vals is None or not vals <= {want}
        return Val(_typed_extract(self.column, self.path, want, guard and vals is not None),
                   want, name=self.name, pos=self.pos, truth=ALL)

    def _type_error(self, want: str, vals: frozenset[str], other: Val | None) -> DSLTypeError:
        seen = " or ".join(sorted(vals))
        if vals <= {OBJECT}:
            return DSLTypeError(f"{self.name} is an object, not a value; name one of its keys "
                                f"({self.name}.<key>)", line=self.pos.line, column=self.pos.column,
                                length=self.pos.length)
        against = f" with {other.name}" if other is not None and other.name else ""
        return DSLTypeError(f"{self.name} holds {seen} values; cannot compare it as a {want}{against}",
                            line=self.pos.line, column=self.pos.column, length=self.pos.length)


def resolve(column: exp.Expression, segments: list[tuple[str, bool]], schema: MetadataSchema, prefix: str,
            pos: Pos, open_: bool, strict: bool,
            lookup: Callable[[str, str], exp.Expression] | None = None) -> MetaRef:
    """Check ``prefix.seg1.seg2`` against the schema and build the reference.

    Args:
        segments: (text, quoted) pairs; an unquoted all-digit segment indexes an array.
    """
    path: list[str | int] = []
    schema_path: list[str] = []
    for text, quoted in segments:
        parent = schema.types(tuple(schema_path)) if schema_path else None
        if not quoted and text.isdigit() and (open_ or (parent and ARRAY in parent)):
            path.append(int(text))
            schema_path.append(ARRAY_ITEM)
        else:
            path.append(text)
            schema_path.append(text)
    name = prefix + "." + ".".join(_show(t, q) for t, q in segments)
    if open_:
        return MetaRef(column, tuple(path), None, name, pos)
    types = schema.types(tuple(schema_path))
    if types is None:
        if not strict:
            return MetaRef(column, tuple(path), frozenset({NULL}), name, pos, lookup)
        known = [prefix + "." + ".".join(p) for p in schema.paths() if ARRAY_ITEM not in p]
        e = unknown("metadata key", name, known)
        e.from_catalog = True  # type: ignore[attr-defined]
        raise e.at(pos.line, pos.column, pos.length)
    return MetaRef(column, tuple(path), types, name, pos, lookup)


# value columns of item_metadata_values by the type read; its paths spell plain identifier keys as is
LOOKUP_TYPES = {NUMBER: "v_num", STRING: "v_str", BOOLEAN: "v_bool"}
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _plain(path: tuple[str | int, ...]) -> bool:
    return all(isinstance(p, str) and _PLAIN.fullmatch(p) for p in path)


def _show(text: str, quoted: bool) -> str:
    if not quoted and text.replace("_", "a").isalnum():
        return text
    return '"' + text.replace('"', '\\"') + '"'


def _json_path(path: tuple[str | int, ...]) -> exp.JSONPath:
    parts: list[exp.Expression] = [exp.JSONPathRoot()]
    for p in path:
        parts.append(exp.JSONPathSubscript(this=p) if isinstance(p, int) else exp.JSONPathKey(this=p))
    return exp.JSONPath(expressions=parts)


def _extract(column: exp.Expression, path: tuple[str | int, ...], scalar: bool) -> exp.Expression:
    cls = exp.JSONExtractScalar if scalar else exp.JSONExtract
    return cls(this=column.copy(), expression=_json_path(path))


def _json_type(column: exp.Expression, path: tuple[str | int, ...]) -> exp.Expression:
    return exp.Anonymous(this="json_type", expressions=[_extract(column, path, scalar=False)])


def _typed_extract(column: exp.Expression, path: tuple[str | int, ...], want: str, guard: bool) -> exp.Expression:
    if want == STRING:
        value: exp.Expression = _extract(column, path, scalar=True)
    else:
        value = exp.TryCast(this=_extract(column, path, scalar=False),
                            to=exp.DataType(this=exp.DataType.Type[_CASTS[want]]))
    if not guard:
        return value
    types = exp.Tuple(expressions=[exp.convert(t) for t in _JSON_TYPES[want]])
    cond = exp.In(this=_json_type(column, path), expressions=types.expressions)
    return exp.Case(ifs=[exp.If(this=cond, true=value)])
