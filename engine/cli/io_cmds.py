"""``loupe import {coco,pennfudan,voc,yolo,parquet}`` and ``loupe export {coco,parquet}``."""
from __future__ import annotations

import json
from typing import Any, Callable

import click

from . import cli
from .common import dataset_option, db_option, handle_errors, open_ws, progress_printer

_FMT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
                    help="Summary format.")
_DATASET = click.option("--dataset", required=True, help="Dataset to import into (created if new).")


def _CLIP(f):  # noqa: N802 - a decorator pair
    f = click.option("--keep-outside", is_flag=True,
                     help="Store boxes crossing the image border as given (as pycocotools does).")(f)
    return click.option("--clip", is_flag=True, help="Clip boxes to the image instead of refusing boxes outside it.")(f)


def _clip(clip: bool, keep_outside: bool) -> bool | str:
    if clip and keep_outside:
        raise click.UsageError("--clip and --keep-outside exclude each other")
    return "keep" if keep_outside else clip


def _summary(s: Any, fmt: str) -> str:
    d = s.as_dict()
    if fmt == "json":
        return json.dumps(d)
    lines = []
    if d["items"] or d["annotations"] or not d["run"]:
        lines.append(f"imported into dataset '{d['dataset']}': {d['items']} new items, "
                     f"{d['annotations']} new annotations")
    if d["labels"]:
        labels = ", ".join(f"{k} {v}" for k, v in list(d["labels"].items())[:12])
        more = len(d["labels"]) - 12
        lines.append(f"labels ({len(d['labels'])}): {labels}" + (f", ... {more} more" if more > 0 else ""))
    if d["run"]:
        lines.append(f"run '{d['run']}' on dataset '{d['dataset']}': {d['predictions']} predictions")
    return "\n".join(lines)


def _run_import(db: str, fmt: str, fn: Callable[..., Any]) -> None:
    with open_ws(db, must_exist=False) as ws:
        click.echo(_summary(fn(ws), fmt))


@cli.group("import")
def import_group() -> None:
    """Import a dataset (and optionally predictions) from files."""


@import_group.command("coco")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@db_option()
@_DATASET
@click.option("--images", "images", type=click.Path(exists=True, file_okay=False),
              help="Folder the image file_name entries are relative to (images are then checked).")
@click.option("--results", type=click.Path(exists=True, dir_okay=False), help="A COCO results file to store as a run.")
@click.option("--run", help="Run name for the results (default: the results file stem).")
@click.option("--model", help="Model name for the run (default: the run name).")
@click.option("--check-images/--no-check-images", default=None,
              help="Require every image to exist and open (default: only with --images).")
@_CLIP
@_FMT
@handle_errors
def import_coco(path: str, db: str, dataset: str, images: str | None, results: str | None, run: str | None,
                model: str | None, check_images: bool | None, clip: bool, keep_outside: bool, fmt: str) -> None:
    """COCO instances JSON (PATH may also be a results file for an existing dataset)."""
    _run_import(db, fmt, lambda ws: ws.import_coco(
        path, dataset, images_dir=images, results=results, run=run, model=model, check_images=check_images,
        clip=_clip(clip, keep_outside), progress=progress_printer("image headers")))


@import_group.command("pennfudan")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@db_option()
@_DATASET
@click.option("--check-images/--no-check-images", default=True, show_default=True,
              help="Require every image to exist and open.")
@_CLIP
@_FMT
@handle_errors
def import_pennfudan(path: str, db: str, dataset: str, check_images: bool, clip: bool, keep_outside: bool,
                     fmt: str) -> None:
    """A PennFudan-layout folder (PNGImages/, PedMasks/, Annotation/)."""
    _run_import(db, fmt, lambda ws: ws.import_pennfudan(
        path, dataset, check_images=check_images, clip=_clip(clip, keep_outside),
        progress=progress_printer("masks")))


@import_group.command("voc")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@db_option()
@_DATASET
@click.option("--split", help="Only the images of ImageSets/Main/SPLIT.txt.")
@click.option("--images", "images", type=click.Path(file_okay=False), help="Image folder (default: PATH/JPEGImages).")
@click.option("--check-images/--no-check-images", default=True, show_default=True,
              help="Require every image to exist and open.")
