"""``loupe demo``: sample data → workspace → model run → commit → a short summary."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click
import pyarrow as pa

from . import cli
from .common import handle_errors, progress_printer
from .output import render, render_dict


def build_demo(out_dir: Path, n_images: int, db: str | None, seed: int = 0):
    """Generate the sample data in ``out_dir`` and load it (with the simulated run) into a workspace."""
    import sample_data

    import engine
    from engine.io.predictions_json import read_predictions_json

    sample_data.generate(out_dir, n_images=n_images, seed=seed, progress=progress_printer("render"))
    sample_data.detect(out_dir, seed=seed + 1)
    ws = engine.connect(db)
    if "sample" in ws.list_datasets().column("name").to_pylist():
        ws.delete_dataset("sample")
    ws.import_pennfudan(out_dir, dataset="sample", progress=progress_printer("import"))
    ds = ws.get_dataset("sample")
    model = ws.get_model("simulated-detector") if "simulated-detector" in ws.list_models().column(
        "reference_id").to_pylist() else ws.add_model("simulated detector", "simulated-detector")
    run = model.create_run("simulated", ds, read_predictions_json(out_dir / "predictions.json"))
    return ws, ds, run


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--n", "n_images", type=int, default=200, show_default=True, help="Images to generate.")
@click.option("--db", default=None, type=click.Path(dir_okay=False),
              help="Keep the workspace in this file (default: in memory).")
@handle_errors
def demo(directory: str | None, n_images: int, db: str | None) -> None:
    """Generate the built-in sample data, import it with a simulated model run, commit and summarize."""
    tmp = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="loupe-demo-")
        directory = tmp.name
    out = Path(directory)
    try:
        ws, ds, run = build_demo(out, n_images, db)
        info = ds.info()
        click.echo(f"Loupe demo: sample data in {out}" + (" (temporary)" if tmp else ""))
        click.echo(render_dict({"dataset": info["name"], "items": info["items"], "annotations": info["annotations"],
                                "labels": info["labels"]}))
        click.echo("\nannotations per item:")
        click.echo(render(ds.annotations_per_item()))
        c = run.commit()
        click.echo(f"\nrun '{run.name}': {c['predictions']} predictions → TP {c['tp']}, FP {c['fp']}, "
                   f"FN {c['fn']} at IoU 0.5")
        click.echo(render(pa.table({"metric": list(c["stats"]), "value": list(c["stats"].values())})))
        click.echo("\nerror types:")
        click.echo(render(run.error_types()))
        sugg = run.suggest_label_errors(limit=5)
        if sugg.num_rows:
            click.echo("\nlikely label errors (top 5; loupe label-errors for more):")
            click.echo(render(sugg.select(["rank", "reason", "reference_id", "label", "score"])))
        click.echo("\nnext: `loupe tutorial` walks through slices, patches, label fixes and before/after metrics")
        if db:
            click.echo(f"\nworkspace saved to {db}; try: loupe sql --db {db} -c \"SELECT * FROM matches LIMIT 5\"")
        ws.close()
    finally:
        if tmp is not None:
            tmp.cleanup()
