"""Evaluate a compiled object filter or sort key over Arrow columns, with DuckDB's semantics.

Object queries (``ds.query_objects``) can run on an in-memory copy of a run's object rows
(engine/execution/object_cache.py) instead of DuckDB. This module interprets the same sqlglot expressions the
compiler built for SQL, for the subset where Arrow compute matches DuckDB exactly: three-valued logic
(Kleene AND/OR, NULL-propagating comparisons, SQL ``IN`` with NULLs), IEEE double arithmetic and
binary string comparison. Anything else raises :class:`Unsupported` and the query runs in DuckDB:

- JSON metadata, subqueries (object slices), string functions, round, ``%``, LIKE patterns with a
  backslash (Arrow takes it as an escape, DuckDB does not); item-level parts (:func:`item_parts`) are
  evaluated only through the caller's ``item`` function (per item, in DuckDB);
- integer arithmetic on columns (DuckDB raises on overflow; constants are computed exactly);
- NaN in a compared or sorted value (DuckDB orders NaN above every number and NaN = NaN is true).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from .sqlbuild import NESTED, outer_columns

ColumnFn = Callable[[exp.Column], pa.Array]
ItemFn = Callable[[exp.Expression], "pa.Array | pa.Scalar"]
_OBJECT_ALIASES = ("a", "p", "m")


class Unsupported(Exception):
    """The expression is outside what this module evaluates exactly: run the query in DuckDB."""


_CMP = {exp.EQ: pc.equal, exp.NEQ: pc.not_equal, exp.GT: pc.greater, exp.GTE: pc.greater_equal,
        exp.LT: pc.less, exp.LTE: pc.less_equal}
_ARITH = {exp.Add: pc.add, exp.Sub: pc.subtract, exp.Mul: pc.multiply}
_UNARY = {exp.Abs: pc.abs, exp.Floor: pc.floor, exp.Ceil: pc.ceil, exp.Neg: pc.negate}
_NULL_TYPES = {"DOUBLE": pa.float64(), "VARCHAR": pa.string(), "TEXT": pa.string(), "BOOLEAN": pa.bool_(),
               "BIGINT": pa.int64()}


def evaluate(e: exp.Expression, column: ColumnFn, item: ItemFn | None = None) -> "pa.Array | pa.Scalar":
    """The value of ``e`` for every row (an array) or a constant (a scalar); ``column`` maps the
    expression's columns to arrays of equal length (raising :class:`Unsupported` for others); ``item``
    gives the per-row values of an item-level part (see :func:`item_parts`), else they are Unsupported."""
    try:
        return _eval(e, column, item)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
        raise Unsupported(f"{type(err).__name__}: {err}") from None


def where_mask(e: exp.Expression | None, column: ColumnFn, n: int, item: ItemFn | None = None) -> pa.Array:
    """Rows the filter keeps (true, not false or NULL), as a boolean array of length ``n``."""
    if e is None:
        return _broadcast(True, n)
    v = evaluate(e, column, item)
    if isinstance(v, pa.Scalar):
        return _broadcast(v.as_py() is True, n)
    if not pa.types.is_boolean(v.type):
        raise Unsupported("filter is not boolean")
    return pc.fill_null(v, False)


def sort_key(e: exp.Expression, column: ColumnFn, item: ItemFn | None = None) -> pa.Array | pa.Scalar:
    """A sort expression's values (numbers without NaN, strings, booleans)."""
    v = evaluate(e, column, item)
    if isinstance(v, pa.Array):
        if pa.types.is_dictionary(v.type):
            v = v.dictionary_decode()
        _no_nan(v)
    return v


def _broadcast(value: bool, n: int) -> pa.Array:
    return pa.array(np.full(n, value, dtype=bool))


def is_item_column(c: exp.Column) -> bool:
    """A column of the object's item: of ``items`` (i; the copy has reference_id), of a per-item CTE
    (``__...``) or the item_id."""
    return (c.table == "i" and c.name != "reference_id") or c.table.startswith("__") or (c.name == "item_id" and c.table in _OBJECT_ALIASES)


