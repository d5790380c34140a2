"""``loupe query``: run one DSL query from the shell (items, or objects with --objects)."""
from __future__ import annotations

import sys

import click

from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws
from .output import render


@cli.command()
@db_option()
@dataset_option
@click.option("--run", default=None, help="Run context (predictions.* fields; objects add its predictions).")
@click.option("--objects", is_flag=True, help="Object-level query (annotations and predictions).")
@click.option("--order-by", "order_by", default=None, help='ORDER BY list, e.g. "confidence DESC".')
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many rows.")
@click.option("--explain", "explain_", is_flag=True, help="Print the SQL instead of running it.")
@click.option("--dialect", type=click.Choice(["duckdb", "spark", "trino", "postgres"]), default="duckdb",
              show_default=True, help="SQL dialect for --explain.")
@format_option
@click.argument("dsl")
@handle_errors
def query(db: str, dataset: str, run: str | None, objects: bool, order_by: str | None, limit: int | None,
          explain_: bool, dialect: str, fmt: str, dsl: str) -> None:
    """Run a DSL query (docs/query-language.md); DSL "-" reads the query from stdin.

    Example: loupe query --db ws.duckdb --dataset pennfudan "annotations.pedestrian >= 4"
    """
    if dsl == "-":
        dsl = sys.stdin.read()
    with open_ws(db, read_only=True) as ws:
        ds = ws.get_dataset(dataset)
        if explain_:
            click.echo(ds.explain(dsl, run=run, objects=objects, dialect=dialect))
            return
        if objects:
            t = ds.query_objects(dsl, run=run, order_by=order_by, limit=limit)
        else:
            t = ds.query(dsl, run=run, order_by=order_by, limit=limit)
        click.echo(render(t, fmt))
