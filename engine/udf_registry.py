"""Registers Loupe's SQL functions (macros from ``udfs/*.sql``, Python UDFs) on a connection."""
from __future__ import annotations

import re
from importlib import resources

import duckdb


def _macro_files() -> list[str]:
    root = resources.files("udfs")
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".sql"))


_CREATE_MACRO = re.compile(r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?MACRO", re.I)


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Create every SQL macro shipped in ``udfs/`` on this connection (idempotent).

    Macros are created TEMP: they then live in the connection's temp catalog, which also works on a
    workspace opened read-only, and never end up stored in (or required by) the workspace file.
    """
    from .store import _read_sql, _sql_statements

    for name in _macro_files():
        for stmt in _sql_statements(_read_sql("udfs", name)):
            con.execute(_CREATE_MACRO.sub("CREATE OR REPLACE TEMP MACRO", stmt, count=1))
