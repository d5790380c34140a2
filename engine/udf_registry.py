"""Registers Loupe's SQL functions (macros from ``udfs/*.sql``, Python UDFs) on a connection."""
from __future__ import annotations

from importlib import resources

import duckdb


def _macro_files() -> list[str]:
    root = resources.files("udfs")
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".sql"))


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Create every SQL macro shipped in ``udfs/`` on this connection (idempotent)."""
    from .store import _read_sql, _sql_statements

    for name in _macro_files():
        for stmt in _sql_statements(_read_sql("udfs", name)):
            con.execute(stmt)
