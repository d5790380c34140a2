"""Derived query tables (per-item GT and match counts, pre-extracted item metadata): rebuild after raw SQL writes.

The API keeps them in step inside its own transactions; raw SQL through ``Workspace.sql`` cannot, so it
marks the store stale and the next DSL query rebuilds them here (or, read-only, reads the base tables).
A dataset's first writes defer its per-item GT counts and metadata values to its first DSL query, which
builds them here (:func:`catch_up`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.store import item_values
from engine.store import label_counts
from engine.store import match_counts

if TYPE_CHECKING:
    from engine.store.database import Store


def refresh_if_stale(store: "Store") -> None:
    """Rebuild every dataset's derived rows when raw SQL may have written since they were kept."""
    if not getattr(store, "derived_stale", False) or store.read_only:
        return
    if store.in_sql_transaction():  # the user's own transaction: read the base tables until it ends
        return
    if not (label_counts.present(store) and item_values.present(store) and match_counts.present(store)):
        return
    try:
        with store.transaction() as con:
            for (ds,) in con.execute("SELECT dataset_id FROM datasets").fetchall():
                label_counts.rebuild(store, int(ds))
                item_values.rebuild(store, int(ds))
                match_counts.rebuild(store, int(ds))
    except Exception:  # e.g. the user's raw SQL left a transaction open: keep reading the base tables
        return
    store.derived_stale = False


def catch_up(store: "Store", dataset_id: int) -> bool:
    """Build the dataset's deferred per-item GT counts and metadata values (see ``DEFERRED`` in
    :mod:`engine.store.label_counts` and :mod:`engine.store.item_values`) in one transaction; True when
    something was built. Read-only stores and a user's open SQL transaction keep reading the base tables."""
    if store.read_only or store.in_sql_transaction():
        return False
    built = False
    with store.transaction():  # checked inside it: another connection may have caught up meanwhile
        if label_counts.deferred(store, dataset_id):
            label_counts.rebuild(store, dataset_id)
            built = True
        if item_values.deferred(store, dataset_id):
            item_values.rebuild(store, dataset_id)
            built = True
    return built
