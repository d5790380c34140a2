"""Dataset insights: label, box-size and metadata distributions, and a run's error breakdown.

Everything is computed in SQL over the workspace (aggregates, ``quantile_cont``, equal-width bins
with numpy's edge rules), one query per table; Python only assembles the dict. The scope is the
whole dataset, a named slice, or a list of reference ids; ground truth is the current label version.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import NotFoundError, ValidationError
from ._sql import arrow, bin_sql, registered
from .patches import match_threshold

if TYPE_CHECKING:
    from ..api.dataset import Dataset
    from ..api.model import ModelRun

CATEGORICAL_MAX = 250          # fewer distinct values than this: a categorical field (as Nucleus)
SMALL, MEDIUM = 32 ** 2, 96 ** 2  # COCO area buckets: small < 32², medium < 96², large otherwise
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MEASURES = ("width", "height", "area", "aspect")
_NUMERIC = "('BIGINT', 'UBIGINT', 'DOUBLE')"

DATASET_TABLES = ("summary", "labels", "annotations_per_item", "size_buckets", "box_stats", "box_histograms",
                  "metadata_fields", "metadata_values", "metadata_histograms", "items_without_labels")
RUN_TABLES = ("per_class", "error_types", "scores", "ious")


def scope_items(ds: "Dataset", slice: Any) -> pa.Table:
    """Item ids in scope: the dataset, a slice (name or ``Slice``) or a list of reference ids.

    A slice's items come from ``Slice.item_ids_sql()`` (dynamic slices are re-evaluated; object slices
    give the items of their objects); without the slices module, from the stored members.
    """
    store, dataset_id = ds.ws.store, ds.id
    if slice is None:
        return store.arrow("SELECT item_id FROM items WHERE dataset_id = ?", [dataset_id])
    if isinstance(slice, str) and hasattr(ds, "get_slice"):
        slice = ds.get_slice(slice)
    if hasattr(slice, "item_ids_sql"):
        if getattr(slice, "dataset", ds).id != dataset_id:
            raise ValidationError(f"slice '{slice.name}' belongs to another dataset", field="slice")
        return store.arrow(f"SELECT DISTINCT item_id FROM ({slice.item_ids_sql()})")
    if isinstance(slice, str):
        row = store.con.execute("SELECT slice_id FROM slices WHERE dataset_id = ? AND name = ?",
                                [dataset_id, slice]).fetchone()
        if row is None:
            raise NotFoundError(f"no slice named '{slice}' in this dataset")
        return store.arrow(
            """SELECT DISTINCT item_id FROM (
                   SELECT item_id FROM slice_items WHERE slice_id = $s
                   UNION ALL SELECT a.item_id FROM slice_objects o JOIN annotations a USING (ann_key) WHERE o.slice_id = $s
                   UNION ALL SELECT p.item_id FROM slice_objects o JOIN predictions p USING (pred_key) WHERE o.slice_id = $s)
               JOIN items i USING (item_id) WHERE i.dataset_id = $ds""", {"s": row[0], "ds": dataset_id})
    refs = pa.table({"reference_id": pa.array([str(r) for r in slice], pa.string())})
    with registered(store, refs, "ins_refs") as view:
        missing = store.con.execute(
            f"SELECT r.reference_id FROM {view} r WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.dataset_id = ? "
            f"AND i.reference_id = r.reference_id) LIMIT 1", [dataset_id]).fetchone()
        if missing:
            raise NotFoundError(f"no item with reference_id '{missing[0]}' in this dataset")
        return store.arrow(f"SELECT DISTINCT i.item_id FROM items i JOIN {view} r USING (reference_id) "
                           "WHERE i.dataset_id = ?", [dataset_id])


def insights(
    ds: "Dataset",
    slice: Any = None,
    run: "ModelRun | None" = None,
    bins: int = 20,
    iou_threshold: float | None = None,
) -> dict[str, pa.Table]:
    """Distributions of a dataset (or slice) and, with a committed run, of its errors.

    Args:
        ds: the dataset.
        slice: a slice name, a ``Slice``, or a list of reference ids; None = the whole dataset.
        run: a committed run on this dataset: adds the per-class and error tables.
        bins: bins of every histogram.
        iou_threshold: which stored matching of ``run`` to read (default as in ``run.patches``).

    Returns:
        Arrow tables by name —
        ``summary``: items, annotations, labels, items without labels (+ predictions, tp/fp/fn);
        ``labels``: label, annotations, items, fraction;
        ``annotations_per_item``: annotations, items (histogram, 0 included);
        ``size_buckets``: label ('(all)' for every label), bucket (COCO small/medium/large), count, fraction;
        ``box_stats``: measure (width, height, area, aspect = w/h), count, min, max, mean, std, p05..p95;
        ``box_histograms``: measure, bin, lower, upper, count;
        ``metadata_fields``: scope ('item' | 'annotation'), field, type ('categorical' under 250 distinct
        values, else 'numeric' or 'text'), numeric_values (every value is a number), present, coverage, distinct, min, max, mean, p25, p50, p75;
        ``metadata_values``: scope, field, value, count (categorical fields);
        ``metadata_histograms``: scope, field, bin, lower, upper, count (numeric fields);
        ``items_without_labels``: reference_id, image_location, metadata.
        With ``run``: ``per_class`` (label, gt, predictions, tp, fp, fn, ignored, precision, recall,
        '(all)' row), ``error_types`` (source, status, error_type, count), ``scores`` (confidence
        histogram: bin, lower, upper, tp, fp, ignored, count) and ``ious`` (bin, lower, upper over
        [0, 1]: tp = IoU of TPs, fp_best = best IoU of FPs with any GT, fn_best = of missed GTs).
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValidationError("bins must be a positive integer", field="bins")
    store, dataset_id = ds.ws.store, ds.id
    if run is not None and run.dataset_id != dataset_id:
        raise ValidationError(f"run '{run.name}' was made on dataset '{run.dataset_name}', not this one", field="run")
    with registered(store, scope_items(ds, slice), "ins_scope") as scope:
        p: dict[str, Any] = {"ds": dataset_id, "small": SMALL, "medium": MEDIUM, "catmax": CATEGORICAL_MAX}
        out = {name: arrow(store, sql, p) for name, sql in _dataset_sql(scope, bins).items()}
        if run is not None:
            p.update(run=run.id, thr=match_threshold(store, run.id, iou_threshold))
            out.update({name: arrow(store, sql, p) for name, sql in _run_sql(scope, bins).items()})
    return out


