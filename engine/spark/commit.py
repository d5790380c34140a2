"""Commit a run on Spark: candidate pairs, COCO matching, the matches index and metrics, as Parquet.

Plan (one shuffle by item, then per-category reduce):

1. GT (one label version) and the run's detections are read from a table export; candidate pairs
   come from an equi-join on ``item_id`` with the box-overlap predicate and pycocotools' box IoU as
   Column expressions (same float operations as ``udfs/box_iou.sql``, so the same bits). Pairs of
   any label are kept: the commit needs other-label IoUs for error types, the kernel filters
   same-label ones for matching. For masks every pair of an image is a candidate (stored boxes need
   not bound masks) and the kernel computes mask IoU with ``udfs.rle``.
2. GT, detections and pairs are repartitioned by ``item_id`` and each partition runs the local
   commit's kernel (:func:`engine.spark.kernel.commit_partition`) through ``mapInArrow``.
3. The per-object rows are written as Parquet (``matches/run_id=R``, clustered by item); the
   metrics are reduced from them per category (:mod:`engine.spark.reduce`) and written as
   ``metrics.json`` and ``pr_curves.parquet``.
"""
from __future__ import annotations

import functools
import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import LoupeError
from ..runs.commit import MAX_DETS
from ..runs.inputs import order_categories
from ..runs.evaluate import IOU_TYPES, stats_dict
from ..runs.inputs import GEOMETRY_KINDS
from . import kernel, reduce
from .session import get_session
from .tables import TablesDir

DETS_PER_PARTITION = 500_000  # detections per kernel call (memory bound of one Python worker)


def _map_kernel(batches, **kw):  # runs on the workers
    tables = [pa.Table.from_batches([b]) for b in batches]
    if not tables:
        return
    t = pa.concat_tables(tables)
    t = pa.table({f.name: t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
                  for f in kernel.INPUT_SCHEMA})  # bbox rows come without the mask columns
    out = kernel.commit_partition(t, **kw)
    yield from out.to_batches()


def _reduce_kernel(t: pa.Table) -> pa.Table:  # runs on the workers
    return reduce.accumulate_category(t)


def _input_rows(spark: Any, src: TablesDir, run_id: int, dataset_id: int, label_version: int,
                iou_type: str) -> tuple[Any, Any, Any]:
    """GT and detection rows in the kernel's schema, and the candidate pairs."""
    from pyspark.sql import functions as F

    kinds = list(GEOMETRY_KINDS)
    ann = src.read(spark, "annotations", "dataset_id", dataset_id)
    pred = src.read(spark, "predictions", "run_id", run_id)
    if ann is None:
        raise LoupeError(f"dataset {dataset_id} has no annotations in {src.root}")
    if pred is None:
        raise LoupeError(f"run {run_id} has no predictions in {src.root}")
    v = int(label_version)
    ann = ann.where((F.col("valid_from") <= v) & (F.col("valid_to").isNull() | (F.col("valid_to") > v))
                    & F.col("kind").isin(kinds) & F.col("x").isNotNull())
    pred = pred.where(F.col("kind").isin(kinds) & F.col("x").isNotNull())
    segm = iou_type == "segm"
    if segm:
        items = src.read(spark, "items", "dataset_id", dataset_id).select(
            "item_id", F.col("height").cast("long").alias("ih"), F.col("width").cast("long").alias("iw"))
        ann, pred = ann.join(items, "item_id", "left"), pred.join(items, "item_id", "left")

    def rows(df: Any, kind: int, key: str, is_gt: bool) -> Any:
        null = F.lit(None)
        return df.select(
            F.lit(kind).cast("byte").alias("kind"), F.col("item_id").cast("long"), F.col(key).cast("long").alias("key"),
            null.cast("long").alias("key2"), F.col("seq").cast("long"), F.col("label"),
            *(F.col(c).cast("double").alias(a) for c, a in (("x", "x"), ("y", "y"), ("width", "w"), ("height", "h"))),
            F.col("area").cast("double"),
            (F.col("iscrowd") if is_gt else F.lit(False)).cast("boolean").alias("crowd"),
            (F.col("annotation_id") != "0").alias("id_nonzero") if is_gt else null.cast("boolean").alias("id_nonzero"),
            null.cast("double").alias("score") if is_gt else F.coalesce(F.col("confidence").cast("double"),
                                                                        F.lit(1.0)).alias("score"),
            null.cast("double").alias("iou"),
            *(_mask_columns() if segm else ()))

    g_rows, d_rows = rows(ann, kernel.GT, "ann_key", True), rows(pred, kernel.DT, "pred_key", False)
    return g_rows, d_rows, _pairs(g_rows, d_rows, segm)


