"""Error-analysis commands: patches (with crops and a contact sheet) and insights (with charts)."""
from __future__ import annotations

import json

import click

from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws
from .output import render

# Columns printed for people (--format table); csv/json print every column.
PATCH_COLUMNS = ("status", "error_type", "source", "label", "partner_label", "iou", "best_iou", "confidence",
                 "area", "reference_id", "annotation_id", "partner_annotation_id")


@cli.command()
@db_option()
@click.option("--run", "run_name", required=True, help="Run name (committed).")
@click.option("--status", multiple=True, type=click.Choice(["tp", "fp", "fn", "ignored"]),
              help="Keep these statuses (repeatable).")
@click.option("--label", multiple=True, help="Keep objects with these labels (repeatable).")
@click.option("--error-type", multiple=True,
              type=click.Choice(["classification", "localization", "both", "duplicate", "background", "missed"]),
              help="Keep these error types (repeatable).")
@click.option("--query", help="Object-level DSL query (needs the query language).")
@click.option("--sort", type=click.Choice(["iou", "confidence", "area", "best_iou"]), default="iou", show_default=True)
@click.option("--desc", is_flag=True, help="Sort high to low.")
@click.option("--limit", type=click.IntRange(min=0), help="At most N rows.")
@click.option("--iou-threshold", type=float, help="Which stored matching to read (default 0.5 if stored).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write crops and a contact sheet here.")
@click.option("--context", type=click.FloatRange(min=0), default=0.15, show_default=True, help="Crop margin (fraction).")
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True, help="Crop side in pixels.")
@click.option("--image-root", type=click.Path(file_okay=False), help="Base directory of relative image paths.")
@format_option
@handle_errors
def patches(db: str, run_name: str, status: tuple[str, ...], label: tuple[str, ...], error_type: tuple[str, ...],
            query: str | None, sort: str, desc: bool, limit: int | None, iou_threshold: float | None,
            out_dir: str | None, context: float, size: int, image_root: str | None, fmt: str) -> None:
    """List a run's objects (TP/FP/FN) sorted by IoU, confidence or area; --out draws them.

    Crop colours: GT green, missed GT (FN) orange, TP prediction blue, FP prediction red, ignored grey.
    """
    from ..analysis import crops

    with open_ws(db, read_only=True) as ws:
        run = ws.get_run(run_name)
        table = run.patches(status=list(status) or None, query=query, sort=sort, descending=desc, limit=limit,
                            label=list(label) or None, error_type=list(error_type) or None,
                            iou_threshold=iou_threshold)
        shown = table.select(list(PATCH_COLUMNS)) if fmt == "table" else table
        click.echo(render(shown, fmt))
        if out_dir is not None:
            written = crops(table, out_dir, context=context, size=size, image_root=image_root)
            rows = written.to_pylist()
            sheets = [r["path"] for r in rows if r["kind"] == "sheet"]
            failed = sum(1 for r in rows if r["error"])
            n = sum(1 for r in rows if r["kind"] == "crop")
            click.echo(f"wrote {n} crops to {out_dir}" + (f"; contact sheet: {', '.join(sheets)}" if sheets else "")
                       + (f" ({failed} without a readable image)" if failed else ""), err=fmt != "table")


@cli.command()
@db_option()
@dataset_option
@click.option("--run", "run_name", help="Add the run's per-class TP/FP/FN, score and IoU histograms.")
@click.option("--slice", "slice_name", help="Restrict to a slice (by name).")
@click.option("--bins", type=click.IntRange(min=1), default=20, show_default=True, help="Histogram bins.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), help="Write PNG charts here (needs matplotlib).")
@format_option
@handle_errors
def insights(db: str, dataset: str, run_name: str | None, slice_name: str | None, bins: int,
             plots_dir: str | None, fmt: str) -> None:
    """Label, box-size and metadata distributions of a dataset (and a run's errors)."""
    with open_ws(db, read_only=True) as ws:
        ds = ws.get_dataset(dataset)
        tables = ds.insights(slice=slice_name, run=run_name, bins=bins)
        if fmt == "json":
            click.echo(json.dumps({name: t.to_pylist() for name, t in tables.items()}, default=str))
        else:
            parts = []
            for name, t in tables.items():
                body = render(t, fmt, max_rows=40 if fmt == "table" else None)
                parts.append(f"## {name}\n{body}" if fmt == "table" else f"# {name}\n{body}")
            click.echo("\n\n".join(parts))
        if plots_dir is not None:
            from ..analysis.plots import save_charts

            paths = save_charts(tables, plots_dir)
            click.echo(f"wrote {len(paths)} charts to {plots_dir}", err=fmt != "table")
