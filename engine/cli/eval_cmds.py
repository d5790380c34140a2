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

IOU_TYPE = click.option("--iou-type", type=click.Choice(["bbox", "segm", "keypoints"]), default="bbox",
                        show_default=True, help="Box or mask IoU, or keypoint OKS.")


def coco_param_options(f):
    """--iou-thresholds / --recall-thresholds / --max-dets / --area-ranges (pycocotools Params)."""
    opts = [
        click.option("--iou-thresholds", default=None, metavar="T,T,..",
                     help="IoU thresholds, ascending in (0, 1] (default 0.50:0.05:0.95)."),
        click.option("--recall-thresholds", default=None, metavar="R,R,..",
                     help="Recall thresholds, ascending in [0, 1] (default 0:0.01:1)."),
        click.option("--max-dets", default=None, metavar="N,N,..", help="Max detections per image (default 1,10,100)."),
        click.option("--area-ranges", default=None, metavar="NAME:MIN:MAX,..",
                     help="Area ranges (default all:0:1e10,small:0:1024,medium:1024:9216,large:9216:1e10)."),
        click.option("--kpt-oks-sigmas", default=None, metavar="S,S,..",
                     help="Keypoint sigmas for --iou-type keypoints (default COCO's 17 person sigmas)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _param_kwargs(iou_thresholds: str | None, recall_thresholds: str | None, max_dets: str | None,
                  area_ranges: str | None, kpt_oks_sigmas: str | None = None) -> dict:
    """Parsed and validated values (a bad value is a usage error: exit 2, one line)."""
    from ..errors import ValidationError
    from ..metrics.params import coco_params, parse_area_ranges, parse_floats, parse_ints

    try:
        kw = {"iou_thresholds": parse_floats(iou_thresholds, "--iou-thresholds"),
              "recall_thresholds": parse_floats(recall_thresholds, "--recall-thresholds"),
              "max_dets": parse_ints(max_dets, "--max-dets"),
              "area_ranges": parse_area_ranges(area_ranges, "--area-ranges"),
              "kpt_oks_sigmas": parse_floats(kpt_oks_sigmas, "--kpt-oks-sigmas")}
        coco_params(**kw)
    except ValidationError as e:
        raise click.UsageError(str(e)) from None
    return kw


def _skip_pandas() -> None:
    """In the ``loupe`` process, make pandas unimportable for the rest of it.

    pyarrow imports pandas (when installed) on its first array conversion only to ask whether the input is
    a pandas object (0.3-0.5 s, a sixth of ``loupe eval``); the eval command never uses pandas. Not done
    when ``cli`` runs inside another program (tests, notebooks), whose later pyarrow calls may need it.
    """
    import sys

    from . import STANDALONE

    if STANDALONE and "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())  # pyarrow takes the ImportError as "pandas not installed"


class _NoPandas:
    """An import finder refusing pandas (a None in sys.modules is not enough: Cython returns it)."""

    def find_spec(self, name: str, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not used by `loupe eval`", name=name)
        return None


def _json_report(m: dict) -> dict:
    return {"stats": list(m["stats"].values()),
            "per_class": {r["label"]: {k: v for k, v in r.items() if k != "label"} for r in m["per_class"]},
            "counts": m["counts"]}


@cli.command("eval")
@click.argument("gt", type=click.Path(exists=True, dir_okay=False))
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@IOU_TYPE
@coco_param_options
@click.option("--metric", type=click.Choice(["coco", "voc", "voc11"]), default="coco", show_default=True,
              help="COCO stats, or Pascal VOC AP (all-point; voc11: VOC2007 11-point).")
@click.option("--iou", "voc_iou", type=float, default=0.5, show_default=True, help="VOC IoU threshold.")
@click.option("--plus-one", is_flag=True, help="VOC: inclusive-pixel box areas, (x2 - x1 + 1)(y2 - y1 + 1).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: stats (12 numbers), per_class, counts.")
@handle_errors
def eval_cmd(gt: str, results: str, iou_type: str, iou_thresholds: str | None, recall_thresholds: str | None,
             max_dets: str | None, area_ranges: str | None, kpt_oks_sigmas: str | None, metric: str,
             voc_iou: float, plus_one: bool, as_json: bool) -> None:
    """Evaluate a COCO results file against COCO ground truth (pycocotools' numbers, exactly).

    Runs the same path as stored runs (ingest → metrics) in an in-memory workspace; no TP/FP/FN
    index is written (the workspace is thrown away), so no cross-label pairs are needed, and box
    results are validated as an import does but evaluated without being stored.
    --metric voc|voc11 prints Pascal VOC AP instead ({"mAP", "per_class"} with --json).
    """
    _skip_pandas()
    if metric != "coco":
        _eval_voc(gt, results, metric == "voc11", voc_iou, plus_one, as_json)
        return
    from ..metrics.cocoeval import summary_lines
    from ..metrics.cocoeval import keypoint_summary_lines
    from ..metrics.params import coco_params, default_params
    from .common import progress_printer

    import engine
    import numpy as np

    kw = _param_kwargs(iou_thresholds, recall_thresholds, max_dets, area_ranges, kpt_oks_sigmas)  # checked first
    params = coco_params(**kw, iou_type=iou_type) or default_params(iou_type)
    with engine.connect() as ws, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoupeWarning)
        if iou_type == "bbox":  # the detections are validated but never stored (engine/runs/coco_pair.py)
            from ..runs.coco_pair import evaluate_coco_pair

            m = evaluate_coco_pair(ws, gt, results, coco_params(**kw, iou_type=iou_type),
                                   progress=progress_printer("import"))
        else:  # segm / keypoints read masks and keypoints of a stored run
            # only segm reads masks: a mask that does not fit its image is a warning for keypoints, an error for segm
            ws.import_coco(gt, dataset="gt", results=results, run="eval", check_images=False, clip="keep",
                           progress=progress_printer("import"), bad_masks="error" if iou_type == "segm" else "drop")
            m = ws.get_run("eval").metrics(iou_type=iou_type, **kw)
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
    if as_json:
        click.echo(json.dumps(_json_report(m)))
        return
    stats = np.asarray(list(m["stats"].values()))
    lines = keypoint_summary_lines(stats, params) if iou_type == "keypoints" else summary_lines(stats, params)
    click.echo("\n".join(lines))
    c = m["counts"]
    click.echo(f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  (IoU 0.5, maxDets {max(params.max_dets)})")


def _eval_voc(gt: str, results: str, eleven_point: bool, iou: float, plus_one: bool, as_json: bool) -> None:
    import engine

    from .common import progress_printer

    if not 0 < iou <= 1:
        raise click.UsageError(f"--iou must be in (0, 1], got {iou}")
    with engine.connect() as ws:
        ws.import_coco(gt, dataset="gt", results=results, run="eval", check_images=False, clip="keep",
                       progress=progress_printer("import"))
        m = ws.get_run("eval").voc_metrics(iou_threshold=iou, eleven_point=eleven_point, plus_one=plus_one)
    if as_json:
        click.echo(json.dumps(m))
        return
    rows = [{"label": k, "ap": v} for k, v in m["per_class"].items()] + [{"label": "mAP", "ap": m["mAP"]}]
    click.echo(render(pa.Table.from_pylist(rows), "table"))


@cli.command()
@db_option()
@click.option("--run", "run_name", required=True, help="Run name.")
@click.option("--iou-threshold", type=float, default=0.5, show_default=True)
@IOU_TYPE
@click.option("--class-agnostic", is_flag=True, help="Match across labels.")
@click.option("--method", type=click.Choice(["coco", "hungarian"]), default="coco", show_default=True)
@click.option("--label-version", type=int, default=None, help="Evaluate against a past label version.")
@coco_param_options
@format_option
@handle_errors
def commit(db: str, run_name: str, iou_threshold: float, iou_type: str, class_agnostic: bool, method: str,
           label_version: int | None, iou_thresholds: str | None, recall_thresholds: str | None,
           max_dets: str | None, area_ranges: str | None, kpt_oks_sigmas: str | None, fmt: str) -> None:
    """Match a run's predictions to the ground truth and index every object as TP/FP/FN."""
    kw = _param_kwargs(iou_thresholds, recall_thresholds, max_dets, area_ranges, kpt_oks_sigmas)
    with open_ws(db) as ws:
        r = ws.get_run(run_name).commit(iou_threshold=iou_threshold, iou_type=iou_type, class_agnostic=class_agnostic,
                                        method=method, label_version=label_version, **kw)
    print_commit(r, f"committed {run_name}", iou_threshold, fmt)


def print_commit(r: dict, what: str, iou_threshold: float, fmt: str) -> None:
    """A commit summary: JSON, or the counts line and the 12 stats (shared with ``loupe spark commit``)."""
    if fmt == "json":
        click.echo(json.dumps(r))
        return
    click.echo(f"{what}: {r['predictions']} predictions, {r['ground_truth']} GT objects "
               f"→ TP {r['tp']}, FP {r['fp']}, FN {r['fn']}, ignored {r['ignored']} at IoU {iou_threshold}")
    click.echo(render(pa.table({"metric": list(r["stats"]), "value": list(r["stats"].values())}), fmt))


@cli.command()
@db_option()
@click.option("--run", "run_name", required=True, help="Run name.")
@IOU_TYPE
@click.option("--slice", "slice_name", default=None, help="Only the items of this slice.")
@click.option("--label-version", type=int, default=None)
@click.option("--per-class", is_flag=True, help="Also print per-class AP/AR.")
@coco_param_options
@format_option
@handle_errors
def metrics(db: str, run_name: str, iou_type: str, slice_name: str | None, label_version: int | None,
            per_class: bool, iou_thresholds: str | None, recall_thresholds: str | None, max_dets: str | None,
            area_ranges: str | None, kpt_oks_sigmas: str | None, fmt: str) -> None:
    """COCO metrics of a run (12 stats, counts; --per-class for each label)."""
    kw = _param_kwargs(iou_thresholds, recall_thresholds, max_dets, area_ranges, kpt_oks_sigmas)
    with open_ws(db, read_only=True) as ws:
        m = ws.get_run(run_name).metrics(iou_type=iou_type, slice=slice_name, label_version=label_version, **kw)
    if fmt == "json":
        click.echo(json.dumps(_json_report(m)))
        return
    click.echo(render(pa.table({"metric": list(m["stats"]), "value": list(m["stats"].values())}), fmt))
    c = m["counts"]
    if fmt == "table":
        click.echo(f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  (IoU 0.5)")
    if per_class:
        click.echo(render(pa.Table.from_pylist(m["per_class"]), fmt))