def _dataset_sql(scope: str, bins: int) -> dict[str, str]:
    gt = (f"(SELECT a.* FROM annotations a JOIN {scope} USING (item_id) "
          "WHERE a.dataset_id = $ds AND a.valid_to IS NULL)")
    boxes = f"(SELECT * FROM {gt} WHERE kind <> 'category' AND width IS NOT NULL AND height IS NOT NULL)"
    long = f"""(SELECT 'width' AS g, width AS v FROM {boxes} b
               UNION ALL SELECT 'height', height FROM {boxes} b
               UNION ALL SELECT 'area', coalesce(area, width * height) FROM {boxes} b
               UNION ALL SELECT 'aspect', width / height FROM {boxes} b WHERE height > 0)"""
    long = f"(SELECT * FROM {long} WHERE isfinite(v))"
    measure_order = "list_position(['width', 'height', 'area', 'aspect'], g)"
    q = ", ".join(str(x) for x in QUANTILES)
    qcols = ", ".join(f"q[{i + 1}] AS p{round(x * 100):02d}" for i, x in enumerate(QUANTILES))
    kv = f"""(SELECT scope, field, v, json_type(v) AS jt, v ->> '$' AS txt,
                     CASE WHEN json_type(v) IN {_NUMERIC} THEN v::DOUBLE END AS num
              FROM (SELECT scope, k AS field, json_extract(m, '$."' || replace(k, '"', '\\"') || '"') AS v
                    FROM (SELECT 'item' AS scope, i.metadata AS m, unnest(json_keys(i.metadata)) AS k
                          FROM items i JOIN {scope} USING (item_id) WHERE json_type(i.metadata) = 'OBJECT'
                          UNION ALL
                          SELECT 'annotation', a.metadata, unnest(json_keys(a.metadata))
                          FROM {gt} a WHERE json_type(a.metadata) = 'OBJECT')))"""
    fields = f"""(SELECT scope, field, count(*) FILTER (jt <> 'NULL') AS present, count(DISTINCT txt) AS "distinct",
                         coalesce(bool_and(jt IN {_NUMERIC}) FILTER (jt <> 'NULL'), false) AS all_numeric,
                         min(num) AS min, max(num) AS max, avg(num) AS mean,
                         quantile_cont(num, [0.25, 0.5, 0.75]) AS q
                  FROM {kv} GROUP BY scope, field)"""
    ftype = """CASE WHEN "distinct" < $catmax THEN 'categorical' WHEN all_numeric THEN 'numeric' ELSE 'text' END"""
    numeric_vals = f"""(SELECT k.scope, k.field, k.num AS v FROM {kv} k JOIN {fields} f USING (scope, field)
                        WHERE {ftype} = 'numeric' AND isfinite(k.num))"""
    return {
        "summary": f"""
            SELECT (SELECT count(*) FROM {scope}) AS items,
                   (SELECT count(*) FROM {gt}) AS annotations,
                   (SELECT count(DISTINCT label) FROM {gt}) AS labels,
                   (SELECT count(*) FROM {scope} s WHERE NOT EXISTS (SELECT 1 FROM {gt} a WHERE a.item_id = s.item_id))
                       AS items_without_labels""",
        "labels": f"""
            SELECT label, count(*) AS annotations, count(DISTINCT item_id) AS items,
                   count(*) / sum(count(*)) OVER () AS fraction
            FROM {gt} GROUP BY label ORDER BY annotations DESC, label""",
        "annotations_per_item": f"""
            SELECT n AS annotations, count(*) AS items FROM (
                SELECT s.item_id, count(a.ann_key) AS n FROM {scope} s LEFT JOIN {gt} a USING (item_id)
                GROUP BY s.item_id) GROUP BY n ORDER BY n""",
        "size_buckets": f"""
            WITH b AS (SELECT label, CASE WHEN coalesce(area, width * height) < $small THEN 'small'
                                          WHEN coalesce(area, width * height) < $medium THEN 'medium'
                                          ELSE 'large' END AS bucket FROM {boxes}),
                 c AS (SELECT coalesce(label, '(all)') AS label, bucket, count(*) AS count
                       FROM b GROUP BY GROUPING SETS ((label, bucket), (bucket))),
                 grid AS (SELECT l.label, k.bucket, k.o FROM (SELECT DISTINCT label FROM c) l
                          CROSS JOIN (VALUES ('small', 1), ('medium', 2), ('large', 3)) k(bucket, o))
            SELECT g.label, g.bucket, coalesce(c.count, 0) AS count,
                   coalesce(c.count, 0) / sum(coalesce(c.count, 0)) OVER (PARTITION BY g.label) AS fraction
            FROM grid g LEFT JOIN c USING (label, bucket)
            ORDER BY g.label = '(all)' DESC, g.label, g.o""",
        "box_stats": f"""
            SELECT measure, count, min, max, mean, std, {qcols} FROM (
                SELECT g AS measure, count(*) AS count, min(v) AS min, max(v) AS max, avg(v) AS mean,
                       stddev_samp(v) AS std, quantile_cont(v, [{q}]) AS q, {measure_order} AS o
                FROM {long} GROUP BY g) ORDER BY o""",
        "box_histograms": f"""
            SELECT g AS measure, bin, lower, upper, count FROM (
                {bin_sql(long, bins, f"SELECT g, min(v) AS lo, max(v) AS hi FROM {long} GROUP BY g")})
            ORDER BY {measure_order}, bin""",
        "metadata_fields": f"""
            SELECT scope, field, {ftype} AS type, all_numeric AS numeric_values, present,
                   present / (CASE WHEN scope = 'item' THEN (SELECT count(*) FROM {scope})
                                   ELSE (SELECT count(*) FROM {gt}) END) AS coverage,
                   "distinct", min, max, mean, q[1] AS p25, q[2] AS p50, q[3] AS p75
            FROM {fields} ORDER BY scope DESC, field""",
        "metadata_values": f"""
            SELECT k.scope, k.field, k.txt AS value, count(*) AS count
            FROM {kv} k JOIN {fields} f USING (scope, field)
            WHERE {ftype} = 'categorical' AND k.jt <> 'NULL'
            GROUP BY k.scope, k.field, k.txt ORDER BY k.scope DESC, k.field, count DESC, value""",
        "metadata_histograms": f"""
            SELECT scope, field, bin, lower, upper, count FROM (
                {bin_sql(numeric_vals, bins, f"SELECT scope, field, min(v) AS lo, max(v) AS hi FROM {numeric_vals} GROUP BY ALL", ("scope", "field"))})
            ORDER BY scope DESC, field, bin""",
        "items_without_labels": f"""
            SELECT i.reference_id, i.image_location, i.metadata::VARCHAR AS metadata
            FROM items i JOIN {scope} s USING (item_id)
            WHERE NOT EXISTS (SELECT 1 FROM {gt} a WHERE a.item_id = i.item_id) ORDER BY i.item_id""",
    }


