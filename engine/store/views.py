"""The convenience views of schema.sql (``current_annotations``, ``matched_pairs``) in older workspaces.

New workspaces get them from schema.sql; a workspace written before they existed gets them on its next
writable open (a read-only open cannot create them; query the base tables there). The DDL is read from
schema.sql so there is one definition.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.store.database import Store

VIEWS = ("current_annotations", "matched_pairs")


def view_ddl() -> list[str]:
    """The ``CREATE VIEW`` statements of schema.sql."""
    from engine.store.database import _read_sql, _sql_statements

    return [s for s in _sql_statements(_read_sql("engine.store", "schema.sql")) if s.upper().startswith("CREATE VIEW")]


def ensure(store: "Store") -> None:
    """Create the views a writable workspace lacks (each one missing is created; existing ones are kept)."""
    if store.read_only or store.has_tables(VIEWS):
        return
    with store.transaction() as con:
        for name, stmt in zip(VIEWS, view_ddl()):
            if not store.has_tables([name]):
                con.execute(stmt)
