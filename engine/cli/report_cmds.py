"""``loupe report``: a self-contained HTML report for any dataset, run and slice."""
from __future__ import annotations

import click

from . import cli
from .common import dataset_option, db_option, handle_errors, open_ws


@cli.command("report")
@db_option()
@dataset_option
@click.option("--run", "run_name", help="A committed run to evaluate.")
@click.option("--slice", "slice_name", help="Restrict to a slice.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@handle_errors
def report_cmd(db: str, dataset: str, run_name: str | None, slice_name: str | None, out: str) -> None:
    """Write a self-contained HTML report (labels, box sizes, metadata; a run's metrics, PR curves, errors)."""
    from ..report.dataset_report import write_report

    with open_ws(db, read_only=True) as ws:
        path = write_report(ws, dataset, out, run=run_name, slice=slice_name)
    click.echo(f"report written to {path}")