def _pairs(g_rows: Any, d_rows: Any, all_pairs: bool) -> Any:
    """Candidate pairs by item with the overlap predicate and box IoU (pycocotools' float operations)."""
    from pyspark.sql import functions as F

    g = g_rows.select("item_id", F.col("key").alias("gk"), F.col("x").alias("gx"), F.col("y").alias("gy"),
                      F.col("w").alias("gw"), F.col("h").alias("gh"), "crowd")
    d = d_rows.select(F.col("item_id").alias("d_item"), F.col("key").alias("dk"), F.col("x").alias("dx"),
                      F.col("y").alias("dy"), F.col("w").alias("dw"), F.col("h").alias("dh"))
    dx, dy, dw, dh = (F.col(c) for c in ("dx", "dy", "dw", "dh"))
    gx, gy, gw, gh = (F.col(c) for c in ("gx", "gy", "gw", "gh"))
    cond = F.col("d_item") == F.col("item_id")
    if not all_pairs:  # box_overlaps: a positive intersection, as plain inequalities
        cond = cond & (dx + dw > gx) & (gx + gw > dx) & (dy + dh > gy) & (gy + gh > dy) \
            & (dx + dw > dx) & (gx + gw > gx) & (dy + dh > dy) & (gy + gh > gy)
    iw = F.least(dw + dx, gw + gx) - F.greatest(dx, gx)
    ih = F.least(dh + dy, gh + gy) - F.greatest(dy, gy)
    iou = (F.when(iw <= 0, F.lit(0.0)).when(ih <= 0, F.lit(0.0))
           .otherwise((iw * ih) / F.when(F.col("crowd"), dw * dh).otherwise((dw * dh + gw * gh) - iw * ih)))
    null = F.lit(None)
    return d.join(g, cond).select(
        F.lit(kernel.PAIR).cast("byte").alias("kind"), F.col("item_id"), F.col("dk").alias("key"),
        F.col("gk").alias("key2"), null.cast("long").alias("seq"), null.cast("string").alias("label"),
        *(null.cast("double").alias(c) for c in ("x", "y", "w", "h", "area")), null.cast("boolean").alias("crowd"),
        null.cast("boolean").alias("id_nonzero"), null.cast("double").alias("score"),
        (F.lit(1.0) if all_pairs else iou).cast("double").alias("iou"),
        *(_mask_columns(null=True) if all_pairs else ()))


def _mask_columns(null: bool = False) -> list[Any]:
    """The geometry the kernel needs for mask IoU (segm only: null list columns would still cost
    Spark's Arrow writer about 4x the whole bbox transfer)."""
    from pyspark.sql import functions as F

    def c(name: str, typ: str) -> Any:
        return (F.lit(None) if null else F.col(name)).cast(typ).alias(name)

    return [c("mask", "array<bigint>"), c("polygon", "array<array<double>>"), c("ih", "long"), c("iw", "long")]


@contextmanager
def _timed(timings: dict[str, float] | None, step: str):
    t0 = time.perf_counter()
    yield
    if timings is not None:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - t0


