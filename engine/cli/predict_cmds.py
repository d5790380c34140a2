"""``loupe predict hog PATH``: run a built-in detector on a PennFudan-layout folder and store the run."""
from __future__ import annotations

import json

import click

from . import cli
from .common import db_option, handle_errors, open_ws, progress_printer


@cli.group("predict")
def predict_group() -> None:
    """Run a built-in detector on a dataset's images and store its predictions as a run."""


@predict_group.command("hog")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@db_option()
@click.option("--dataset", required=True, help="Dataset (PATH is imported into it when it does not exist yet).")
@click.option("--run", "run_name", required=True, help="Name of the new run.")
@click.option("--model", default="opencv-hog-people", show_default=True, help="Model reference id.")
@click.option("--scale", type=click.FloatRange(min=1.0, min_open=True), default=1.05, show_default=True,
              help="Image-pyramid step.")
@click.option("--win-stride", type=click.IntRange(min=1), default=8, show_default=True, help="Window step (px).")
@click.option("--hit-threshold", type=float, default=0.0, show_default=True, help="Minimum SVM weight.")
@click.option("--upscale", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True,
              help="Resize images by this factor first (finds smaller people, slower).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items (by reference id).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Images at once.")
@click.option("--commit", "do_commit", is_flag=True, help="Also commit the run and print its COCO stats.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@handle_errors
def predict_hog(path: str, db: str, dataset: str, run_name: str, model: str, scale: float, win_stride: int,
                hit_threshold: float, upscale: float, limit: int | None, workers: int, do_commit: bool,
                fmt: str) -> None:
    """OpenCV's HOG people detector on PATH (a PennFudan-layout folder); needs `pip install 'loupe[hog]'`.

    Boxes are labelled 'pedestrian'; confidence = logistic(SVM weight), in (0, 1).
    """
    from ..detectors.hog import HogParams, require_cv2, run_hog

    require_cv2()  # fail before importing anything
    params = HogParams(win_stride=(win_stride, win_stride), scale=scale, hit_threshold=hit_threshold,
                       upscale=upscale)
    with open_ws(db, must_exist=False) as ws:
        out: dict = {"dataset": dataset, "run": run_name}
        if dataset not in ws.list_datasets().column("name").to_pylist():
            s = ws.import_pennfudan(path, dataset, progress=progress_printer("masks"))
            out["imported"] = {"items": s.items, "annotations": s.annotations}
        ds = ws.get_dataset(dataset)
        refs = sorted(ds.items().column("reference_id").to_pylist())[:limit] if limit else None
        run, summary = run_hog(ds, run_name, params, model=model, reference_ids=refs, workers=workers,
                               progress=progress_printer("hog"))
        out.update(summary)
        if do_commit:
            c = run.commit()
            if refs is None:
                out.update(tp=c["tp"], fp=c["fp"], fn=c["fn"], stats=c["stats"])
            else:  # the run covers only the first N items: evaluate on those
                m = run.metrics(slice=refs)
                out.update(m["counts"], stats=m["stats"], evaluated_items=len(refs))
    if fmt == "json":
        click.echo(json.dumps(out))
        return
    if "imported" in out:
        click.echo(f"imported {path} into dataset '{dataset}': {out['imported']['items']} items, "
                   f"{out['imported']['annotations']} annotations")
    click.echo(f"run '{run_name}': {out['predictions']} predictions on {out['images']} images in {out['seconds']:.1f} s"
               + (f" ({out['skipped']} items without a local image skipped)" if out["skipped"] else "")
               + (f" ({out['unreadable']} unreadable)" if out["unreadable"] else ""))
    if do_commit:
        st = out["stats"]
        scope = f" on the {out['evaluated_items']} detected items" if "evaluated_items" in out else ""
        click.echo(f"TP {out['tp']}, FP {out['fp']}, FN {out['fn']} at IoU 0.5; "
                   f"AP {st['AP']:.3f}, AP50 {st['AP50']:.3f}, AP75 {st['AP75']:.3f}, AR100 {st['AR100']:.3f}{scope}")
