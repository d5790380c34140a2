"""Item metadata leaves pre-extracted (``item_metadata_values``), kept in step with ``items.metadata``.

A filter such as ``metadata.weather.rain > 0.9`` would parse every item's JSON per query; this table
holds one row per item and scalar leaf (path ``weather.rain``) with the value split by JSON type
(``v_num`` for numbers, ``v_str`` for strings, ``v_bool`` for booleans), so a query joins the rows of one
path instead. Paths are json_tree's ``fullkey`` without ``$.``; keys that are not plain identifiers come
out quoted, and array elements as ``[i]`` (the compiler only looks up identifier paths). For a key that
occurs twice in one object the first occurrence is kept, as ``json_extract`` reads it. Rows are written
ordered by path, so a query reads the row groups of its path only (1M items, 5 paths: 166 -> 40 ms).

Every write of ``items.metadata`` through the API calls :func:`refresh` for the items it wrote, inside
its transaction. ``item_value_state`` records the item count and highest item id the rows were taken at,
so rows inserted or deleted by hand show up; raw SQL run with ``Workspace.sql`` rebuilds (or marks the
table stale when it cannot).

As with the per-item counts (:mod:`engine.store.label_counts`), a dataset's first items do not extract
their values in the write: ``item_value_state.n_items = DEFERRED`` marks the dataset, later writes keep the
mark, and its first DSL query extracts the whole dataset (:func:`engine.store.derived.catch_up`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.store.database import Store

TABLES = ("item_metadata_values", "item_value_state")
DEFERRED = -1  # item_value_state.n_items of a dataset whose values wait for its first query
NUMBER_TYPES = ("BIGINT", "UBIGINT", "DOUBLE", "HUGEINT")  # json_type names read as numbers (queries/metadata.py)

_DDL = (
    """CREATE TABLE IF NOT EXISTS item_metadata_values (dataset_id INTEGER NOT NULL, item_id BIGINT NOT NULL,
       path VARCHAR NOT NULL, v_num DOUBLE, v_str VARCHAR, v_bool BOOLEAN)""",
    """CREATE TABLE IF NOT EXISTS item_value_state (dataset_id INTEGER NOT NULL, n_items BIGINT NOT NULL,
       max_item BIGINT)""",
)

_NUM = "(" + ", ".join(f"'{t}'" for t in NUMBER_TYPES) + ")"
_SCALAR = "(" + ", ".join(f"'{t}'" for t in NUMBER_TYPES + ("VARCHAR", "BOOLEAN")) + ")"
_EXTRACT = f"""INSERT INTO item_metadata_values
    SELECT dataset_id, item_id, substr(fullkey, 3),
           CASE WHEN type IN {_NUM} THEN value::DOUBLE END,
           CASE WHEN type = 'VARCHAR' THEN value ->> '$' END,
           CASE WHEN type = 'BOOLEAN' THEN value::BOOLEAN END
    FROM (SELECT i.dataset_id, i.item_id, j.fullkey, j.type, j.value,
                 row_number() OVER (PARTITION BY i.item_id, j.fullkey ORDER BY j.id) AS k
          FROM items i, json_tree(i.metadata) j
          WHERE i.dataset_id = $ds AND i.metadata IS NOT NULL AND j.fullkey LIKE '$.%' {{only}})
    WHERE k = 1 AND type IN {_SCALAR}
    ORDER BY 1, 3, 2"""  # by dataset, path, item: a path's rows share row groups (zone maps skip the others)


# a counter per dataset moved by every write of its items' metadata (see bump_version)
VERSION_TABLE = "item_metadata_version"
_VERSION_DDL = f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (dataset_id INTEGER NOT NULL, version BIGINT NOT NULL)"


def _set_state(con, dataset_id: int) -> None:
    con.execute("DELETE FROM item_value_state WHERE dataset_id = $ds", {"ds": dataset_id})
    con.execute("""INSERT INTO item_value_state SELECT $ds, count(*), max(item_id) FROM items
                   WHERE dataset_id = $ds""", {"ds": dataset_id})
    bump_version(con, dataset_id)


def bump_version(con, dataset_id: int) -> None:
    """Move the dataset's metadata version: every write of ``items.metadata`` through Loupe does (here, as
    it re-extracts), so the DSL catalog reads the metadata types again only when the version moved instead
    of hashing every document after each write (1M items: ~40 ms). The row outlives a deleted dataset, so
    a later dataset with the same id never meets an old version. (As with the values themselves, an
    in-place UPDATE of the metadata outside Loupe, or by a Loupe older than this table, goes unnoticed
    until the next write through Loupe.)"""
    con.execute(f"""INSERT INTO {VERSION_TABLE}
                    SELECT $ds, coalesce(max(version), 0) + 1 FROM {VERSION_TABLE} WHERE dataset_id = $ds""",
                {"ds": dataset_id})
    con.execute(f"""DELETE FROM {VERSION_TABLE} WHERE dataset_id = $ds
                    AND version < (SELECT max(version) FROM {VERSION_TABLE} WHERE dataset_id = $ds)""",
                {"ds": dataset_id})


def refresh(store: "Store", dataset_id: int, reference_ids: str) -> None:
    """Re-extract the items whose ``reference_id`` is in the subquery ``reference_ids`` (inside the write's
    transaction, after writing them). A dataset without values yet, or with them deferred, is marked
    deferred instead (the metadata version still moves)."""
    con = store.con
    state = _kept_items(store, dataset_id)
    if state is None or state == DEFERRED:
        defer(store, dataset_id)
        return
    only = f"AND i.reference_id IN ({reference_ids})"
    con.execute(f"""DELETE FROM item_metadata_values WHERE dataset_id = $ds AND item_id IN
                    (SELECT item_id FROM items i WHERE i.dataset_id = $ds {only})""", {"ds": dataset_id})
    con.execute(_EXTRACT.format(only=only), {"ds": dataset_id})
    _set_state(con, dataset_id)


def defer(store: "Store", dataset_id: int) -> None:
    """Mark the dataset's values as waiting for its first DSL query (none are kept until then)."""
    con = store.con
    con.execute("DELETE FROM item_metadata_values WHERE dataset_id = $ds", {"ds": dataset_id})
    con.execute("DELETE FROM item_value_state WHERE dataset_id = $ds", {"ds": dataset_id})
    con.execute("INSERT INTO item_value_state VALUES ($ds, $n, NULL)", {"ds": dataset_id, "n": DEFERRED})
    bump_version(con, dataset_id)


