"""``loupe spark {eval,commit,import,query}``: Loupe's commit, metrics and queries on Apache Spark."""
from __future__ import annotations

import json
import tempfile

import click

from . import cli
from .common import db_option, format_option, handle_errors, open_ws
from .eval_cmds import IOU_TYPE, _json_report, print_commit
from .output import render

MASTER = click.option("--master", default=None, help="Spark master URL (default: a local[2] session).")


@cli.group("spark")
def spark_group() -> None:
    """Run commit, metrics and queries on Spark over a Parquet table export (needs the 'spark' extra)."""


@spark_group.command("eval")
@click.argument("gt", type=click.Path(exists=True, dir_okay=False))
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@IOU_TYPE
@click.option("--json", "as_json", is_flag=True, help="One JSON object: stats (12 numbers), per_class, counts.")
@MASTER
@handle_errors
def spark_eval(gt: str, results: str, iou_type: str, as_json: bool, master: str | None) -> None:
    """`loupe eval` on Spark: the same pair, the same printout (ingest locally, match and reduce on Spark)."""
    import numpy as np

    import engine

    from ..io.parquet_tables import export_tables
    from ..metrics.cocoeval import summary_lines
    from ..spark import get_session
    from ..spark.commit import spark_commit
    from .common import progress_printer

    with tempfile.TemporaryDirectory(prefix="loupe-spark-") as tmp:
        with engine.connect() as ws:
            ws.import_coco(gt, dataset="gt", results=results, run="eval", check_images=False, clip="keep",
                           progress=progress_printer("import"))
            export_tables(ws, f"{tmp}/tables")
        r = spark_commit(f"{tmp}/tables", "eval", f"{tmp}/commit", spark=get_session(master=master),
                         iou_type=iou_type)
    m = {"stats": r["stats"], "per_class": r["per_class"], "counts": {k: r[k] for k in ("tp", "fp", "fn")}}
    if as_json:
        click.echo(json.dumps(_json_report(m)))
        return
    click.echo("\n".join(summary_lines(np.asarray(list(m["stats"].values())))))
    c = m["counts"]
    click.echo(f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  (IoU 0.5, maxDets 100)")


@spark_group.command("commit")
@click.argument("tables", type=click.Path(exists=True, file_okay=False))
@click.option("--run", "run_name", required=True, help="Run name (in the export).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for matches/, metrics.json and pr_curves.parquet (replaced).")
@click.option("--iou-threshold", type=float, default=0.5, show_default=True)
@IOU_TYPE
@click.option("--class-agnostic", is_flag=True, help="Match across labels.")
@click.option("--label-version", type=int, default=None, help="Evaluate against a past label version.")
@click.option("--partitions", type=int, default=None, help="Kernel partitions (default: from the detections).")
@MASTER
@format_option
@handle_errors
def spark_commit_cmd(tables: str, run_name: str, out: str, iou_threshold: float, iou_type: str,
                     class_agnostic: bool, label_version: int | None, partitions: int | None,
                     master: str | None, fmt: str) -> None:
    """Commit a run of a `loupe export parquet --tables` folder on Spark (import it back with `spark import`)."""
    from ..spark import get_session
    from ..spark.commit import spark_commit

    r = spark_commit(tables, run_name, out, spark=get_session(master=master), iou_threshold=iou_threshold,
                     iou_type=iou_type, class_agnostic=class_agnostic, label_version=label_version,
                     partitions=partitions)
    print_commit(r, f"committed {run_name} on Spark", iou_threshold, fmt)


@spark_group.command("import")
@click.argument("commit_dir", type=click.Path(exists=True, file_okay=False))
@db_option()
@click.option("--run", "run_name", required=True, help="The workspace run the Spark commit was made for.")
@handle_errors
def spark_import(commit_dir: str, db: str, run_name: str) -> None:
    """Load a Spark commit (matches + metrics) into the workspace it was exported from."""
    from ..spark.importer import import_commit

    with open_ws(db) as ws:
        n = import_commit(ws.get_run(run_name), commit_dir)
    click.echo(f"imported {n} matches rows into run '{run_name}'")


@spark_group.command("query")
@click.argument("tables", type=click.Path(exists=True, file_okay=False))
@click.argument("query")
@click.option("--dataset", required=True, help="Dataset name (in the export).")
@click.option("--objects", is_flag=True, help="An object query (annotations/predictions) instead of an item query.")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@MASTER
@format_option
@handle_errors
def spark_query(tables: str, query: str, dataset: str, objects: bool, limit: int | None, master: str | None,
                fmt: str) -> None:
    """Run a DSL query on Spark over a table export (same rows as `loupe query` on the workspace)."""
    from ..spark import get_session
    from ..spark.query import SparkQueries

    q = SparkQueries(get_session(master=master), tables)
    t = q.objects(dataset, query) if objects else q.items(dataset, query)
    if limit is not None:
        t = t.slice(0, limit)
    click.echo(render(t, fmt))
