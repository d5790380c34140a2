"""Patches view: the evaluated objects of a committed run, one row each, with partner and IoU.

Reads the ``matches`` index written by commit (one row per prediction and per GT object) and joins
the boxes, labels and items. A row's *partner* is the object it was matched to; an unmatched object
(FP, FN) gets the object of the other side it overlaps most (``best_iou_key``) as partner instead,
so a mislabeled or badly placed detection shows the GT it was meant for. ``iou`` is only set for a
real match; ``best_iou`` is the overlap with that nearest object.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pyarrow as pa

from ..errors import LoupeError, ValidationError
from engine.store.database import Store
from ._sql import arrow, registered

if TYPE_CHECKING:
    from ..api.model import ModelRun

STATUSES = ("tp", "fp", "fn", "ignored")
ERROR_TYPES = ("classification", "localization", "both", "duplicate", "background", "missed")
SORT_KEYS = ("iou", "confidence", "area", "best_iou")

# Columns every patches table has (crops() and the CLI rely on them).
COLUMNS = (
    "source", "status", "error_type", "label", "partner_label", "partner_status", "kind",
    "x", "y", "width", "height", "partner_x", "partner_y", "partner_width", "partner_height",
    "iou", "best_iou", "confidence", "area", "reference_id", "image_location", "annotation_id",
    "partner_annotation_id", "item_width", "item_height", "item_id", "ann_key", "pred_key",
)


def match_threshold(store: Store, run_id: int, iou_threshold: float | None = None) -> float:
    """The IoU threshold whose matches to read: the one asked for, else 0.5 if stored, else the only/lowest.

    Raises:
        LoupeError: the run has not been committed (no matches).
        ValidationError: ``iou_threshold`` was not evaluated for this run.
    """
    stored = [r[0] for r in store.con.execute(
        "SELECT DISTINCT iou_threshold FROM matches WHERE run_id = ? ORDER BY 1", [run_id]).fetchall()]
    if not stored:
        name = store.scalar("SELECT name FROM runs WHERE run_id = ?", [run_id])
        raise LoupeError(f"run '{name}' has no matches yet: commit it first (run.commit())")
    if iou_threshold is None:
        return next((t for t in stored if abs(t - 0.5) < 1e-9), stored[0])
    for t in stored:
        if abs(t - float(iou_threshold)) < 1e-9:
            return t
    raise ValidationError(f"IoU threshold {iou_threshold} was not evaluated for this run; stored: "
                          + ", ".join(f"{t:g}" for t in stored), field="iou_threshold")


def _as_list(value: str | Iterable[str] | None, allowed: Sequence[str], field: str) -> list[str] | None:
    if value is None:
        return None
    vals = [value] if isinstance(value, str) else [str(v) for v in value]
    vals = [v.lower() for v in vals]
    bad = [v for v in vals if v not in allowed]
    if bad:
        raise ValidationError(f"unknown {field} {bad[0]!r}; expected one of {list(allowed)}", field=field)
    return vals


# The object is the row's own GT or prediction; a = the GT involved, p = the prediction involved.
# Two phases, so a page does not pay for the whole run: `rows` joins each object only to what the filter
# and the order need (its item and itself; the matched prediction for a GT's confidence), `top` keeps
# the page (a top-k when there is a LIMIT), and only those rows get their partner's box and status.
_SELECT = """
WITH m AS (
    SELECT m.*,
           CASE WHEN m.source = 'gt' THEN m.ann_key ELSE m.pred_key END AS obj_key,
           CASE WHEN m.source = 'gt' THEN m.pred_key ELSE m.ann_key END AS match_key
    FROM matches m
    WHERE m.run_id = $run AND m.iou_threshold = $thr {where_m}
), mp AS (
    SELECT m.*, coalesce(match_key, CASE WHEN best_iou > 0 THEN best_iou_key END) AS partner_key FROM m
), own AS (  -- each side joined to its own table only (the matched prediction gives a GT its confidence)
    SELECT mp.*, a.label, a.annotation_id, p.confidence, coalesce(a.area, a.width * a.height) AS area
    FROM mp LEFT JOIN annotations a ON a.ann_key = mp.obj_key
    LEFT JOIN predictions p ON p.run_id = $run AND p.pred_key = mp.match_key
    WHERE mp.source = 'gt'
    UNION ALL BY NAME
    SELECT mp.*, p.label, p.annotation_id, p.confidence, coalesce(p.area, p.width * p.height) AS area
    FROM mp LEFT JOIN predictions p ON p.run_id = $run AND p.pred_key = mp.obj_key
    WHERE mp.source = 'prediction'
), rows AS (
    SELECT o.source, o.status, o.error_type, o.iou, o.best_iou, o.item_id, o.obj_key, o.match_key,
           o.partner_key, i.reference_id, o.label, o.annotation_id, o.confidence, o.area,
           CASE WHEN o.source = 'gt' THEN o.obj_key END AS ann_key,
           CASE WHEN o.source = 'prediction' THEN o.obj_key END AS pred_key,
           CASE WHEN o.source = 'gt' THEN o.obj_key ELSE o.partner_key END AS a_key,  -- the GT involved
           CASE WHEN o.source = 'prediction' THEN o.obj_key ELSE o.partner_key END AS p_key
    FROM own o JOIN items i ON i.item_id = o.item_id
), top AS (
    SELECT * FROM rows {where_rows}
    ORDER BY {sort} {direction} NULLS LAST, reference_id, source, annotation_id
    {limit}
)
SELECT t.source, t.status, t.error_type, t.label,
       CASE WHEN t.source = 'gt' THEN p.label ELSE a.label END AS partner_label,
       coalesce(pg.status, pp.status) AS partner_status,
       CASE WHEN t.source = 'gt' THEN a.kind ELSE p.kind END AS kind,
       CASE WHEN t.source = 'gt' THEN a.x ELSE p.x END AS x,
       CASE WHEN t.source = 'gt' THEN a.y ELSE p.y END AS y,
       CASE WHEN t.source = 'gt' THEN a.width ELSE p.width END AS width,
       CASE WHEN t.source = 'gt' THEN a.height ELSE p.height END AS height,
       CASE WHEN t.source = 'gt' THEN p.x ELSE a.x END AS partner_x,
       CASE WHEN t.source = 'gt' THEN p.y ELSE a.y END AS partner_y,
       CASE WHEN t.source = 'gt' THEN p.width ELSE a.width END AS partner_width,
       CASE WHEN t.source = 'gt' THEN p.height ELSE a.height END AS partner_height,
       t.iou, t.best_iou, t.confidence, t.area, t.reference_id, i.image_location, t.annotation_id,
       CASE WHEN t.source = 'gt' THEN p.annotation_id ELSE a.annotation_id END AS partner_annotation_id,
       i.width AS item_width, i.height AS item_height, t.item_id,
       a.ann_key, p.pred_key
