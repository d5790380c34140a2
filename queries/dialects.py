"""SQL text of a compiled query for a dialect (DuckDB runs it; Spark, Trino, Postgres are for reading).

The compiler keeps JSON paths as sqlglot ``JSONPath`` nodes so other dialects get their own JSON
functions. For DuckDB they become RFC 6901 pointers (``'/weather/rain'``), which escape every key
unambiguously (``$."a.b"`` style paths cannot express some keys).
"""
from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.generators.duckdb import DuckDBGenerator

DIALECTS = ("duckdb", "spark", "trino", "postgres")


def _pointer(path: exp.JSONPath) -> str:
    parts = []
    for p in path.expressions:
        if isinstance(p, exp.JSONPathRoot):
            continue
        key = str(p.this)
        parts.append(key.replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts) if parts else ""


def _json_sql(gen: "DuckDBGenerator", node: exp.Expression) -> str:
    """JSONExtract[Scalar](col, JSONPath) -> json_extract[_string](col, '/json/pointer')."""
    if not isinstance(node.expression, exp.JSONPath):
        fallback = DuckDBGenerator.TRANSFORMS.get(type(node))
        return fallback(gen, node) if fallback else getattr(DuckDBGenerator, f"{node.key}_sql")(gen, node)
    name = "json_extract_string" if isinstance(node, exp.JSONExtractScalar) else "json_extract"
    return gen.func(name, node.this, exp.Literal.string(_pointer(node.expression)))


_IDENTIFIERS: dict[tuple[str, bool], str] = {}  # (name, quoted) -> text, for DuckDB without identify/normalize
_MAX_IDENTIFIERS = 4096


class _LoupeDuckDBGenerator(DuckDBGenerator):
    """DuckDB's generator with JSON pointers, and identifiers and plain columns written without the general
    path (an object query has ~350 identifier and ~130 column nodes: a third of its generation time)."""

    TRANSFORMS = {**DuckDBGenerator.TRANSFORMS, exp.JSONExtract: _json_sql, exp.JSONExtractScalar: _json_sql}

    def identifier_sql(self, expression: exp.Identifier) -> str:
        if self.normalize or self.identify:
            return super().identifier_sql(expression)
        key = (expression.this, bool(expression.quoted))  # the text depends on nothing else then
        text = _IDENTIFIERS.get(key)
        if text is None:
            text = super().identifier_sql(expression)
            if len(_IDENTIFIERS) < _MAX_IDENTIFIERS:
                _IDENTIFIERS[key] = text
        return text

    def column_sql(self, expression: exp.Column) -> str:
        args = expression.args
        this, tab = args.get("this"), args.get("table")
        if (type(this) is exp.Identifier and (tab is None or type(tab) is exp.Identifier)
                and not expression.comments
                and all(v is None for k, v in args.items() if k != "this" and k != "table")):  # [table.]name
            name = self.identifier_sql(this)
            return name if tab is None else f"{self.identifier_sql(tab)}.{name}"
        return super().column_sql(expression)


class LoupeDuckDB(DuckDB):
    """DuckDB with JSON paths written as RFC 6901 pointers (one generation pass, no tree rewrite)."""

    generator_class = _LoupeDuckDBGenerator


def to_sql(expression: exp.Expression, dialect: str = "duckdb", pretty: bool = False) -> str:
    """The SQL text of ``expression`` in ``dialect`` (the tree is left as it was).

    Example:
        >>> to_sql(compiled.expression, "spark")
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect '{dialect}'; one of {', '.join(DIALECTS)}")
    if dialect != "duckdb":
        return expression.sql(dialect=dialect, pretty=pretty)
    return expression.sql(dialect=LoupeDuckDB, pretty=pretty, copy=False, comments=False)  # generation does not modify the tree
