"""SQL text of a compiled query for a dialect (DuckDB runs it; Spark, Trino, Postgres are for reading).

The compiler keeps JSON paths as sqlglot ``JSONPath`` nodes so other dialects get their own JSON
functions. For DuckDB they become RFC 6901 pointers (``'/weather/rain'``), which escape every key
unambiguously (``$."a.b"`` style paths cannot express some keys).
"""
from __future__ import annotations

from sqlglot import exp

DIALECTS = ("duckdb", "spark", "trino", "postgres")


def _pointer(path: exp.JSONPath) -> str:
    parts = []
    for p in path.expressions:
        if isinstance(p, exp.JSONPathRoot):
            continue
        key = str(p.this)
        parts.append(key.replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts) if parts else ""


def _duckdb_json(node: exp.Expression) -> exp.Expression:
    """JSONExtract[Scalar](col, JSONPath) -> json_extract[_string](col, '/json/pointer')."""
    name = "json_extract_string" if isinstance(node, exp.JSONExtractScalar) else "json_extract"
    return exp.Anonymous(this=name, expressions=[node.this.copy(), exp.Literal.string(_pointer(node.expression))])


def to_sql(expression: exp.Expression, dialect: str = "duckdb", pretty: bool = False) -> str:
    """The SQL text of ``expression`` in ``dialect`` (the tree is left as it was).

    Example:
        >>> to_sql(compiled.expression, "spark")
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect '{dialect}'; one of {', '.join(DIALECTS)}")
    if dialect != "duckdb":
        return expression.sql(dialect=dialect, pretty=pretty)
    # swap JSON nodes for DuckDB calls in place, generate without sqlglot's defensive deep copy, swap back
    nodes = [n for n in expression.find_all(exp.JSONExtract, exp.JSONExtractScalar)
             if isinstance(n.expression, exp.JSONPath)]
    swaps = []
    for n in nodes:
        new = _duckdb_json(n)
        if n is expression:
            expression = new
        else:
            n.replace(new)
        swaps.append((new, n))
    try:
        return expression.sql(dialect="duckdb", pretty=pretty, copy=False)
    finally:
        for new, old in reversed(swaps):
            if new.parent is not None:
                new.replace(old)
