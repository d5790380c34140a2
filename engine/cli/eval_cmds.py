"""Evaluation commands: eval (a COCO pair, in memory), commit and metrics (stored runs)."""
from __future__ import annotations

import json
import warnings

import click
import pyarrow as pa

from ..errors import LoupeWarning
from . import cli
from .common import db_option, format_option, handle_errors, open_ws
from .output import render

IOU_TYPE = click.option("--iou-type", type=click.Choice(["bbox", "segm"]), default="bbox", show_default=True,
                        help="Box or mask IoU.")


def _json_report(m: dict) -> dict:
    return {"stats": list(m["stats"].values()),
            "per_class": {r["label"]: {k: v for k, v in r.items() if k != "label"} for r in m["per_class"]},
            "counts": m["counts"]}


@cli.command("eval")
@click.argument("gt", type=click.Path(exists=True, dir_okay=False))
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@IOU_TYPE
@click.option("--json", "as_json", is_flag=True, help="One JSON object: stats (12 numbers), per_class, counts.")
@handle_errors
def eval_cmd(gt: str, results: str, iou_type: str, as_json: bool) -> None:
    """Evaluate a COCO results file against COCO ground truth (pycocotools' numbers, exactly).

    Runs the same path as stored runs (ingest → commit → metrics) in an in-memory workspace.
    """
    from ..metrics.cocoeval import summary_lines
    from .common import progress_printer

    import engine
    import numpy as np

    with engine.connect() as ws, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoupeWarning)
        # bbox never reads masks: a mask that does not fit its image is a warning there, an error for segm
        ws.import_coco(gt, dataset="gt", results=results, run="eval", check_images=False, clip="keep",
                       progress=progress_printer("import"), bad_masks="drop" if iou_type == "bbox" else "error")
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
        run = ws.get_run("eval")
        run.commit(iou_type=iou_type)
        m = run.metrics(iou_type=iou_type)
    if as_json:
        click.echo(json.dumps(_json_report(m)))
        return
    click.echo("\n".join(summary_lines(np.asarray(list(m["stats"].values())))))
    c = m["counts"]
    click.echo(f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  (IoU 0.5, maxDets 100)")


@cli.command()
@db_option()
@click.option("--run", "run_name", required=True, help="Run name.")
@click.option("--iou-threshold", type=float, default=0.5, show_default=True)
@IOU_TYPE
@click.option("--class-agnostic", is_flag=True, help="Match across labels.")
@click.option("--method", type=click.Choice(["coco", "hungarian"]), default="coco", show_default=True)
@click.option("--label-version", type=int, default=None, help="Evaluate against a past label version.")
@format_option
@handle_errors
def commit(db: str, run_name: str, iou_threshold: float, iou_type: str, class_agnostic: bool, method: str,
           label_version: int | None, fmt: str) -> None:
    """Match a run's predictions to the ground truth and index every object as TP/FP/FN."""
    with open_ws(db) as ws:
        r = ws.get_run(run_name).commit(iou_threshold=iou_threshold, iou_type=iou_type, class_agnostic=class_agnostic,
                                        method=method, label_version=label_version)
    if fmt == "json":
        click.echo(json.dumps(r))
        return
    click.echo(f"committed {run_name}: {r['predictions']} predictions, {r['ground_truth']} GT objects "
               f"→ TP {r['tp']}, FP {r['fp']}, FN {r['fn']}, ignored {r['ignored']} at IoU {iou_threshold}")
    click.echo(render(pa.table({"metric": list(r["stats"]), "value": list(r["stats"].values())}), fmt))


@cli.command()
@db_option()
@click.option("--run", "run_name", required=True, help="Run name.")
@IOU_TYPE
@click.option("--slice", "slice_name", default=None, help="Only the items of this slice.")
@click.option("--label-version", type=int, default=None)
@click.option("--per-class", is_flag=True, help="Also print per-class AP/AR.")
@format_option
@handle_errors
def metrics(db: str, run_name: str, iou_type: str, slice_name: str | None, label_version: int | None,
            per_class: bool, fmt: str) -> None:
    """COCO metrics of a run (12 stats, counts; --per-class for each label)."""
    with open_ws(db, read_only=True) as ws:
        m = ws.get_run(run_name).metrics(iou_type=iou_type, slice=slice_name, label_version=label_version)
    if fmt == "json":
        click.echo(json.dumps(_json_report(m)))
        return
    click.echo(render(pa.table({"metric": list(m["stats"]), "value": list(m["stats"].values())}), fmt))
    c = m["counts"]
    if fmt == "table":
        click.echo(f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  (IoU 0.5)")
    if per_class:
        click.echo(render(pa.Table.from_pylist(m["per_class"]), fmt))