def deferred(store: "Store", dataset_id: int) -> bool:
    """Whether the dataset's values wait for its first DSL query."""
    return _kept_items(store, dataset_id) == DEFERRED


def _kept_items(store: "Store", dataset_id: int) -> int | None:
    """The item count the dataset's values were extracted at (None: none kept; DEFERRED)."""
    return store.con.execute("SELECT max(n_items) FROM item_value_state WHERE dataset_id = $ds",
                             {"ds": dataset_id}).fetchone()[0]


def rebuild(store: "Store", dataset_id: int) -> None:
    """Re-extract a whole dataset."""
    con = store.con
    con.execute("DELETE FROM item_metadata_values WHERE dataset_id = $ds", {"ds": dataset_id})
    con.execute(_EXTRACT.format(only=""), {"ds": dataset_id})
    _set_state(con, dataset_id)


def present(store: "Store") -> bool:
    """Whether the workspace has these tables (older read-only workspaces may not)."""
    return store.has_tables(TABLES)

def ensure(store: "Store") -> None:
    """Create and fill the tables in a workspace written before they existed (writable stores only)."""
    store.ensure_tables(TABLES, _DDL, lambda ds: rebuild(store, ds))
    store.ensure_tables((VERSION_TABLE,), (_VERSION_DDL,), lambda ds: bump_version(store.con, ds))


def has_version(store: "Store") -> bool:
    """Whether the workspace keeps metadata versions (older read-only workspaces may not)."""
    return store.has_tables([VERSION_TABLE])