"""``loupe tutorial [PATH]``: the whole walk-through, ending in a self-contained HTML report."""
from __future__ import annotations

import click

from . import cli
from .common import handle_errors, progress_printer


@cli.command()
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", default="loupe-tutorial", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the data, crops, charts, report.html and the workspace.")
@click.option("--db", default=None, type=click.Path(dir_okay=False),
              help="Workspace file (default: OUT/tutorial.duckdb); its tutorial dataset is replaced.")
@click.option("--n", "n_images", type=click.IntRange(min=1), default=200, show_default=True,
              help="Sample images to generate (without PATH).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images of PATH (by name).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample-data and train/test split seed.")
@handle_errors
def tutorial(path: str | None, out_dir: str, db: str | None, n_images: int, limit: int | None, seed: int) -> None:
    """Walk through Loupe end to end and write an HTML report.

    Without PATH: on generated sample data with known label errors and a simulated detector
    (ingest, train/test slices, commit, metrics, patches, insights, label-error suggestions,
    corrected labels, before/after table). With PATH (a PennFudan-layout folder): on real images
    with OpenCV's HOG people detector as the model (needs `pip install 'loupe[hog]'`).
    """
    from engine.report.tutorial import run_tutorial

    res = run_tutorial(path, out_dir, db, n_images=n_images, limit=limit, seed=seed, echo=click.echo,
                       progress=progress_printer)
    if res.skipped or res.missing:
        click.echo("not available in this build: " + "; ".join(
            [f"{s.name} ({s.detail})" for s in res.skipped] + res.missing))
