"""A COCO bbox results file stored as a run in SQL, without an Arrow round trip of its detections.

The Arrow path (:func:`engine.io.coco.parse_results` + :func:`engine.ingest.annotations.write_predictions`)
turns 500,000 detections into Arrow columns, a numpy prediction table, a registered batch and then
inserts it: ~0.45 s CPU of a ~1 s import. Here DuckDB's JSON reader fills a table of an in-memory
database attached to the workspace (``ATTACH ':memory:'``: every connection of the workspace sees it,
and filling it is not part of the import's transaction, which may write only one database), on a
helper thread while the caller parses and stores the ground truth. The import's transaction then:

1. checks in one aggregate that the file is a plain bbox file of this ground truth: every row has a
   4-value ``bbox`` and a ``score``, no ``segmentation`` or ``keypoints``, and an ``image_id`` and
   ``category_id`` the ground truth has. If not, the Arrow path runs on the same table (a segm or
   keypoints file is stored, a bad record is named exactly as before);
2. checks every rule of a stored run over a view shaped like the Arrow path's batch (same rules,
   messages and record names: :func:`engine.ingest.annotations.write_predictions_view`) and
3. inserts with the Arrow path's INSERT, in file order.

Ids map to items and labels by list lookups (``items[image_id - lo + 1]``), not joins: a join does not
keep the file order the rows are inserted in. Image ids spread over more than :data:`MAX_SPAN` values
take the Arrow path.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa

from ..ingest.annotations import write_predictions_view
from ._common import run_model

if TYPE_CHECKING:
    from ..api.dataset import Dataset
    from ..api.workspace import Workspace
    from engine.store.database import Store
    from .coco import CocoIndex

# What DuckDB's reader returns for a results file (the Arrow path reads the same columns).
RESULTS_SQL = """
SELECT image_id, category_id, bbox, score, segmentation, keypoints
FROM read_json($path, format = 'array', maximum_object_size = $max,
               columns = {image_id: 'BIGINT', category_id: 'BIGINT', bbox: 'DOUBLE[]', score: 'DOUBLE',
                          segmentation: 'JSON', keypoints: 'DOUBLE[]'})
"""
MAX_JSON = 1 << 31
MAX_SPAN = 1 << 21  # widest image-id range mapped by list lookup (2M ids: 16 MB per list)

_names = itertools.count()

# Per image slot (image_id - lo + 1) and category slot: the lists the view indexes. Holes are NULL.
_LOOKUP_SQL = """
SELECT $lo AS lo, $hi AS hi, $clo AS clo, $chi AS chi,
       list(i.item_id ORDER BY s.slot) AS items, list(s.reference_id ORDER BY s.slot) AS refs,
       list(i.height ORDER BY s.slot) AS heights, list(i.width ORDER BY s.slot) AS widths,
       (SELECT list(label ORDER BY slot) FROM {labels}) AS labels