FROM top t
JOIN items i ON i.item_id = t.item_id
LEFT JOIN annotations a ON a.ann_key = t.a_key
LEFT JOIN predictions p ON p.run_id = $run AND p.pred_key = t.p_key
LEFT JOIN matches pg ON t.source = 'prediction' AND pg.run_id = $run AND pg.iou_threshold = $thr
     AND pg.source = 'gt' AND pg.ann_key = t.partner_key
LEFT JOIN matches pp ON t.source = 'gt' AND pp.run_id = $run AND pp.iou_threshold = $thr
     AND pp.source = 'prediction' AND pp.pred_key = t.partner_key
ORDER BY t.{sort} {direction} NULLS LAST, t.reference_id, t.source, t.annotation_id
"""


def patches(
    store: Store,
    run: "ModelRun",
    status: str | Iterable[str] | None = None,
    query: str | None = None,
    sort: str = "iou",
    descending: bool = False,
    limit: int | None = None,
    label: str | Iterable[str] | None = None,
    error_type: str | Iterable[str] | None = None,
    iou_threshold: float | None = None,
    pairs: bool = True,
) -> pa.Table:
    """The evaluated objects of a committed run as an Arrow table, filtered and sorted.

    Args:
        run: a committed ``ModelRun``.
        status: keep these statuses (``tp``, ``fp``, ``fn``, ``ignored``); one or a list.
        query: an object-level DSL query (needs ``Dataset.query_objects``); keeps matching objects.
        sort: ``iou``, ``confidence``, ``area`` or ``best_iou``; NULLs always last.
        descending: sort high to low.
        limit: at most this many rows.
        label: keep objects with these labels (the object's own label).
        error_type: keep these TIDE error types (``classification``, ``localization``, ``both``,
            ``duplicate``, ``background``, ``missed``).
        iou_threshold: which stored matching to read (default: 0.5 if stored, else the lowest).
        pairs: a TP pair is one row (its prediction, with the GT as partner); False lists both sides.

    Returns:
        Columns :data:`COLUMNS`: ``source`` ('gt' | 'prediction'), ``status``, ``error_type``, the
        object's ``label``/box (``x, y, width, height``)/``area``/``confidence``/``annotation_id``, the
        partner's label/status/box/annotation_id, ``iou`` (with the matched partner), ``best_iou``, the
        item (``reference_id, image_location, item_width, item_height, item_id``) and the keys of the
        GT (``ann_key``) and prediction (``pred_key``) involved.
    """
    if sort not in SORT_KEYS:
        raise ValidationError(f"unknown sort key {sort!r}; expected one of {list(SORT_KEYS)}", field="sort")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValidationError("limit must be a non-negative integer", field="limit")
    statuses = _as_list(status, STATUSES, "status")
    errors = _as_list(error_type, ERROR_TYPES, "error_type")
    labels = None if label is None else ([label] if isinstance(label, str) else [str(v) for v in label])
    params: dict[str, Any] = {"run": run.id, "thr": match_threshold(store, run.id, iou_threshold),
                              "statuses": statuses, "errors": errors, "labels": labels, "limit": limit}
    where_m = []
    if statuses is not None:
        where_m.append("m.status IN (SELECT unnest($statuses::VARCHAR[]))")
    if errors is not None:
        where_m.append("m.error_type IN (SELECT unnest($errors::VARCHAR[]))")
    if pairs:
        where_m.append("NOT (m.source = 'gt' AND m.status = 'tp')")
    where_rows = []
    if labels is not None:
        where_rows.append("label IN (SELECT unnest($labels::VARCHAR[]))")

    def build(query_view: str | None) -> str:
        conds = list(where_rows)
        if query_view is not None:
            conds.append(_query_condition(store, query_view))
        return _SELECT.format(
            where_m="".join(f" AND {c}" for c in where_m),
            where_rows=("WHERE " + " AND ".join(conds)) if conds else "",
            sort=sort,  # whitelisted above
            direction="DESC" if descending else "ASC",
            limit="LIMIT $limit" if limit is not None else "",
        )

    if query is None:
        return arrow(store, build(None), params)
    with registered(store, _query_objects(run, query), "patches_q") as view:
        return arrow(store, build(view), params)


def _query_objects(run: "ModelRun", query: str) -> pa.Table:
    """Objects matching an object-level DSL query, from the query language's API (if installed)."""
    ds = run.dataset
    fn = getattr(ds, "query_objects", None)
    if fn is None:
        raise LoupeError("patches(query=...) needs the object query language (Dataset.query_objects), "
                         "which this installation does not have; filter with status=/label= instead")
    result = fn(query, run=run)
    if not isinstance(result, pa.Table):
        result = pa.table(result) if isinstance(result, dict) else result.to_arrow_table()
    return result


def _query_condition(store: Store, view: str) -> str:
    """Semi-join condition keeping rows whose object is in the query result ``view``.

    The result may identify objects by ``ann_key``/``pred_key`` (with ``source`` when both are
    given) or by ``reference_id`` + ``annotation_id`` (+ ``source``).
    """
    cols = {c.lower() for c in store.arrow(f"SELECT * FROM {view} LIMIT 0").column_names}
    side = " AND q.source = rows.source" if "source" in cols else ""
    if "ann_key" in cols or "pred_key" in cols:
        conds = []
        if "ann_key" in cols:
            conds.append("(rows.source = 'gt' AND q.ann_key = rows.ann_key)")
        if "pred_key" in cols:
            conds.append("(rows.source = 'prediction' AND q.pred_key = rows.pred_key)")
        return f"EXISTS (SELECT 1 FROM {view} q WHERE ({' OR '.join(conds)}){side})"
    if {"reference_id", "annotation_id"} <= cols:
        return (f"EXISTS (SELECT 1 FROM {view} q WHERE q.reference_id = rows.reference_id "
                f"AND q.annotation_id = rows.annotation_id{side})")
    raise LoupeError("the object query result has no object keys (ann_key/pred_key or reference_id + annotation_id)")
