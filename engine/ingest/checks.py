"""Vectorized validation of a registered Arrow batch: each rule is one SQL predicate.

A rule finds the first offending row (by ``__row``) so the error names that record and field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ValidationError
from .schema import record_name


@dataclass(frozen=True)
class Rule:
    field: str
    predicate: str  # SQL, true for a BAD row; columns of the batch view are in scope
    message: str


def enforce(con, view: str, rules: Sequence[Rule], params: dict | None = None, with_annotation_id: bool = False) -> None:
    """Raise ValidationError for the first row (lowest ``__row``) breaking any rule."""
    ann = "annotation_id" if with_annotation_id else "NULL"
    for rule in rules:
        row = con.execute(
            f"SELECT __row, reference_id, {ann} FROM (SELECT *, coalesce(({rule.predicate}), FALSE) AS __bad "
            f"FROM {view}) WHERE __bad ORDER BY __row LIMIT 1",
            params or {},
        ).fetchone()
        if row is not None:
            raise ValidationError(rule.message, record=record_name(row[1], row[0], row[2]), field=rule.field)


def finite(col: str) -> str:
    return f"({col} IS NULL OR isnan({col}) OR isinf({col}))"


METADATA_RULE = Rule(
    "metadata",
    "metadata IS NOT NULL AND (NOT json_valid(metadata) OR json_type(metadata::JSON) <> 'OBJECT')",
    "metadata must be a JSON object",
)
