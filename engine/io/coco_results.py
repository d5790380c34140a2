"""A COCO bbox results file stored as a run in SQL, without an Arrow round trip of its detections.

The Arrow path (:func:`engine.io.coco.parse_results` + :func:`engine.ingest.annotations.write_predictions`)
turns 500,000 detections into Arrow columns, a numpy prediction table, a registered batch and then
inserts it: ~0.45 s CPU of a ~1 s import. Here DuckDB's JSON reader fills a table of an in-memory
database attached to the workspace (``ATTACH ':memory:'``: every connection of the workspace sees it,
and filling it is not part of the import's transaction, which may write only one database), on a
helper thread while the caller parses and stores the ground truth. The same thread then scans the
table once (:func:`_facts`): row count, the distinct image and category ids, whether every row is a
plain bbox detection (a 4-value ``bbox``, a ``score``, both ids, no ``segmentation`` or
``keypoints``) and which stored-prediction rules over a detection's own fields (finite box, width
>= 0, finite score ...) some row breaks. The import's transaction then:

1. takes the Arrow path, on the same table, unless the file is plain and names only images and
   categories of the ground truth (a segm or keypoints file is stored, a bad record is named,
   exactly as before);
2. checks the rules over id-derived columns (``reference_id``, ``label``, item) once per id the file
   names, and leaves to :func:`engine.ingest.annotations.write_predictions_view` only the rules found
   broken and those mixing both (a box outside its image): the first failing rule and row, message and
   record name are the Arrow path's;
3. inserts with the Arrow path's INSERT, in file order.

Ids map to items and labels by list lookups (``items[image_id - lo + 1]``), not joins: a join does not
keep the file order the rows are inserted in. Image ids spread over more than :data:`MAX_SPAN` values
take the Arrow path.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.store.database import to_arrow
from ..ingest.annotations import prediction_rules, write_predictions_view
from ..ingest.checks import Rule, columns_read
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
MAX_JSON = 1 << 31  # the Arrow path's own reader (no memory limit)
# The staged read runs in the workspace, under its memory limit (4 GB for files), and DuckDB reserves a
# buffer of twice this; a file it cannot read this way goes the Arrow path.
STAGED_MAX_JSON = 1 << 26
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


# Per detection, what comes from its own record (+ __plain: a row this path covers).
_ROWS_SQL = f"""(
SELECT rowid AS __row, image_id, category_id, 'box' AS kind,
       {_nan_null('bbox[1]')} AS x, {_nan_null('bbox[2]')} AS y,
       {_nan_null('bbox[3]')} AS width, {_nan_null('bbox[4]')} AS height,
       {_nan_null('bbox[3] * bbox[4]')} AS area, score AS confidence,
       NULL::VARCHAR AS annotation_id, NULL::DOUBLE[][] AS polygon, NULL::UINTEGER[] AS mask,
       NULL::BIGINT AS mask_height, NULL::BIGINT AS mask_width, NULL::DOUBLE[] AS keypoints,
       NULL::VARCHAR[] AS keypoint_names, NULL::MAP(VARCHAR, DOUBLE) AS class_pdf, NULL::VARCHAR AS metadata,
       segmentation IS NULL AND keypoints IS NULL AND len(bbox) = 4 AND score IS NOT NULL
           AND image_id IS NOT NULL AND category_id IS NOT NULL AS __plain
FROM {{stage}})"""

# ... and what its ids look up: the batch view write_predictions_view reads.
_VIEW_SQL = """(
SELECT *, items[__k] AS __item_id, refs[__k] AS reference_id, heights[__k] AS __img_h, widths[__k] AS __img_w,
       labels[__c] AS label
FROM (SELECT r.*, CASE WHEN r.image_id BETWEEN l.lo AND l.hi THEN r.image_id - l.lo + 1 END AS __k,
             CASE WHEN r.category_id BETWEEN l.clo AND l.chi THEN r.category_id - l.clo + 1 END AS __c,
             l.items, l.refs, l.heights, l.widths, l.labels
      FROM {rows} r, {lookup} l))"""

# One row per image (category) the file names: the view's columns that depend on that id only.
_IMAGES_SQL = """(
SELECT items[__k] AS __item_id, refs[__k] AS reference_id, heights[__k] AS __img_h, widths[__k] AS __img_w
FROM (SELECT u.id - l.lo + 1 AS __k, l.items, l.refs, l.heights, l.widths FROM {used} u, {lookup} l))"""
_CATEGORIES_SQL = """(SELECT labels[u.id - l.clo + 1] AS label FROM {used} u, {lookup} l)"""

IMAGE_COLUMNS = {"__item_id", "reference_id", "__img_h", "__img_w"}
CATEGORY_COLUMNS = {"label"}
ROW_COLUMNS = {"__row", "kind", "x", "y", "width", "height", "area", "confidence", "annotation_id", "polygon", "mask",
               "mask_height", "mask_width", "keypoints", "keypoint_names", "class_pdf", "metadata"}
_COLUMNS = IMAGE_COLUMNS | CATEGORY_COLUMNS | ROW_COLUMNS
# Columns of the view that may hold values (rules needing only other columns cannot fire).
_PRESENT = {"reference_id", "kind", "label", "x", "y", "width", "height", "area", "confidence"}


def _rules_reading(columns: set[str]) -> list[Rule]:
    """The stored-prediction rules (any ``clip``) that read only ``columns`` of the batch view."""
    return [r for r in prediction_rules("keep") if columns_read(r, _COLUMNS) <= columns]


def _flags(rules: list[Rule], source: str) -> str:
    """SQL: one row, per rule whether some row of ``source`` breaks it."""
    cases = ", ".join(f"coalesce(({r.predicate}), FALSE) AS __f{i}" for i, r in enumerate(rules))
    return f"SELECT {', '.join(f'bool_or(__f{i})' for i in range(len(rules)))} FROM (SELECT {cases} FROM {source})"


@dataclass
class Staged:
    """A results file read into the workspace, and what one scan of it found (see :func:`_facts`)."""

    table: str
    rows: int
    odd: int  # rows this path does not cover (see the module docstring)
    image_ids: np.ndarray  # distinct ids the detections name
    category_ids: np.ndarray
    row_flags: dict[Rule, bool]  # per rule over a detection's own fields: does some row break it?


def _facts(cur, table: str) -> Staged:
    """One scan of the staged table: counts, the ids it names, and the rules over its own fields."""
    rules = _rules_reading(ROW_COLUMNS)
    cases = "".join(f", coalesce(({r.predicate}), FALSE) AS __f{i}" for i, r in enumerate(rules))
    t = to_arrow(cur.sql(
        f"""SELECT count(*) AS n, count(*) FILTER (WHERE NOT coalesce(__plain, FALSE)) AS odd,
                   list(DISTINCT image_id) AS image_ids, list(DISTINCT category_id) AS category_ids
                   {"".join(f", bool_or(__f{i}) AS __f{i}" for i in range(len(rules)))}
            FROM (SELECT image_id, category_id, __plain{cases} FROM {_ROWS_SQL.format(stage=table)})"""))
    ids = lambda c: np.asarray(pc.list_flatten(t.column(c)).drop_null(), dtype=np.int64)  # noqa: E731
    flags = {r: bool(t.column(f"__f{i}")[0].as_py()) for i, r in enumerate(rules)}
    return Staged(table, int(t.column("n")[0].as_py()), int(t.column("odd")[0].as_py()), ids("image_ids"),
                  ids("category_ids"), flags)


@contextlib.contextmanager
def staged_results(store: "Store", path: str | Path) -> Iterator[Callable[[], Staged | None]]:
    """Read a results file into a table of a new in-memory database attached to the workspace, on a
    helper thread (DuckDB's reader runs outside the GIL while the caller parses the ground truth).

    Yields a function that waits for the read and returns the :class:`Staged` table, or None when
    DuckDB refused the file (the Arrow path then reads it again and names what is wrong). The
    database is detached on exit: leave the block after the transaction that reads the table ended.
    """
    db = f"__loupe_results_{next(_names)}"
    out: dict = {}
    with store.hold():
        con = store.con
        con.execute(f"ATTACH ':memory:' AS {db}")
        cur = con.cursor()  # made here: the helper thread then needs the GIL only to start statements

        def read() -> None:
            table = f"{db}.results"
            try:
                cur.execute(f"CREATE TABLE {table} AS {RESULTS_SQL}", {"path": str(path), "max": STAGED_MAX_JSON})
            except duckdb.Error:
                return  # not readable by DuckDB: the Arrow path reads the file with ``json`` and names the error
            except BaseException as e:  # noqa: BLE001 (handed to the caller's thread)
                out["error"] = e
                return
            try:
                out["staged"] = _facts(cur, table)
            except duckdb.Error:  # not expected: then the Arrow path, from the table
                out["staged"] = Staged(table, 0, 1, np.zeros(0, np.int64), np.zeros(0, np.int64), {})
            except BaseException as e:  # noqa: BLE001
                out["error"] = e

        reader = threading.Thread(target=read, name="loupe-coco-results", daemon=True)
        reader.start()

        def staged() -> Staged | None:
            reader.join()
            if "error" in out:
                raise out["error"]
            return out.get("staged")

        try:
            yield staged
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


def _clean_by_id(store: "Store", ids: np.ndarray, sql: str, rules: list[Rule], lookup: str) -> set[Rule]:
    """The ``rules`` that no row of ``sql`` (one per id of ``ids``, looked up in ``lookup``) breaks."""
    if not rules:
        return set()
    con = store.con
    used = f"{lookup}_used"
    con.register(used, pa.table({"id": ids}))
    try:
        flags = con.execute(_flags(rules, sql.format(used=used, lookup=lookup))).fetchone()
    finally:
        con.unregister(used)
    return {r for r, broken in zip(rules, flags) if not broken}


def store_staged(ws: "Workspace", ds: "Dataset", staged: Staged, index: "CocoIndex", run: str | None,
                 model: str | None, clip: bool | str) -> int | None:
    """Store ``staged`` results as run ``run`` (inside the caller's transaction) if they are a plain
    bbox file of ``index``; returns the number stored, or None (nothing written) otherwise.

    Raises:
        ValidationError: a rule of stored predictions fails (named as the Arrow path names it).
    """
    from ..api.model import new_run

    if staged.odd or not (np.isin(staged.image_ids, index.image_ids).all()
                          and np.isin(staged.category_ids, index.cat_ids).all()):
        return None
    store = ws.store
    lookup = f"{staged.table.split('.')[0]}_lookup"
    if not _lookup(store, ds.id, index, lookup):
        return None
    try:
        clean = {r for r, broken in staged.row_flags.items() if not broken}
        for ids, sql, columns in ((staged.image_ids, _IMAGES_SQL, IMAGE_COLUMNS),
                                  (staged.category_ids, _CATEGORIES_SQL, CATEGORY_COLUMNS)):
            clean |= _clean_by_id(store, ids, sql, _rules_reading(columns), lookup)
        run_id = new_run(run_model(ws, run, model), run, ds)
        view = _VIEW_SQL.format(rows=_ROWS_SQL.format(stage=staged.table), lookup=lookup)
        write_predictions_view(store, run_id, view, clip, present=_PRESENT, known_clean=clean)
        return staged.rows
    finally:
        store.con.execute(f"DROP TABLE IF EXISTS {lookup}")
