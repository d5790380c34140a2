"""Typed values of the compiler: a sqlglot expression with its DSL type, constant value and truth set.

Every user value enters SQL here, through ``exp.convert`` (never string formatting). Constant folding
follows SQL semantics (NULL propagates; three-valued AND/OR/NOT), so a branch whose filter can never be
true is dropped before DuckDB sees it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from sqlglot import exp

from .catalog import ANY, BOOLEAN, NULL, NUMBER, STRING
from .errors import DSLTypeError

NOCONST = object()
ALL = frozenset({True, False, None})
INT64 = 2 ** 63

_SQL_TYPES = {NUMBER: "DOUBLE", STRING: "VARCHAR", BOOLEAN: "BOOLEAN"}


@dataclass(frozen=True)
class Pos:
    """Where a value came from in the query text (1-based), for error carets."""

    line: int | None = None
    column: int | None = None
    length: int = 1


@dataclass
class Val:
    """A typed SQL value.

    Attributes:
        sql: the expression.
        type: number | string | boolean | null | any.
        const: the Python value of a constant (None = NULL), or NOCONST.
        truth: for booleans, the truth values it may take (subset of {True, False, None}).
        name: how to show it in messages (field name or literal text).
        domain: for fields with a closed set of values (label, kind, status, source).
        pos: where it came from.
    """

    sql: exp.Expression
    type: str
    const: Any = NOCONST
    truth: frozenset = ALL
    name: str = ""
    domain: str | None = None
    pos: Pos = field(default_factory=Pos)

    @property
    def is_const(self) -> bool:
        return self.const is not NOCONST

    def at(self, pos: Pos) -> "Val":
        return replace(self, pos=pos)


def literal(value: Any, pos: Pos = Pos(), name: str | None = None) -> Val:
    """A constant; the only way user values become SQL."""
    if value is None:
        return Val(exp.null(), NULL, None, frozenset({None}), name or "NULL", pos=pos)
    if isinstance(value, bool):
        return Val(exp.convert(value), BOOLEAN, value, frozenset({value}), name or str(value).upper(), pos=pos)
    if isinstance(value, (int, float)):
        value = number_value(value, pos)
        return Val(exp.convert(value), NUMBER, value, ALL, name or repr(value), pos=pos)
    if isinstance(value, str):
        return Val(exp.convert(value), STRING, value, ALL, name or _quote(value), pos=pos)
    raise TypeError(f"unsupported literal {value!r}")


def typed_null(type_: str, pos: Pos = Pos(), name: str = "NULL") -> Val:
    """NULL of a given DSL type (a field that does not exist on this side, e.g. confidence of GT)."""
    sql = exp.Cast(this=exp.null(), to=exp.DataType(this=exp.DataType.Type[_SQL_TYPES[type_]])) \
        if type_ in _SQL_TYPES else exp.null()
    return Val(sql, type_, None, frozenset({None}), name, pos=pos)


def number_value(v: int | float, pos: Pos = Pos()) -> int | float:
    if isinstance(v, int) and not isinstance(v, bool):
        return v if -INT64 < v < INT64 else number_value(float(v), pos)
    if not math.isfinite(v):
        raise DSLTypeError("number out of range", line=pos.line, column=pos.column, length=pos.length)
    return v


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- three-valued logic -------------------------------------------------------------------------
def _and3(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or3(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _not3(a: Any) -> Any:
    return None if a is None else not a


def boolean(sql: exp.Expression, truth: frozenset, name: str, pos: Pos) -> Val:
    """A condition; folded to a literal when only one truth value is possible."""
    if len(truth) == 1:
        (t,) = truth
        lit = literal(t, pos)
        return Val(lit.sql, BOOLEAN, t, truth, name, pos=pos)
    return Val(sql, BOOLEAN, NOCONST, truth, name, pos=pos)


def and_(a: Val, b: Val, pos: Pos) -> Val:
    truth = frozenset(_and3(x, y) for x in a.truth for y in b.truth)
    if a.truth == {True}:
        return b if len(truth) > 1 else boolean(b.sql, truth, b.name, pos)
    if b.truth == {True}:
        return a if len(truth) > 1 else boolean(a.sql, truth, a.name, pos)
    return boolean(exp.and_(_operand(a.sql), _operand(b.sql), copy=False), truth, f"{a.name} AND {b.name}", pos)


def or_(a: Val, b: Val, pos: Pos) -> Val:
    truth = frozenset(_or3(x, y) for x in a.truth for y in b.truth)
    if a.truth == {False}:
        return b if len(truth) > 1 else boolean(b.sql, truth, b.name, pos)
    if b.truth == {False}:
        return a if len(truth) > 1 else boolean(a.sql, truth, a.name, pos)
    return boolean(exp.or_(_operand(a.sql), _operand(b.sql), copy=False), truth, f"{a.name} OR {b.name}", pos)


def not_(a: Val, pos: Pos) -> Val:
    truth = frozenset(_not3(x) for x in a.truth)
    return boolean(exp.not_(paren(a.sql), copy=False), truth, f"NOT {a.name}", pos)


def _operand(e: exp.Expression) -> exp.Expression:
    """AND / OR operand: comparisons bind tighter than AND and OR, so only nested connectives need parens."""
    return exp.Paren(this=e) if isinstance(e, exp.Connector) else e


def paren(e: exp.Expression) -> exp.Expression:
    """Parenthesize compound expressions so generated SQL keeps the DSL's grouping."""
    if isinstance(e, (exp.Column, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Func, exp.Cast)):
        return e
    return exp.Paren(this=e)


# -- constant evaluation with SQL semantics ------------------------------------------------------
def compare_consts(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def arith_consts(op: str, a: Any, b: Any, pos: Pos) -> Any:
    if a is None or b is None:
        return None
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        if b == 0:
            return None
        r = a / b
    else:  # % with the sign of the dividend, like SQL
        if b == 0:
            return None
        r = math.fmod(a, b)
        if isinstance(a, int) and isinstance(b, int):
            r = int(r)
    return number_value(r, pos)


def type_name(t: str) -> str:
    return {NUMBER: "a number", STRING: "a string", BOOLEAN: "a boolean", NULL: "NULL", ANY: "a value"}.get(t, t)