@_CLIP
@_FMT
@handle_errors
def import_voc(path: str, db: str, dataset: str, split: str | None, images: str | None, check_images: bool,
               clip: bool, keep_outside: bool, fmt: str) -> None:
    """A Pascal VOC folder (Annotations/*.xml + JPEGImages/)."""
    _run_import(db, fmt, lambda ws: ws.import_voc(
        path, dataset, split=split, images_dir=images, check_images=check_images,
        clip=_clip(clip, keep_outside),
        progress=progress_printer("annotation files")))


@import_group.command("yolo")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@db_option()
@_DATASET
@click.option("--classes", "classes", type=click.Path(exists=True, dir_okay=False),
              help="Class names, one per line (default: PATH/classes.txt or data.yaml names).")
@click.option("--predictions", type=click.Path(exists=True, file_okay=False),
              help="Folder of label files with a 6th confidence column, stored as a run.")
@click.option("--run", help="Run name for the predictions (default: the folder name).")
@click.option("--model", help="Model name for the run (default: the run name).")
@_CLIP
@_FMT
@handle_errors
def import_yolo(path: str, db: str, dataset: str, classes: str | None, predictions: str | None, run: str | None,
                model: str | None, clip: bool, keep_outside: bool, fmt: str) -> None:
    """A YOLO folder (images/ + labels/*.txt with normalized cx cy w h)."""
    names = None
    if classes is not None:
        from pathlib import Path

        names = [ln.strip() for ln in Path(classes).read_text().splitlines() if ln.strip()]
    _run_import(db, fmt, lambda ws: ws.import_yolo(
        path, dataset, classes=names, predictions=predictions, run=run, model=model,
        clip=_clip(clip, keep_outside),
        progress=progress_printer("image headers")))


@import_group.command("parquet")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@db_option()
@click.option("--dataset", help="Dataset name (default: the one in manifest.json).")
@click.option("--run", help="Run name for predictions.parquet (default: the manifest's).")
@_FMT
@handle_errors
def import_parquet(path: str, db: str, dataset: str | None, run: str | None, fmt: str) -> None:
    """A folder written by `loupe export parquet`."""
    _run_import(db, fmt, lambda ws: ws.import_parquet(path, dataset, run=run))


@cli.group("export")
def export_group() -> None:
    """Export a dataset (or a run's predictions) to files."""


@export_group.command("coco")
@click.argument("out", type=click.Path(dir_okay=False))
@db_option()
@dataset_option
@click.option("--run", help="Export this run's predictions as a COCO results file instead of the ground truth.")
@handle_errors
def export_coco(out: str, db: str, dataset: str, run: str | None) -> None:
    """COCO JSON (instances, or results with --run) to OUT."""
    with open_ws(db, read_only=True) as ws:
        counts = ws.get_dataset(dataset).export_coco(out, run=run)
    click.echo(f"wrote {out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@export_group.command("parquet")
@click.argument("out", type=click.Path(file_okay=False))
@db_option()
@click.option("--dataset", default=None, help="Dataset name (required unless --tables).")
@click.option("--run", help="Also write this run's predictions (predictions.parquet).")
@click.option("--tables", is_flag=True,
              help="Whole workspace tables with their keys, partitioned by dataset/run, clustered by item (for Spark).")
@handle_errors
def export_parquet(out: str, db: str, dataset: str | None, run: str | None, tables: bool) -> None:
    """items.parquet, annotations.parquet (+ predictions.parquet) and manifest.json into folder OUT."""
    if tables:
        from ..io.parquet_tables import export_tables

        with open_ws(db, read_only=True) as ws:
            files = export_tables(ws, out)["files"]
        click.echo(f"wrote {out}: " + ", ".join(
            f"{t} ({n if isinstance(n, int) else sum(n.values())} rows)" for t, n in files.items()))
        return
    if dataset is None:
        raise click.UsageError("--dataset is required (or --tables for the whole workspace)")
    with open_ws(db, read_only=True) as ws:
        manifest = ws.get_dataset(dataset).export_parquet(out, run=run)
    click.echo(f"wrote {out}: " + ", ".join(f"{f} ({n} rows)" for f, n in manifest["files"].items()))
