"""Per-item ground-truth counts (``item_counts``), kept in step with ``annotations``.

Per-item count queries (``annotations.pedestrian >= 4``) would otherwise GROUP BY every current box. This
rollup holds, per item, one row per label (``kind`` NULL), one per kind (``label`` NULL) and the item's total
(both NULL), so every count the DSL can ask for is one row per item: a filtered scan, no GROUP BY at query
time. ``annotations.label`` is NOT NULL, so NULL is a safe "all" marker (a label named "box" is still told
apart from the kind: by which column is NULL, not by value). Rows are written ordered by label and kind so
a scan for one of them skips most row groups on their zone maps.

Every label change calls :func:`refresh` inside its transaction, after writing version ``v``'s rows: only
the items with a row opened or closed at ``v`` are recounted. ``label_count_versions`` records the label
version (and the annotations row count and highest key) the counts reflect, so a reader can tell when they
lag (e.g. rows written by hand with SQL) and fall back to ``annotations``.

A dataset's first counts are not written by the write that labels it: that would count every box of a
bulk import on the import's critical path, for queries that may never come (``loupe eval``'s throwaway
workspace). The write records ``label_version = DEFERRED`` instead, later writes leave it so, and the
first DSL query on the dataset builds the counts (:func:`engine.store.derived.catch_up`); until then, and
in read-only stores, queries read ``annotations``. (An in-place UPDATE of
``annotations`` by hand goes unnoticed; the API never does one except to close rows, and :func:`rebuild`
recounts.)

The same counts are also kept one row per item (:mod:`engine.store.count_columns`), written with these.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.store import count_columns

if TYPE_CHECKING:
    from engine.store.database import Store

TABLES = ("item_counts", "label_count_versions")
DEFERRED = -1  # label_count_versions.label_version of a dataset whose counts wait for its first query
_REPLACED = "item_label_counts"  # what older Loupes kept instead: one row per item, label and kind

_DDL = (
    """CREATE TABLE IF NOT EXISTS item_counts (dataset_id INTEGER NOT NULL, item_id BIGINT NOT NULL,
       label VARCHAR, kind VARCHAR, n BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS label_count_versions (dataset_id INTEGER NOT NULL, label_version INTEGER NOT NULL,
       n_rows BIGINT NOT NULL, max_key BIGINT)""",
)

_COUNT = """INSERT INTO item_counts
            SELECT dataset_id, item_id, label, kind, count(*) FROM annotations
            WHERE dataset_id = $ds AND valid_to IS NULL {only}
            GROUP BY GROUPING SETS ((dataset_id, item_id, label), (dataset_id, item_id, kind), (dataset_id, item_id))
            ORDER BY label NULLS LAST, kind NULLS LAST, item_id"""


def _set_version(con, dataset_id: int, v: int) -> None:
    con.execute("DELETE FROM label_count_versions WHERE dataset_id = $ds", {"ds": dataset_id})
    con.execute("""INSERT INTO label_count_versions
                   SELECT $ds, $v, count(*), max(ann_key) FROM annotations WHERE dataset_id = $ds""",
                {"ds": dataset_id, "v": v})


def refresh(store: "Store", dataset_id: int, v: int) -> None:
    """Recount the items whose annotations changed in label version ``v`` (call inside its transaction).

    A dataset without counts yet (its first labels) or with counts deferred keeps them deferred; when the
    counts did not reflect the previous version, the whole dataset is recounted instead.
    """
    con = store.con
    prev = _kept_version(store, dataset_id)
    if prev is None:
        defer(store, dataset_id)
        return
    if prev == DEFERRED:
        return
    if prev != v - 1:
        rebuild(store, dataset_id, v)
        return
    p = {"ds": dataset_id, "v": v}
    columns_in_step = count_columns.in_step(store, dataset_id)
    con.execute("""CREATE OR REPLACE TEMP TABLE __touched AS SELECT DISTINCT item_id FROM annotations
                   WHERE dataset_id = $ds AND (valid_from = $v OR valid_to = $v)""", p)
    try:
        con.execute("DELETE FROM item_counts WHERE dataset_id = $ds AND item_id IN (SELECT item_id FROM __touched)",
                    {"ds": dataset_id})
        con.execute(_COUNT.format(only="AND item_id IN (SELECT item_id FROM __touched)"), {"ds": dataset_id})
        _set_version(con, dataset_id, v)
        count_columns.refresh(store, dataset_id, columns_in_step)  # the same items' rows, side by side
    finally:
        con.execute("DROP TABLE IF EXISTS __touched")


def rebuild(store: "Store", dataset_id: int, v: int | None = None) -> None:
    """Recount a whole dataset (``v``: its current label version; read from ``datasets`` when None)."""
    con = store.con
    if v is None:
        v = int(con.execute("SELECT label_version FROM datasets WHERE dataset_id = $ds", {"ds": dataset_id}).fetchone()[0])
    con.execute("DELETE FROM item_counts WHERE dataset_id = $ds", {"ds": dataset_id})
    con.execute(_COUNT.format(only=""), {"ds": dataset_id})
    _set_version(con, dataset_id, v)
    count_columns.rebuild(store, dataset_id)


def defer(store: "Store", dataset_id: int) -> None:
    """Mark the dataset's counts as waiting for its first DSL query (none are kept until then)."""
    forget(store, dataset_id)
    store.con.execute("INSERT INTO label_count_versions VALUES ($ds, $v, 0, NULL)", {"ds": dataset_id, "v": DEFERRED})


def deferred(store: "Store", dataset_id: int) -> bool:
    """Whether the dataset's counts wait for its first DSL query."""
    return _kept_version(store, dataset_id) == DEFERRED


def _kept_version(store: "Store", dataset_id: int) -> int | None:
    """The label version the dataset's counts reflect (None: none kept; DEFERRED)."""
    return store.con.execute("SELECT max(label_version) FROM label_count_versions WHERE dataset_id = $ds",
                             {"ds": dataset_id}).fetchone()[0]


def forget(store: "Store", dataset_id: int) -> None:
    """Drop a deleted dataset's counts."""
    for t in TABLES:
        store.con.execute(f"DELETE FROM {t} WHERE dataset_id = $ds", {"ds": dataset_id})
    count_columns.forget(store, dataset_id)


def ensure(store: "Store") -> None:
    """Create and fill the tables in a workspace written before they existed, dropping the
    ``item_label_counts`` they replace (writable stores only; read-only ones read ``annotations``). The
    count columns (:mod:`engine.store.count_columns`) are filled from these, so a workspace lacking them
    is recounted whole."""
    store.ensure_tables(TABLES + count_columns.TABLES, _DDL + count_columns.DDL, lambda ds: rebuild(store, ds),
                        replaces=(_REPLACED,))


def present(store: "Store") -> bool:
    """Whether the workspace has these tables and no ``item_label_counts``: older read-only workspaces may
    lack them, and when both are there an older Loupe has opened the file since and may have changed labels
    without recounting ``item_counts`` (while keeping ``label_count_versions``)."""
    return store.has_tables(TABLES) and not store.has_tables([_REPLACED])
