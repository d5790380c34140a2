"""Per-item match counts (``item_match_counts``), written with each run's ``matches`` rows.

``predictions.fp >= 3`` or ``predictions.pedestrian.fn > 0`` would otherwise GROUP BY the run's matches
rows (joined to the annotation / prediction row for a label) on every query. This table holds, per run,
IoU threshold, item and counted (source, status) — ``queries.fields.MATCH_COUNTS``: the prediction tp /
fp and GT fn rows — one row with ``label`` NULL (all labels) and one per label: the GT row's label for
source 'gt', the prediction's for source 'prediction'. A query reads one count as a filtered scan with at
most one row per item. (Writing the rows sorted by source, status and label saved ~1-2 ms per query on
1.4M matches rows and cost ~25 % more commit time for the counts, so they are not sorted.)

Commit writes the counts in the transaction that writes the matches rows (from the rows it inserts, which
carry their label); every other writer rebuilds them from ``matches``. ``match_count_state`` records how
many matches rows a run had when its counts were written, so the catalog can tell when they lag (rows
inserted or deleted by hand) and queries fall back to ``matches``. (An in-place UPDATE of ``matches``
by hand goes unnoticed; raw SQL through ``Workspace.sql`` rebuilds, see ``engine/store/derived.py``.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from queries.fields import MATCH_COUNTS

if TYPE_CHECKING:
    import pyarrow as pa

    from engine.store.database import Store

TABLES = ("item_match_counts", "match_count_state")

_DDL = (
    """CREATE TABLE IF NOT EXISTS item_match_counts (run_id INTEGER NOT NULL, iou_threshold DOUBLE NOT NULL,
       item_id BIGINT NOT NULL, source VARCHAR NOT NULL, status VARCHAR NOT NULL, label VARCHAR, n BIGINT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS match_count_state (run_id INTEGER NOT NULL, n_rows BIGINT NOT NULL)",
)

_COUNTED = " OR ".join(f"(source = '{s}' AND status = '{t}')" for s, t in MATCH_COUNTS.values())

# {rows}: a relation of matches rows with their label (run_id, iou_threshold, item_id, source, status, label).
# HAVING: a per-label row without a label (its object row is missing) would read as the all-labels row.
_COUNT = f"""INSERT INTO item_match_counts
    SELECT run_id, iou_threshold, item_id, source, status, label, count(*) FROM {{rows}}
    WHERE {_COUNTED}
    GROUP BY GROUPING SETS ((run_id, iou_threshold, item_id, source, status),
                            (run_id, iou_threshold, item_id, source, status, label))
    HAVING grouping(label) = 1 OR label IS NOT NULL"""

# the runs' matches rows labelled from the rows they point at (``{runs}``: a run_id subquery)
_LABELLED = """(SELECT m.run_id, m.iou_threshold, m.item_id, m.source, m.status,
                       CASE m.source WHEN 'gt' THEN a.label ELSE p.label END AS label
                FROM matches m
                LEFT JOIN annotations a ON a.ann_key = m.ann_key AND m.source = 'gt'
                LEFT JOIN predictions p ON p.pred_key = m.pred_key AND m.source = 'prediction'
                WHERE m.run_id IN {runs})"""

_RUNS_OF_DATASET = "(SELECT run_id FROM runs WHERE dataset_id = $ds)"


def _forget(con, runs: str, params: dict) -> None:
    for t in TABLES:
        con.execute(f"DELETE FROM {t} WHERE run_id IN {runs}", params)


def _set_state(con, run_id: int) -> None:
    # one run at a time: with the run id a constant, DuckDB counts from row-group statistics (~1 ms at 1.4M
    # rows), where a count grouped over several runs scans every matches row (~20 ms)
    con.execute("INSERT INTO match_count_state SELECT $run, count(*) FROM matches WHERE run_id = $run", {"run": run_id})


def write_committed(store: "Store", run_id: int, rows: str) -> None:
    """Replace a run's counts with those of its new matches rows, the registered relation ``rows`` (the
    matches columns plus ``label``). Call inside the commit's transaction, after inserting those rows."""
    con = store.con
    _forget(con, "($run)", {"run": run_id})
    con.execute(_COUNT.format(rows=rows))
    _set_state(con, run_id)


def write_counted(store: "Store", run_id: int, counts: "pa.Table") -> None:
    """Replace a run's counts with rows its commit counted itself (the ``item_match_counts`` columns, in
    order; ``engine.runs.commit`` counts in numpy, ~5x cheaper than grouping the matches rows again). Call
    inside the commit's transaction, after inserting its matches rows."""
    con = store.con
    _forget(con, "($run)", {"run": run_id})
    con.register("__new_match_counts", counts)
    try:
        con.execute("INSERT INTO item_match_counts SELECT * FROM __new_match_counts")
    finally:
        con.unregister("__new_match_counts")
    _set_state(con, run_id)


def counted_runs(store: "Store", dataset_id: int) -> set[int]:
    """The dataset's runs whose item_match_counts were written over the matches rows they have now (the row
    count :func:`_set_state` recorded is the current one)."""
    state = store.con.execute("""SELECT run_id, n_rows FROM match_count_state
                                 WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = $ds)""",
                              {"ds": dataset_id}).fetchall()
    return _current(store.con, state)


def _current(con, state: list[tuple[int, int]]) -> set[int]:
    """The runs of ``(run_id, n_rows)`` whose matches still have ``n_rows`` rows. One count per run: with the
    run id a constant, DuckDB answers from row-group statistics (~0.5 ms), where a correlated count scans
    every matches row."""
    return {int(run_id) for run_id, n in state
            if con.execute("SELECT count(*) FROM matches WHERE run_id = $run", {"run": run_id}).fetchone()[0] == n}


def run_totals(store: "Store", run_id: int) -> dict[tuple[str, str], int] | None:
    """A run's counted (source, status) totals from its all-labels rows, or None when its counts lag its
    matches rows (or the workspace has no such tables). Summing ~3 rows per item replaces a GROUP BY over
    every matches row (~20 ms at 536k rows)."""
    if not present(store):
        return None
    con = store.con
    state = con.execute("SELECT run_id, n_rows FROM match_count_state WHERE run_id = $run", {"run": run_id}).fetchall()
    if len(state) != 1 or not _current(con, state):
        return None
    rows = con.execute("""SELECT source, status, sum(n) FROM item_match_counts
                          WHERE run_id = $run AND label IS NULL GROUP BY ALL""", {"run": run_id}).fetchall()
    return {(src, st): int(n) for src, st, n in rows}


def rebuild(store: "Store", dataset_id: int) -> None:
    """Recount every run of a dataset from ``matches`` (inside a transaction)."""
    con, p = store.con, {"ds": dataset_id}
    _forget(con, _RUNS_OF_DATASET, p)
    con.execute(_COUNT.format(rows=_LABELLED.format(runs=_RUNS_OF_DATASET)), p)
    for (run_id,) in con.execute("SELECT run_id FROM runs WHERE dataset_id = $ds", p).fetchall():
        _set_state(con, int(run_id))


def ensure(store: "Store") -> None:
    """Create and fill the tables in a workspace written before they existed (writable stores only)."""
    store.ensure_tables(TABLES, _DDL, lambda ds: rebuild(store, ds))


def present(store: "Store") -> bool:
    """Whether the workspace has these tables (older read-only workspaces may not)."""
    return store.has_tables(TABLES)