def _run_sql(scope: str, bins: int) -> dict[str, str]:
    m = f"""(SELECT m.*, CASE WHEN m.source = 'gt' THEN a.label ELSE p.label END AS label, p.confidence
             FROM matches m JOIN {scope} USING (item_id)
             LEFT JOIN annotations a ON m.source = 'gt' AND a.ann_key = m.ann_key
             LEFT JOIN predictions p ON m.source = 'prediction' AND p.run_id = $run AND p.pred_key = m.pred_key
             WHERE m.run_id = $run AND m.iou_threshold = $thr)"""
    scores = f"(SELECT status AS g, confidence AS v FROM {m} WHERE source = 'prediction' AND isfinite(confidence))"
    score_range = f"""SELECT g, lo, hi FROM (SELECT DISTINCT g FROM {scores})
                      CROSS JOIN (SELECT least(0.0, min(v)) AS lo, greatest(1.0, max(v)) AS hi FROM {scores})"""
    ious = f"""(SELECT 'tp' AS g, iou AS v FROM {m} WHERE source = 'prediction' AND status = 'tp' AND iou IS NOT NULL
               UNION ALL SELECT 'fp', coalesce(best_iou, 0) FROM {m} WHERE source = 'prediction' AND status = 'fp'
               UNION ALL SELECT 'fn', coalesce(best_iou, 0) FROM {m} WHERE source = 'gt' AND status = 'fn')"""
    iou_range = "SELECT g, 0.0 AS lo, 1.0 AS hi FROM (VALUES ('tp'), ('fp'), ('fn')) t(g)"
    counts = """count(*) FILTER (source = 'gt' AND status IN ('tp', 'fn')) AS gt,
                count(*) FILTER (source = 'prediction' AND status <> 'ignored') AS predictions,
                count(*) FILTER (source = 'prediction' AND status = 'tp') AS tp,
                count(*) FILTER (source = 'prediction' AND status = 'fp') AS fp,
                count(*) FILTER (source = 'gt' AND status = 'fn') AS fn,
                count(*) FILTER (status = 'ignored') AS ignored"""
    return {
        "per_class": f"""
            SELECT coalesce(label, '(all)') AS label, gt, predictions, tp, fp, fn, ignored,
                   tp / nullif(tp + fp, 0) AS precision, tp / nullif(tp + fn, 0) AS recall
            FROM (SELECT label, {counts} FROM {m} GROUP BY GROUPING SETS ((label), ()))
            ORDER BY label = '(all)', gt DESC, label""",
        "error_types": f"""
            SELECT source, status, error_type, count(*) AS count FROM {m} WHERE status <> 'tp'
            GROUP BY ALL ORDER BY count DESC, source, error_type""",
        "scores": f"""
            SELECT bin, lower, upper,
                   coalesce(sum(count) FILTER (g = 'tp'), 0)::BIGINT AS tp,
                   coalesce(sum(count) FILTER (g = 'fp'), 0)::BIGINT AS fp,
                   coalesce(sum(count) FILTER (g = 'ignored'), 0)::BIGINT AS ignored, sum(count)::BIGINT AS count
            FROM ({bin_sql(scores, bins, score_range)}) GROUP BY bin, lower, upper ORDER BY bin""",
        "ious": f"""
            SELECT bin, lower, upper, sum(count) FILTER (g = 'tp')::BIGINT AS tp,
                   sum(count) FILTER (g = 'fp')::BIGINT AS fp_best, sum(count) FILTER (g = 'fn')::BIGINT AS fn_best
            FROM ({bin_sql(ious, bins, iou_range)}) GROUP BY bin, lower, upper ORDER BY bin""",
    }
