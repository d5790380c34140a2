"""Label-error and regression commands: label-errors, compare, test, scenario, label-versions, undo."""
from __future__ import annotations

import json
import sys

import click

from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws
from .output import printable, render

# Columns printed for people (--format table); csv/json print every column.
SUGGESTION_COLUMNS = ("rank", "score", "reason", "reference_id", "annotation_id", "prediction_id", "label",
                      "suggested_label", "explanation")
OBJECT_COLUMNS = ("change", "reference_id", "annotation_id", "prediction_id_a", "prediction_id_b", "label",
                  "status_a", "status_b", "iou_a", "iou_b", "confidence_a", "confidence_b", "impact")


def _dsl_errors(f):
    """Criteria syntax errors (queries.DSLError, a ValueError) as one clean message and exit 1."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from queries import DSLError

        try:
            return f(*args, **kwargs)
        except DSLError as e:
            click.echo(f"error: {printable(str(e), newlines=True)}", err=True)
            sys.exit(1)

    return wrapper


@cli.command("label-errors")
@db_option()
@click.option("--run", "run_name", required=True, help="Committed run whose matches are analysed.")
@click.option("--other-run", "other_runs", multiple=True, help="Committed run(s) to confirm suggestions (repeatable).")
@click.option("--reason", "reasons", multiple=True,
              type=click.Choice(["missing_annotation", "spurious_gt", "wrong_label", "loose_box",
                                 "inconsistent_labeling"]), help="Keep these reasons (repeatable).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most N suggestions.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Ignore predictions below this confidence.")
@format_option
@handle_errors
def label_errors(db: str, run_name: str, other_runs: tuple[str, ...], reasons: tuple[str, ...], limit: int,
                 min_score: float, min_confidence: float, fmt: str) -> None:
    """Rank likely label errors (missing, spurious, wrong label, loose box, inconsistent) of a run.

    Method and measured precision: docs/label-errors.md.
    """
    with open_ws(db, read_only=True) as ws:
        run = ws.get_run(run_name)
        t = run.suggest_label_errors(other_runs=list(other_runs) or None, reasons=list(reasons) or None,
                                     limit=limit, min_score=min_score, min_confidence=min_confidence)
    click.echo(render(t.select(list(SUGGESTION_COLUMNS)) if fmt == "table" else t, fmt))


@cli.command()
@db_option()
@click.argument("run_a")
@click.argument("run_b", required=False)
@click.option("--slice", "slice_names", multiple=True,
              help="Restrict to this slice (repeatable with one run: one block per slice).")
@click.option("--label-version", "label_versions", type=int, multiple=True,
              help="One run: label versions to compare (default: first and current). Two runs: the labels to "
                   "evaluate against (default current).")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Objects shown.")
@format_option
@handle_errors
def compare(db: str, run_a: str, run_b: str | None, slice_names: tuple[str, ...], label_versions: tuple[int, ...],
            limit: int, fmt: str) -> None:
    """Compare two runs (metric deltas and objects one gets right and the other wrong), or one run
    against several label versions (AP/AR before vs after corrections).

    Examples: loupe compare --db ws.duckdb frcnn yolo --slice night;
    loupe compare --db ws.duckdb frcnn --label-version 1 --label-version 3 --slice test
    """
    import engine

    with open_ws(db, read_only=True) as ws:
        if run_b is None:
            t = engine.compare(ws, run_a, label_versions=list(label_versions) or None,
                               slices=list(slice_names) or None)
            click.echo(render(t, fmt))
            return
        if len(slice_names) > 1 or len(label_versions) > 1:
            raise click.UsageError("comparing two runs takes at most one --slice and one --label-version")
        r = engine.compare_runs(ws.get_run(run_a), ws.get_run(run_b), slice=slice_names[0] if slice_names else None,
                                label_version=label_versions[0] if label_versions else None)
    if fmt == "json":
        click.echo(json.dumps({k: v.slice(0, limit).to_pylist() if k == "objects" else v.to_pylist()
                               for k, v in r.items()}, default=str))
        return
    for key in ("summary", "per_class", "per_slice", "objects", "items"):
        t = r[key]
        if key == "objects":
            t = t.slice(0, limit).select(list(OBJECT_COLUMNS)) if fmt == "table" else t.slice(0, limit)
        if key == "items":
            t = t.slice(0, limit)
        head = {"summary": f"{run_a} (a) vs {run_b} (b)", "objects": "objects where the runs differ (by impact)",
                "items": "items (b minus a)"}.get(key, key.replace("_", " "))
        click.echo(f"## {printable(head)}\n{render(t, fmt)}\n" if fmt == "table" else f"# {key}\n{render(t, fmt)}")


@cli.command("test")
@db_option()
@click.option("--run", "run_name", required=True, help="Run to test.")
@click.option("--baseline", default=None, help="Baseline run (default: each scenario's stored baseline).")
@click.option("--scenario", "names", multiple=True, help="Only these scenarios (repeatable).")
@click.option("--label-version", type=int, default=None, help="Evaluate against these labels (default current).")
@click.option("--no-record", is_flag=True, help="Do not store the outcome in the history (read-only open).")
@format_option
@handle_errors
@_dsl_errors
def test_cmd(db: str, run_name: str, baseline: str | None, names: tuple[str, ...], label_version: int | None,
             no_record: bool, fmt: str) -> None:
    """Run the dataset's scenario tests for a run; exit status 1 when any scenario fails (CI gate)."""
    from engine.analysis.scenarios import run_scenarios

    with open_ws(db, read_only=no_record) as ws:
        t = run_scenarios(ws.get_run(run_name), baseline=baseline, scenarios=list(names) or None,
                          label_version=label_version, store_results=not no_record)
    if t.num_rows == 0:
        click.echo("no scenario tests defined for this dataset (add one: loupe scenario add)", err=True)
        return
    shown = t.select(["scenario", "criterion", "value", "baseline_value", "bound", "passed"]) if fmt == "table" else t
    click.echo(render(shown, fmt))
    failed = sorted({r["scenario"] for r in t.to_pylist() if not r["scenario_passed"]})
    n = len(set(t.column("scenario").to_pylist()))
    if failed:
        click.echo(f"FAILED: {len(failed)} of {n} scenario(s): {', '.join(failed)}", err=True)
        sys.exit(1)
    click.echo(f"passed: {n} scenario(s)", err=fmt != "table")