def spark_commit(tables_dir: str | Path, run: str, out_dir: str | Path, spark: Any = None,
                 iou_threshold: float = 0.5, iou_type: str = "bbox", class_agnostic: bool = False,
                 label_version: int | None = None, partitions: int | None = None,
                 timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Commit run ``run`` of a table export on Spark; write matches, metrics and PR curves under ``out_dir``.

    Returns the same summary as ``ModelRun.commit`` (counts, the 12 stats, params) plus ``per_class``.
    ``timings``, when given, receives the seconds of each step (labels, match + write, reduce, counts).
    """
    if iou_type not in IOU_TYPES:
        raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if not 0 < float(iou_threshold) <= 1:
        raise LoupeError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    from pyspark.sql import functions as F

    spark = get_session(spark)
    src = TablesDir.open(tables_dir)
    run_id, dataset_id = src.run(run)
    if label_version is None:
        label_version = src.label_version(dataset_id)
    g_rows, d_rows, pairs = _input_rows(spark, src, run_id, dataset_id, label_version, iou_type)
    with _timed(timings, "labels"):  # one job: labels and detections
        per_label = (g_rows.select("label", F.lit(0).alias("dt"))
                     .unionByName(d_rows.select("label", F.lit(1).alias("dt")))
                     .groupBy("label").agg(F.sum("dt").alias("n_dt")).collect())
    labels = order_categories((r["label"] for r in per_label), src.coco_categories(dataset_id))  # as the local commit
    if not labels:
        raise LoupeError(f"run '{run}' and its dataset have no boxes or masks to match")
    n_dt = sum(int(r["n_dt"]) for r in per_label)
    n_part = partitions or max(spark.sparkContext.defaultParallelism, -(-n_dt // DETS_PER_PARTITION))
    kw = {"labels": labels, "thr": float(iou_threshold), "iou_type": iou_type,
          "class_agnostic": bool(class_agnostic), "run_id": run_id}
    objects = (g_rows.unionByName(d_rows).unionByName(pairs)
               .repartition(n_part, "item_id")
               .mapInArrow(functools.partial(_map_kernel, **kw), _spark_schema(kernel.OUTPUT_SCHEMA)))
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    matches_dir = out / "matches" / f"run_id={run_id}"
    with _timed(timings, "match_write"):
        objects.sortWithinPartitions("item_id").write.parquet(str(matches_dir))

    written = spark.read.parquet(str(matches_dir))
    curves = (written.where(F.col("cat") >= 0).select("cat", "source", "item_id", "seq", "score", "area", "crowd",
                                                      "hit", "tp")
              .groupBy("cat").applyInArrow(_reduce_kernel, _spark_schema(reduce.CURVES_SCHEMA)))
    with _timed(timings, "reduce"):
        curves = pa.Table.from_pylist([r.asDict() for r in curves.collect()], schema=reduce.CURVES_SCHEMA)
        cats = ["*"] if class_agnostic else labels
        m = reduce.combine(curves, cats)
    with _timed(timings, "counts"):
        counts = {(r["source"], r["status"]): int(r["count"])
                  for r in written.groupBy("source", "status").count().collect()}
    stats = stats_dict(m["stats"])
    params = {"iou_threshold": float(iou_threshold), "class_agnostic": bool(class_agnostic),
              "allowed_label_matches": None, "method": "coco", "iou_type": iou_type,
              "label_version": int(label_version)}
    summary = {
        "tp": counts.get(("prediction", "tp"), 0), "fp": counts.get(("prediction", "fp"), 0),
        "fn": counts.get(("gt", "fn"), 0),
        "ignored": counts.get(("prediction", "ignored"), 0) + counts.get(("gt", "ignored"), 0),
        "predictions": sum(v for (s, _), v in counts.items() if s == "prediction"),
        "ground_truth": sum(v for (s, _), v in counts.items() if s == "gt"),
        "stats": stats, "params": params, "per_class": m["per_class"],
    }
    pq.write_table(reduce.pr_curves_table(m["precision"], m["scores"], cats), out / "pr_curves.parquet")
    meta = {"run": run, "run_id": run_id, "dataset_id": dataset_id, "iou_type": iou_type, "max_dets": MAX_DETS,
            **summary}
    (out / "metrics.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return summary


def _spark_schema(schema: pa.Schema) -> Any:
    """The Spark StructType of an Arrow schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def read_summary(out_dir: str | Path) -> dict[str, Any]:
    """The metrics.json a Spark commit wrote."""
    p = Path(out_dir) / "metrics.json"
    if not p.is_file():
        raise LoupeError(f"{out_dir} holds no Spark commit (no metrics.json)")
    return json.loads(p.read_text(encoding="utf-8"))


__all__ = ["spark_commit", "read_summary"]
