"""Vectorized validation of a registered Arrow batch: each rule is one SQL predicate.

A rule finds the first offending row (by ``__row``) so the error names that record and field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Collection, Sequence

import duckdb

from ..errors import ValidationError
from .schema import record_name


@dataclass(frozen=True)
class Rule:
    field: str
    predicate: str  # SQL, true for a BAD row; columns of the batch view are in scope
    message: str
    needs: tuple[str, ...] = ()  # columns that must hold a value somewhere for the rule to be able to fire
    # SQL aggregate over the batch, TRUE when no row breaks the rule: checked first when cheaper than the
    # predicate (a window), which then runs only if it says FALSE
    clean_if: str | None = None


_LITERAL = re.compile(r"'(?:[^']|'')*'")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def columns_read(rule: Rule, columns: Collection[str]) -> set[str]:
    """The ``columns`` a rule's predicate names: every word outside string literals that is one of them
    (an over-approximation, never missing a column). A caller that knows a column's values holds few
    distinct ones (ids looked up in a small table) can check the rules that read only those columns
    once per distinct value instead of once per row."""
    return set(_WORD.findall(_LITERAL.sub("''", rule.predicate))) & set(columns)


def enforce(con, view: str, rules: Sequence[Rule], params: dict | None = None, with_annotation_id: bool = False,
            present: Collection[str] | None = None) -> None:
    """Raise ValidationError for the first row (lowest ``__row``) breaking any rule (rules in order).

    All rules are evaluated in ONE scan of the batch (each rule's lowest bad ``__row`` as a
    ``min``), after one scan of the ``clean_if`` aggregates of the rules that have one (a rule shown
    clean is not evaluated); only when that query itself fails (a predicate erroring on some row) are the rules
    run one by one, which reports the same first violation. With ``present`` (the columns that
    hold at least one value), rules whose ``needs`` columns are all NULL are skipped: they
    cannot fire.
    """
    if present is not None:
        rules = [r for r in rules if all(c in present for c in r.needs)]
    pre = [r for r in rules if r.clean_if]
    if pre:
        flags = con.execute(f"SELECT {', '.join(f'coalesce(({r.clean_if}), FALSE)' for r in pre)} FROM {view}",
                            params or {}).fetchone()
        clean = {r for r, ok in zip(pre, flags) if ok}
        rules = [r for r in rules if r not in clean]
    if not rules:
        return
    cases = ", ".join(f"CASE WHEN coalesce(({r.predicate}), FALSE) THEN __row END AS __b{i}" for i, r in enumerate(rules))
    firsts = ", ".join(f"min(__b{i})" for i in range(len(rules)))
    try:
        found = con.execute(f"SELECT {firsts} FROM (SELECT __row, {cases} FROM {view})", params or {}).fetchone()
    except duckdb.Error:
        _enforce_each(con, view, rules, params, with_annotation_id)
        return
    for rule, row in zip(rules, found):
        if row is not None:
            ann = "annotation_id" if with_annotation_id else "NULL"
            ref, aid = con.execute(f"SELECT reference_id, {ann} FROM {view} WHERE __row = $r", {"r": row}).fetchone()
            raise ValidationError(rule.message, record=record_name(ref, row, aid), field=rule.field)


def _enforce_each(con, view: str, rules: Sequence[Rule], params: dict | None, with_annotation_id: bool) -> None:
    ann = "annotation_id" if with_annotation_id else "NULL"
    for rule in rules:
        row = con.execute(
            f"SELECT __row, reference_id, {ann} FROM (SELECT *, coalesce(({rule.predicate}), FALSE) AS __bad "
            f"FROM {view}) WHERE __bad ORDER BY __row LIMIT 1",
            params or {},
        ).fetchone()
        if row is not None:
            raise ValidationError(rule.message, record=record_name(row[1], row[0], row[2]), field=rule.field)


_INVISIBLE = r"[\s\v\pZ\p{Cc}\p{Cf}]*"  # whitespace, separators (NBSP...), control and format characters


def blank(col: str) -> str:
    """SQL: ``col`` is empty or shows nothing (spaces, tabs, newlines, NBSP, control or zero-width
    characters only). The regex runs only on strings whose first character is such a character (by
    code point): a whole-column regex costs as much as the rest of the checks together."""
    first = f"ord({col})"
    return (f"({col} = '' OR (({first} <= 32 OR {first} BETWEEN 127 AND 173 OR {first} >= 5760) "
            f"AND regexp_full_match({col}, '{_INVISIBLE}')))")


def trimmed(col: str) -> str:
    """SQL: ``trim(col)``, computed only for the strings that have a leading or trailing space."""
    return f"CASE WHEN starts_with({col}, ' ') OR ends_with({col}, ' ') THEN trim({col}) ELSE {col} END"


def finite(col: str) -> str:
    return f"({col} IS NULL OR isnan({col}) OR isinf({col}))"


METADATA_RULE = Rule(
    "metadata",
    "metadata IS NOT NULL AND coalesce(json_type(TRY_CAST(metadata AS JSON)) <> 'OBJECT', TRUE)",
    "metadata must be a JSON object",
    needs=("metadata",),
)


def present_columns(table) -> set[str]:
    """Columns of an Arrow table holding at least one non-NULL value."""
    return {c for c in table.column_names if table.column(c).null_count < table.num_rows}
