"""Import a run committed on Spark back into its workspace: matches index, counts and metrics.

The Spark commit's ``matches/run_id=R`` Parquet rows carry the workspace keys (the export kept
them), so they go straight into ``matches`` (with ``item_match_counts``) and ``metrics.json``
becomes the run's ``evaluations`` row, in one transaction (``engine.runs.commit.write_commit``).
Patches, insights, label errors and the App then work on the run as after a local commit.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from ..errors import LoupeError
from ..runs.commit import write_commit
from .commit import read_summary
from .kernel import MATCHES_COLUMNS

if TYPE_CHECKING:
    from ..api.model import ModelRun


def import_commit(run: "ModelRun", commit_dir: str | Path) -> int:
    """Load a Spark commit of ``run`` from ``commit_dir``; returns the number of matches rows."""
    meta = read_summary(commit_dir)
    folder = Path(commit_dir) / "matches" / f"run_id={int(meta['run_id'])}"
    if not folder.is_dir():
        raise LoupeError(f"{commit_dir} has no matches for run id {meta['run_id']}")
    table = pads.dataset(str(folder), format="parquet").to_table(columns=MATCHES_COLUMNS)
    store = run.ws.store
    con = store.con
    con.register("__spark_matches", table)
    try:  # the rows must be this run's objects: every key names a row of this workspace
        bad = con.execute(
            """SELECT count(*) FROM __spark_matches m WHERE
                 (m.source = 'prediction' AND NOT EXISTS (SELECT 1 FROM predictions p
                     WHERE p.pred_key = m.pred_key AND p.run_id = ? AND p.item_id = m.item_id))
              OR (m.source = 'gt' AND NOT EXISTS (SELECT 1 FROM annotations a
                     WHERE a.ann_key = m.ann_key AND a.dataset_id = ? AND a.item_id = m.item_id))""",
            [run.id, run.dataset_id]).fetchone()[0]
    finally:
        con.unregister("__spark_matches")
    if bad:
        raise LoupeError(f"{commit_dir} does not match run '{run.name}': {bad} matches rows name objects "
                         "this workspace does not hold (was the export made from another workspace?)")
    table = table.set_column(0, "run_id", pa.array(np.full(table.num_rows, run.id, np.int32)))
    write_commit(store, run.id, table, meta["stats"], meta["per_class"], meta["params"])
    return table.num_rows