@cli.group("scenario")
def scenario_group() -> None:
    """Scenario tests: a slice + criteria such as bbox_recall(iou=0.5) > 0.8 (docs/scenarios.md)."""


@scenario_group.command("add")
@db_option()
@dataset_option
@click.argument("name")
@click.option("--slice", "slice_name", default=None, help="Slice name (default: all items).")
@click.option("--criteria", required=True, help='e.g. "bbox_recall(iou=0.5) > 0.8, bbox_map() >= 0.5"')
@click.option("--description", default=None)
@click.option("--baseline", default=None, help="Baseline run for comparisons and baseline-relative bounds.")
@click.option("--replace", is_flag=True, help="Replace an existing scenario of that name (keeps its history).")
@handle_errors
@_dsl_errors
def scenario_add(db: str, dataset: str, name: str, slice_name: str | None, criteria: str, description: str | None,
                 baseline: str | None, replace: bool) -> None:
    """Add a scenario test to a dataset."""
    with open_ws(db) as ws:
        s = ws.get_dataset(dataset).create_scenario(name, criteria, slice=slice_name, description=description,
                                                     baseline=baseline, replace=replace)
    click.echo(f"scenario '{name}' on {slice_name or 'all items'}: " + "; ".join(s["criteria"]))


@scenario_group.command("list")
@db_option()
@dataset_option
@format_option
@handle_errors
def scenario_list(db: str, dataset: str, fmt: str) -> None:
    """List the scenario tests of a dataset with their last outcome."""
    with open_ws(db, read_only=True) as ws:
        click.echo(render(ws.get_dataset(dataset).scenarios(), fmt))


@scenario_group.command("history")
@db_option()
@dataset_option
@click.argument("name", required=False)
@click.option("--run", "run_name", default=None, help="Only evaluations of this run.")
@format_option
@handle_errors
def scenario_history(db: str, dataset: str, name: str | None, run_name: str | None, fmt: str) -> None:
    """Past evaluations of the scenario tests (newest first)."""
    with open_ws(db, read_only=True) as ws:
        click.echo(render(ws.get_dataset(dataset).scenario_history(name, run=run_name), fmt))


@scenario_group.command("delete")
@db_option()
@dataset_option
@click.argument("name")
@handle_errors
def scenario_delete(db: str, dataset: str, name: str) -> None:
    """Delete a scenario test and its history."""
    with open_ws(db) as ws:
        ws.get_dataset(dataset).delete_scenario(name)
    click.echo(f"deleted scenario '{name}'")


@cli.command("label-versions")
@db_option()
@dataset_option
@click.option("--changes", "version", type=int, default=None, help="Show the per-object changes of this version.")
@format_option
@handle_errors
def label_versions(db: str, dataset: str, version: int | None, fmt: str) -> None:
    """The label history of a dataset (who changed what, when and why)."""
    with open_ws(db, read_only=True) as ws:
        ds = ws.get_dataset(dataset)
        t = ds.label_versions() if version is None else ds.label_changes(version)
    click.echo(render(t, fmt))


@cli.command("undo")
@db_option()
@dataset_option
@click.option("--version", type=int, default=None, help="Label version to revert (default: the latest).")
@click.option("--reason", default=None)
@click.option("--author", default=None)
@handle_errors
def undo(db: str, dataset: str, version: int | None, reason: str | None, author: str | None) -> None:
    """Revert a label version by opening a new one (history is kept)."""
    with open_ws(db) as ws:
        r = ws.get_dataset(dataset).undo(version, reason=reason, author=author)
    click.echo(f"reverted label version {r['undone']} as version {r['label_version']}: "
               f"{r['restored']} restored, {r['removed']} removed, {r['changed']} changed back")
