"""``loupe labels export|import {cvat,label-studio}``: the round trip to labeling tools."""
from __future__ import annotations

import click

from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws
from .output import render, render_dict

_TOOL = click.argument("tool", type=click.Choice(["cvat", "label-studio"]))


@cli.group("labels")
def labels_group() -> None:
    """Send items to a labeling tool (CVAT, Label Studio) and take its corrections back."""


@labels_group.command("export")
@_TOOL
@click.argument("out", type=click.Path(dir_okay=False))
@db_option()
@dataset_option
@click.option("--slice", "slice_name", help="Export this slice's items (default: all).")
@click.option("--ids", "ids_file", type=click.File("r"), help="A file of reference ids, one a line ('-': stdin).")
@click.option("--image-url", help="Label Studio: URL prefix the images are served under.")
@format_option
@handle_errors
def export_cmd(tool: str, out: str, db: str, dataset: str, slice_name: str | None, ids_file, image_url: str | None,
               fmt: str) -> None:
    """Write a CVAT task XML or Label Studio tasks JSON with the current labels as pre-annotations."""
    ids = [line.strip() for line in ids_file if line.strip()] if ids_file else None
    with open_ws(db, read_only=True) as ws:
        r = ws.get_dataset(dataset).export_labels(tool, out, slice=slice_name, reference_ids=ids, image_url=image_url)
    click.echo(render_dict(r, fmt))


@labels_group.command("import")
@_TOOL
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@db_option()
@dataset_option
@click.option("--reason", help="Recorded with the label version.")
@click.option("--author", help="Recorded with the label version.")
@click.option("--tolerance", type=float, default=0.01, show_default=True,
              help="Coordinate changes up to this many pixels are rounding, not edits.")
@format_option
@handle_errors
def import_cmd(tool: str, path: str, db: str, dataset: str, reason: str | None, author: str | None,
               tolerance: float, fmt: str) -> None:
    """Apply a CVAT / Label Studio export as ONE label version and print what changed."""
    with open_ws(db) as ws:
        r = ws.get_dataset(dataset).import_labels(tool, path, reason=reason, author=author, tolerance=tolerance)
    changes = r.pop("changes")
    click.echo(render_dict(r, fmt))
    if fmt == "table" and changes.num_rows:
        click.echo(render(changes, fmt))
