"""``loupe embed`` / ``similar`` / ``duplicates`` / ``select``: embeddings, similarity search and mining
(engine/similarity, docs/similarity.md)."""
from __future__ import annotations

import sys

import click

from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws, progress_printer
from .output import render, render_dict


@cli.command()
@db_option()
@dataset_option
@click.option("--model", default="phash", show_default=True,
              help="Built-in embedder: phash, dhash or efficientnet-lite0 (extra 'embed').")
@click.option("--level", type=click.Choice(["item", "gt", "prediction"]), default="item", show_default=True,
              help="Embed whole images, ground-truth box crops or a run's prediction crops.")
@click.option("--run", default=None, help="The run whose predictions are embedded (--level prediction).")
@click.option("--name", default=None, help="Embedding set name (default: the model name).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Embed at most this many now.")
@format_option
@handle_errors
def embed(db: str, dataset: str, model: str, level: str, run: str | None, name: str | None, batch_size: int,
          limit: int | None, fmt: str) -> None:
    """Compute an embedding set; resumes where it stopped and skips what is stored.

    Example: loupe embed --db ws.duckdb --dataset pennfudan --model phash
    """
    with open_ws(db) as ws:
        r = ws.get_dataset(dataset).compute_embeddings(model, level=level, name=name, run=run, batch_size=batch_size,
                                                       progress=progress_printer("embedding"), limit=limit)
        click.echo(render_dict(r, fmt))


@cli.command()
@db_option()
@dataset_option
@click.option("-e", "--embeddings", default=None, help="Embedding set (default: the dataset's only set).")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="How many results.")
@click.option("--where", default=None, help="Item DSL query restricting the candidates.")
@click.option("--slice", "slice_", default=None, help="Only items of this slice.")
@click.option("--run", default=None, help="Run context for --where.")
@click.option("--hnsw", is_flag=True, help="Approximate search with the HNSW index (extra 'similarity').")
@format_option
@click.argument("ids", nargs=-1, required=True)
@handle_errors
def similar(db: str, dataset: str, embeddings: str | None, k: int, where: str | None, slice_: str | None,
            run: str | None, hnsw: bool, fmt: str, ids: tuple[str, ...]) -> None:
    """The k items (objects) most similar to IDS (several: combined); "-" reads ids from stdin.

    Example: loupe similar --db ws.duckdb --dataset pennfudan FudanPed00012 -e effnet --where "annotations.count = 0"
    """
    if ids == ("-",):
        ids = tuple(sys.stdin.read().split())
    query = [tuple(i.split("/", 1)) if "/" in i else i for i in ids]  # objects: reference_id/annotation_id
    with open_ws(db, read_only=True) as ws:
        t = ws.get_dataset(dataset).similar(query if len(query) > 1 else query[0], k=k, embeddings=embeddings,
                                            where=where, slice=slice_, run=run, method="hnsw" if hnsw else "exact")
        click.echo(render(t, fmt))


@cli.command()
@db_option()
@dataset_option
@click.option("--method", default="phash", show_default=True, help="Hash set (its model or name).")
@click.option("-e", "--embeddings", default=None, help="Use this set instead (vector sets: cosine distance).")
@click.option("--max-hamming", type=click.IntRange(0, 32), default=None, help="Hash threshold in bits (default 10).")
@click.option("--max-distance", type=click.FloatRange(0, 2), default=None,
              help="Vector threshold, cosine distance (default 0.05).")
@click.option("--histogram", "histogram", default=None, type=click.Path(dir_okay=False),
              help="Also write the nearest-neighbour distance histogram PNG here.")
@click.option("--leaky", nargs=2, default=None, metavar="SLICE_A SLICE_B",
              help="Only near-duplicates across these two slices (train/test leaks).")
@format_option
@handle_errors
def duplicates(db: str, dataset: str, method: str, embeddings: str | None, max_hamming: int | None,
               max_distance: float | None, histogram: str | None, leaky: tuple[str, str] | None, fmt: str) -> None:
    """Near-duplicate groups (or train/test leaks with --leaky).

    Example: loupe duplicates --db ws.duckdb --dataset pennfudan --method phash --max-hamming 10
    """
    with open_ws(db, read_only=True) as ws:
        ds = ws.get_dataset(dataset)
        if histogram:
            ds.duplicate_histogram(method, embeddings=embeddings, path=histogram)
        if leaky:
            t = ds.leaky_splits(leaky[0], leaky[1], method, embeddings=embeddings, max_hamming=max_hamming,
                                max_distance=max_distance)
        else:
            t = ds.find_duplicates(method, max_hamming=max_hamming, embeddings=embeddings, max_distance=max_distance)
        click.echo(render(t, fmt))


@cli.command()
@db_option()
@dataset_option
@click.option("-n", type=click.IntRange(min=1), required=True, help="How many items to pick.")
@click.option("--strategy", type=click.Choice(["uncertainty", "diversity", "uncertainty+diversity"]),
              default="uncertainty+diversity", show_default=True)
@click.option("--where", default=None, help="Item DSL query: the candidates (e.g. annotations.count = 0).")
@click.option("--run", default=None, help="Run whose predictions give the uncertainty.")
@click.option("-e", "--embeddings", default=None, help="Item-level embedding set for diversity.")
@click.option("--method", type=click.Choice(["entropy", "margin", "least_confidence"]), default="entropy",
              show_default=True, help="Uncertainty measure.")
@click.option("--slice-name", default="to-label", show_default=True, help="Static slice to create.")
@format_option
@handle_errors
def select(db: str, dataset: str, n: int, strategy: str, where: str | None, run: str | None,
           embeddings: str | None, method: str, slice_name: str, fmt: str) -> None:
    """Pick what to label next into a static slice.

    Example: loupe select --db ws.duckdb --dataset pennfudan -n 50 --run frcnn -e effnet --where "annotations.count = 0"
    """
    with open_ws(db) as ws:
        s = ws.get_dataset(dataset).select_for_labeling(n, strategy=strategy, where=where, slice_name=slice_name,
                                                        embeddings=embeddings, run=run, method=method)
        click.echo(render(s.items().select(["reference_id"]), fmt))