def only_reads(e: exp.Expression, tables: list[str]) -> bool:
    """Every column of ``e`` is of one of ``tables`` and nothing in it is a nested SELECT."""
    return next(e.find_all(*NESTED), None) is None and all(c.table in tables for c in outer_columns(e))


def never_true_without(e: exp.Expression) -> bool:
    """Is the filter ``e`` false or NULL when every column it reads is NULL, i.e. for an item the per-item
    tables it reads have no row for? (Then only their rows can match.)"""
    try:
        v = evaluate(e, lambda c: pa.scalar(None, pa.null()))
    except Unsupported:
        return False
    return isinstance(v, pa.Scalar) and not (v.is_valid and v.as_py() is True)


def _item_levels(e: exp.Expression) -> dict[int, bool]:
    """For every node of ``e`` (by id): does it depend on the item only? It reads some column or holds
    a nested SELECT, and every column it reads outside nested SELECTs is an item column. One bottom-up
    pass without recursion (a flat chain of thousands of ORs is a wide tree)."""
    facts: dict[int, tuple[bool, bool, bool]] = {}  # id -> (reads a column, all item columns, has nested)
    stack: list[tuple[exp.Expression, bool]] = [(e, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, exp.Column):
            facts[id(node)] = (True, is_item_column(node), False)
        elif isinstance(node, NESTED):
            facts[id(node)] = (False, True, True)
        elif not done:
            stack.append((node, True))
            stack.extend((ch, False) for ch in node.iter_expressions())
        else:
            kids = [facts[id(ch)] for ch in node.iter_expressions()]
            facts[id(node)] = (any(k[0] for k in kids), all(k[1] for k in kids), any(k[2] for k in kids))
    return {k: (reads or nested) and all_item for k, (reads, all_item, nested) in facts.items()}


def item_parts(e: exp.Expression | None) -> list[exp.Expression]:
    """The largest parts of ``e`` that depend on the item only (evaluated per item, e.g. by DuckDB)."""
    if e is None:
        return []
    level = _item_levels(e)
    out, stack = [], [e]
    while stack:  # preorder, left to right
        node = stack.pop()
        if level.get(id(node), False) and not isinstance(node, (exp.Literal, exp.Boolean, exp.Null, exp.Cast)):
            out.append(node)
            continue
        stack.extend(reversed([ch for ch in node.iter_expressions() if not isinstance(ch, NESTED)]))
    return out


def _eval(e: exp.Expression, column: ColumnFn, item: ItemFn | None = None,
          levels: dict[int, bool] | None = None) -> "pa.Array | pa.Scalar":
    if item is not None:
        if levels is None:
            levels = _item_levels(e)  # once per evaluation, not per node
        if not isinstance(e, (exp.Literal, exp.Boolean, exp.Null, exp.Cast)) and levels.get(id(e), False):
            return item(e)
    return _eval_node(e, lambda x: _eval(x, column, item, levels), column)


def _eval_node(e: exp.Expression, ev: Callable[[exp.Expression], "pa.Array | pa.Scalar"],
               column: ColumnFn) -> "pa.Array | pa.Scalar":
    t = type(e)
    if t is exp.Paren:
        return ev(e.this)
    if t is exp.Column:
        return column(e)
    if t is exp.Literal:
        return _literal(e)
    if t is exp.Boolean:
        return pa.scalar(bool(e.this), pa.bool_())
    if t is exp.Null:
        return pa.scalar(None, pa.null())
    if t is exp.Cast:
        to = e.to.this.name if isinstance(e.to, exp.DataType) else None
        if isinstance(e.this, exp.Null) and to in _NULL_TYPES:
            return pa.scalar(None, _NULL_TYPES[to])
        raise Unsupported("CAST")
    if t is exp.And or t is exp.Or:
        a = _bool(ev(e.this))
        if _all(a, t is exp.Or):  # FALSE AND x is FALSE, TRUE OR x is TRUE: x (maybe costly) is not needed
            return a
        b = _bool(ev(e.expression))
        return (pc.and_kleene if t is exp.And else pc.or_kleene)(a, b)
    if t is exp.Not:
        return pc.invert(_bool(ev(e.this)))
    if t in _CMP:
        return _compare(_CMP[t], ev(e.this), ev(e.expression))
    if t is exp.Is:
        if not isinstance(e.expression, exp.Null):
            raise Unsupported("IS")
        v = ev(e.this)
        return pa.scalar(not v.is_valid, pa.bool_()) if isinstance(v, pa.Scalar) else pc.is_null(v)
    if t is exp.In:
        if e.args.get("query") is not None or e.args.get("unnest") is not None or not e.expressions:
            raise Unsupported("IN subquery")
        x = ev(e.this)
        out = None
        for item in e.expressions:
            hit = _compare(pc.equal, x, ev(item))
            out = hit if out is None else pc.or_kleene(out, hit)
        return out
    if t is exp.Between:
        x = ev(e.this)
        return pc.and_kleene(_compare(pc.greater_equal, x, ev(e.args["low"])),
                             _compare(pc.less_equal, x, ev(e.args["high"])))
    if t in _ARITH:
        a, b = _number(ev(e.this)), _number(ev(e.expression))
        if not (_is_float(a) or _is_float(b)):
            return _int_arith(t, a, b)
        return _ARITH[t](_as_float(a), _as_float(b))
    if t is exp.Coalesce:
        values = [ev(x) for x in [e.this, *e.expressions]]
        if not all(isinstance(v, pa.Scalar) for v in values):
            raise Unsupported("COALESCE of columns")
        return next((v for v in values if v.is_valid), values[-1])
    if t is exp.Div:
        return pc.divide(_as_float(_number(ev(e.this))), _as_float(_number(ev(e.expression))))
    if t in _UNARY:
        v = _number(ev(e.this))
        if t is exp.Neg and isinstance(v, pa.Scalar) and pa.types.is_integer(v.type):
            if v.is_valid and v.as_py() == -2**63:
                raise Unsupported("BIGINT overflow")
            return pa.scalar(None if not v.is_valid else -v.as_py(), v.type)  # a negative literal: -5
        if not _is_float(v):
            raise Unsupported("integer function")
        return _UNARY[t](v)
    if t is exp.Sqrt:
        v = _as_float(_number(ev(e.this)))
        if isinstance(v, pa.Array) and pc.any(pc.less(v, 0.0)).as_py():
            raise Unsupported("sqrt of a negative number")
        return pc.sqrt(v)
    if t is exp.Like:
        return _like(ev(e.this), ev(e.expression), e)
    if t is exp.Nullif:
        a, b = ev(e.this), ev(e.expression)
        same = pc.fill_null(_compare(pc.equal, a, b), False)
        return pc.if_else(same, pa.scalar(None, a.type), a)
    raise Unsupported(t.__name__)


def _like(x: "pa.Array | pa.Scalar", pattern: "pa.Array | pa.Scalar", e: exp.Like) -> "pa.Array | pa.Scalar":
    """``x LIKE 'pattern'`` (% and _ wildcards). DuckDB has no escape character by default and Arrow
    takes a backslash as one, so a pattern with a backslash (or an ESCAPE clause) runs in DuckDB."""
    if e.args.get("escape") is not None or not isinstance(pattern, pa.Scalar):
        raise Unsupported("LIKE with a computed pattern or ESCAPE")
    if pa.types.is_null(pattern.type) or pa.types.is_null(x.type) or not pattern.is_valid:
        return pa.nulls(len(x), pa.bool_()) if isinstance(x, pa.Array) else pa.scalar(None, pa.bool_())
    text = pattern.as_py()
    if not isinstance(text, str) or "\\" in text:
        raise Unsupported("LIKE pattern with a backslash")
    if isinstance(x, pa.Scalar):
        return pc.match_like(pa.array([x.as_py()], pa.string()), text)[0]
    if pa.types.is_dictionary(x.type):
        return pc.match_like(x.dictionary, text).take(x.indices)
    if not pa.types.is_string(x.type):
        raise Unsupported("LIKE on a non-string")
    return pc.match_like(x, text)


def _int_arith(t: type, a: "pa.Array | pa.Scalar", b: "pa.Array | pa.Scalar") -> pa.Scalar:
    """Integer + - * of constants (exact in Python; DuckDB raises past BIGINT, so that is Unsupported)."""
    if not (isinstance(a, pa.Scalar) and isinstance(b, pa.Scalar)):
        raise Unsupported("integer arithmetic on columns")  # DuckDB raises on overflow
    if not (a.is_valid and b.is_valid):
        return pa.scalar(None, pa.int64())
    x, y = a.as_py(), b.as_py()
    v = x + y if t is exp.Add else x - y if t is exp.Sub else x * y
    if not -2**63 <= v < 2**63:
        raise Unsupported("BIGINT overflow")
    return pa.scalar(v, pa.int64())


def _literal(e: exp.Literal) -> pa.Scalar:
    if e.is_string:
        return pa.scalar(e.this, pa.string())
    text = e.this
    try:
        v: int | float = int(text)
    except ValueError:
        v = float(text)
    if isinstance(v, int) and not -2**63 <= v < 2**63:
        raise Unsupported("integer literal out of BIGINT range")
    return pa.scalar(v, pa.int64() if isinstance(v, int) else pa.float64())


def _decode(v: "pa.Array | pa.Scalar") -> "pa.Array | pa.Scalar":
    return v.dictionary_decode() if isinstance(v, pa.Array) and pa.types.is_dictionary(v.type) else v


def _compare(fn: Callable, a: "pa.Array | pa.Scalar", b: "pa.Array | pa.Scalar") -> "pa.Array | pa.Scalar":
    """A comparison; a dictionary column against a constant compares the dictionary once."""
    for v in (a, b):
        if _is_float(v):
            _no_nan(v)
    if pa.types.is_null(a.type) or pa.types.is_null(b.type):  # x = NULL is NULL for every row
        other = b if pa.types.is_null(a.type) else a
        if isinstance(other, pa.Array):
            return pa.nulls(len(other), pa.bool_())
        return pa.scalar(None, pa.bool_())
    if isinstance(a, pa.Array) and pa.types.is_dictionary(a.type) and isinstance(b, pa.Scalar):
        return fn(a.dictionary, b).take(a.indices)
    if isinstance(b, pa.Array) and pa.types.is_dictionary(b.type) and isinstance(a, pa.Scalar):
        return fn(a, b.dictionary).take(b.indices)
    a, b = _decode(a), _decode(b)
    if _is_number(a) and _is_number(b) and (_is_float(a) or _is_float(b)):
        a, b = _as_float(a), _as_float(b)  # DuckDB compares BIGINT with DOUBLE as doubles
    return fn(a, b)


def _all(v: "pa.Array | pa.Scalar", value: bool) -> bool:
    """Every row is ``value`` (not NULL)."""
    if isinstance(v, pa.Scalar):
        return v.is_valid and v.as_py() is value
    if v.null_count:
        return False
    return not pc.any(v if not value else pc.invert(v)).as_py()


def _bool(v: "pa.Array | pa.Scalar") -> "pa.Array | pa.Scalar":
    if not (pa.types.is_boolean(v.type) or pa.types.is_null(v.type)):
        raise Unsupported("not a boolean")
    return v.cast(pa.bool_()) if pa.types.is_null(v.type) else v


def _number(v: "pa.Array | pa.Scalar") -> "pa.Array | pa.Scalar":
    if not _is_number(v):
        raise Unsupported("not a number")
    return v


def _is_number(v: "pa.Array | pa.Scalar") -> bool:
    return pa.types.is_integer(v.type) or pa.types.is_floating(v.type) or pa.types.is_null(v.type)


def _is_float(v: "pa.Array | pa.Scalar") -> bool:
    return pa.types.is_floating(v.type)


def _as_float(v: "pa.Array | pa.Scalar") -> "pa.Array | pa.Scalar":
    return v if pa.types.is_float64(v.type) else v.cast(pa.float64())


def _no_nan(v: "pa.Array | pa.Scalar") -> None:
    if not _is_float(v):
        return
    if isinstance(v, pa.Scalar):
        if v.is_valid and v.as_py() != v.as_py():
            raise Unsupported("NaN")
    elif pc.any(pc.is_nan(v)).as_py():
        raise Unsupported("NaN")