FROM {slots} s LEFT JOIN items i ON i.dataset_id = $ds AND i.reference_id = s.reference_id
"""


def _nan_null(v: str) -> str:
    """NaN → NULL, as :func:`engine.ingest.annotations.prepare` does to the Arrow batch."""
    return f"CASE WHEN isnan({v}) THEN NULL ELSE {v} END"


# The batch view write_predictions_view reads (+ __plain: the row is one this path covers).
_VIEW_SQL = f"""(
SELECT __row, items[__k] AS __item_id, refs[__k] AS reference_id, heights[__k] AS __img_h, widths[__k] AS __img_w,
       'box' AS kind, labels[__c] AS label,
       {_nan_null('bbox[1]')} AS x, {_nan_null('bbox[2]')} AS y,
       {_nan_null('bbox[3]')} AS width, {_nan_null('bbox[4]')} AS height,
       {_nan_null('bbox[3] * bbox[4]')} AS area, score AS confidence,
       NULL::VARCHAR AS annotation_id, NULL::DOUBLE[][] AS polygon, NULL::UINTEGER[] AS mask,
       NULL::BIGINT AS mask_height, NULL::BIGINT AS mask_width, NULL::DOUBLE[] AS keypoints,
       NULL::VARCHAR[] AS keypoint_names, NULL::MAP(VARCHAR, DOUBLE) AS class_pdf, NULL::VARCHAR AS metadata,
       segmentation IS NULL AND keypoints IS NULL AND len(bbox) = 4 AND score IS NOT NULL AS __plain
FROM (SELECT r.rowid AS __row, r.bbox, r.score, r.segmentation, r.keypoints,
             CASE WHEN r.image_id BETWEEN l.lo AND l.hi THEN r.image_id - l.lo + 1 END AS __k,
             CASE WHEN r.category_id BETWEEN l.clo AND l.chi THEN r.category_id - l.clo + 1 END AS __c,
             l.items, l.refs, l.heights, l.widths, l.labels
      FROM {{stage}} r, {{lookup}} l))"""

# Columns of the view that may hold values (rules needing only other columns cannot fire).
_PRESENT = {"reference_id", "kind", "label", "x", "y", "width", "height", "area", "confidence"}


@contextlib.contextmanager
def staged_results(store: "Store", path: str | Path) -> Iterator[Callable[[], str | None]]:
    """Read a results file into a table of a new in-memory database attached to the workspace, on a
    helper thread (DuckDB's reader runs outside the GIL while the caller parses the ground truth).

    Yields a function that waits for the read and returns the table's name, or None when DuckDB
    refused the file (the Arrow path then reads it again and names what is wrong). The database is
    detached on exit: leave the block after the transaction that reads the table has ended.
    """
    db = f"__loupe_results_{next(_names)}"
    out: dict = {}
    with store.hold():
        con = store.con
        con.execute(f"ATTACH ':memory:' AS {db}")
        cur = con.cursor()  # made here: the helper thread then needs the GIL only to start the statement

        def read() -> None:
            try:
                cur.execute(f"CREATE TABLE {db}.results AS {RESULTS_SQL}", {"path": str(path), "max": MAX_JSON})
                out["table"] = f"{db}.results"
            except duckdb.Error:
                pass  # not readable by DuckDB: the Arrow path reads the file with ``json`` and names the error
            except BaseException as e:  # noqa: BLE001 (handed to the caller's thread)
                out["error"] = e

        reader = threading.Thread(target=read, name="loupe-coco-results", daemon=True)
        reader.start()

        def table() -> str | None:
            reader.join()
            if "error" in out:
                raise out["error"]
            return out.get("table")

        try:
            yield table
        finally:
            reader.join()
            with contextlib.suppress(duckdb.Error):
                cur.close()
            with contextlib.suppress(duckdb.Error):
                store.con.execute(f"DETACH {db}")


def _slots(ids: np.ndarray) -> tuple[int, int, np.ndarray] | None:
    """(lo, hi, position of each id in ``ids`` by slot ``id - lo``, -1 for holes); None if too spread."""
    if len(ids) == 0:
        return None
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo >= MAX_SPAN:
        return None
    pos = np.full(hi - lo + 1, -1, dtype=np.int64)
    pos[ids - lo] = np.arange(len(ids))
    return lo, hi, pos


def _lookup(store: "Store", dataset_id: int, index: "CocoIndex", name: str) -> bool:
    """Create temp table ``name``: one row of image and category lists (see :data:`_LOOKUP_SQL`).
    False when the ids are too spread for lists (nothing created)."""
    img, cat = _slots(index.image_ids), _slots(index.cat_ids)
    if img is None or cat is None:
        return False
    (lo, hi, ipos), (clo, chi, cpos) = img, cat
    slots = pa.table({"slot": np.arange(len(ipos)), "reference_id": index.refs.take(pa.array(ipos, mask=ipos < 0))})
    labels = pa.table({"slot": np.arange(len(cpos)), "label": index.labels.take(pa.array(cpos, mask=cpos < 0))})
    con = store.con
    con.register(f"{name}_slots", slots)
    con.register(f"{name}_labels", labels)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS "
                    + _LOOKUP_SQL.format(slots=f"{name}_slots", labels=f"{name}_labels"),
                    {"lo": lo, "hi": hi, "clo": clo, "chi": chi, "ds": dataset_id})
    finally:
        con.unregister(f"{name}_slots")
        con.unregister(f"{name}_labels")
    return True


def store_staged(ws: "Workspace", ds: "Dataset", table: str, index: "CocoIndex", run: str | None,
                 model: str | None, clip: bool | str) -> int | None:
    """Store staged results ``table`` as run ``run`` (inside the caller's transaction) if they are a
    plain bbox file of ``index``; returns the number stored, or None (nothing written) otherwise.

    Raises:
        ValidationError: a rule of stored predictions fails (named as the Arrow path names it).
    """
    from ..api.model import new_run

    store = ws.store
    lookup = f"{table.split('.')[0]}_lookup"
    if not _lookup(store, ds.id, index, lookup):
        return None
    try:
        view = _VIEW_SQL.format(stage=table, lookup=lookup)
        n, odd = store.con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT coalesce(__plain AND reference_id IS NOT NULL "
            f"AND label IS NOT NULL, FALSE)) FROM {view}").fetchone()
        if odd:
            return None
        run_id = new_run(run_model(ws, run, model), run, ds)
        write_predictions_view(store, run_id, view, clip, present=_PRESENT)
        return int(n)
    finally:
        store.con.execute(f"DROP TABLE IF EXISTS {lookup}")
