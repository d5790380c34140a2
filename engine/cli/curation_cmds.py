"""Curation commands: ``loupe slice create|list|delete`` and ``loupe correct FILE`` (label fixes).

Slices are made from reference ids (a file, one per line, or a CSV with a ``reference_id`` column, as
``loupe query --format csv`` prints), a seeded random sample, or a DSL query (dynamic). A corrections
file (CSV or JSON) holds add / change / delete rows, applied as ONE label version with a reason and an
author through :func:`engine.curation.corrections.apply_changes`.
"""
from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import click
import pyarrow as pa

from ..errors import LoupeError, LoupeWarning, ValidationError
from . import cli
from .common import dataset_option, db_option, format_option, handle_errors, open_ws
from .output import render


def _dsl_errors(f: Callable) -> Callable:
    """A DSL error (queries.DSLError) is a data error: one line on stderr, exit 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from queries import DSLError

        try:
            return f(*args, **kwargs)
        except DSLError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)

    return wrapper


def _echo_warnings(caught: list) -> None:
    for w in caught:
        if issubclass(w.category, LoupeWarning):
            click.echo(f"warning: {w.message}", err=True)


# -- slices ----------------------------------------------------------------------------------------------
@cli.group("slice")
def slice_group() -> None:
    """Create, list and delete slices (named item sets: static ids or a dynamic DSL query)."""


def read_reference_ids(path: str) -> list[str]:
    """Reference ids from a file (``-`` = stdin): one per line (blank lines and ``#`` comments skipped),
    or a CSV whose header has a ``reference_id`` column."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    lines = [ln.strip() for ln in text.splitlines()]
    if lines and "," in lines[0] and "reference_id" in [c.strip().strip('"') for c in lines[0].split(",")]:
        import pyarrow.csv as pcsv

        t = pcsv.read_csv(pa.py_buffer(text.encode()), convert_options=pcsv.ConvertOptions(
            column_types={"reference_id": pa.string()}))
        return [r for r in t.column("reference_id").to_pylist() if r]
    ids = [ln for ln in lines if ln and not ln.startswith("#")]
    if ids and ids[0] == "reference_id":  # a one-column CSV
        ids = ids[1:]
    return ids


@slice_group.command("create")
@click.argument("name")
@db_option()
@dataset_option
@click.option("--ids", "ids_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="File of reference ids (one per line, or a CSV with a reference_id column; - = stdin).")
@click.option("--query", "dsl", help="DSL query: a dynamic slice that follows the labels (docs/query-language.md).")
@click.option("--run", default=None, help="Run context of the query (predictions.* fields).")
@click.option("--objects", is_flag=True, help="An object slice (the query selects annotations/predictions).")
@click.option("--sample", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="A seeded random fraction of the dataset's items (static).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--rest", default=None, help="With --sample: also create this slice of the other items.")
@handle_errors
@_dsl_errors
def slice_create(name: str, db: str, dataset: str, ids_file: str | None, dsl: str | None, run: str | None,
                 objects: bool, sample: float | None, seed: int, rest: str | None) -> None:
    """Create slice NAME from --ids FILE, --query DSL or --sample FRACTION (exactly one)."""
    given = [o for o, v in (("--ids", ids_file), ("--query", dsl), ("--sample", sample)) if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --ids FILE, --query DSL, --sample FRACTION")
    if rest is not None and sample is None:
        raise click.UsageError("--rest goes with --sample")
    if (run is not None or objects) and dsl is None:
        raise click.UsageError("--run and --objects go with --query")
    with open_ws(db) as ws:
        ds = ws.get_dataset(dataset)
        if dsl is not None:
            s = ds.create_slice(name, query=dsl, run=run, objects=objects)
            click.echo(f"created dynamic slice '{name}' in dataset '{dataset}': {s.count()} "
                       f"{'objects' if objects else 'items'} now")
            return
        if sample is not None:
            from ..report.tutorial import split_train_test

            other, picked = split_train_test(ds.items().column("reference_id").to_pylist(), seed=seed,
                                             test_fraction=sample)
            with ws.store.transaction():  # both slices or neither
                ds.create_slice(name, reference_ids=picked)
                if rest is not None:
                    ds.create_slice(rest, reference_ids=other)
            click.echo(f"created slice '{name}' in dataset '{dataset}': {len(picked)} items"
                       + (f"; slice '{rest}': {len(other)} items" if rest is not None else ""))
            return
        ids = read_reference_ids(ids_file)
        if not ids:
            raise LoupeError(f"{ids_file}: no reference ids")
        s = ds.create_slice(name, reference_ids=ids)
        click.echo(f"created slice '{name}' in dataset '{dataset}': {s.count()} items")


@slice_group.command("list")
@db_option()
@click.option("--dataset", default=None, help="Only this dataset's slices.")
@format_option
@handle_errors
def slice_list(db: str, dataset: str | None, fmt: str) -> None:
    """Slices: dataset, name, kind, dynamic query, run and size (static slices)."""
    from ..curation.slices import slices_table

    with open_ws(db, read_only=True) as ws:
        t = ws.get_dataset(dataset).slices() if dataset is not None else slices_table(ws.store)
    click.echo(render(t, fmt))


@slice_group.command("delete")
@click.argument("name")
@db_option()
@dataset_option
@handle_errors
def slice_delete(name: str, db: str, dataset: str) -> None:
    """Delete slice NAME (its items and labels are untouched)."""
    with open_ws(db) as ws:
        ws.get_dataset(dataset).delete_slice(name)
    click.echo(f"deleted slice '{name}' from dataset '{dataset}'")


# -- corrections -----------------------------------------------------------------------------------------
ACTIONS = ("add", "change", "delete")
_TYPES = {"action": pa.string(), "reference_id": pa.string(), "annotation_id": pa.string(), "label": pa.string(),
          "x": pa.float64(), "y": pa.float64(), "width": pa.float64(), "height": pa.float64(),
          "iscrowd": pa.bool_(), "reason": pa.string()}
_BOX = ("x", "y", "width", "height")


def read_corrections(path: str) -> list[dict[str, Any]]:
    """Rows of a corrections file: CSV (header: the columns of ``_TYPES``) or JSON (a list of objects,
    ``box: [x, y, width, height]`` allowed). Unknown columns are refused, naming them."""
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LoupeError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValidationError("a JSON corrections file is a list of objects", record=path)
        rows = []
        for i, r in enumerate(data):
            r = dict(r)
            if "box" in r:
                box = r.pop("box")
                if not isinstance(box, list) or len(box) != 4:
                    raise ValidationError("box must be [x, y, width, height]", record=f"row {i + 1}", field="box")
                r.update(zip(_BOX, box))
            rows.append(r)
    else:
        import pyarrow.csv as pcsv

        try:
            t = pcsv.read_csv(p, convert_options=pcsv.ConvertOptions(
                column_types={k: v for k, v in _TYPES.items() if v != pa.bool_()} | {"iscrowd": pa.string()},
                strings_can_be_null=True))
        except pa.ArrowInvalid as e:
            raise LoupeError(f"{path}: cannot read the CSV: {e}") from None
        rows = t.to_pylist()
        for r in rows:
            if r.get("iscrowd") is not None:
                r["iscrowd"] = str(r["iscrowd"]).strip().lower() in ("1", "true", "yes")
    for i, r in enumerate(rows):
        unknown = [k for k in r if k not in _TYPES]
        if unknown:
            raise ValidationError(f"unknown column {unknown[0]!r}; columns: {list(_TYPES)}",
                                  record=f"row {i + 1}", field=unknown[0])
    return rows


def corrections_args(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``apply_changes`` arguments (add table, change rows, delete rows) from corrections rows."""
    add, change, delete = [], [], []
    for i, r in enumerate(rows):
        where = f"row {i + 1}"
        action = str(r.get("action") or "").strip().lower()
        if action not in ACTIONS:
            raise ValidationError(f"action must be one of {list(ACTIONS)}, got {r.get('action')!r}",
                                  record=where, field="action")
        fields = {k: v for k, v in r.items() if k != "action" and v is not None and v != ""}
        if action != "add" and not fields.get("annotation_id"):
            raise ValidationError(f"{action} needs the annotation_id", record=where, field="annotation_id")
        if action == "add":
            missing = [k for k in ("reference_id", "label", *_BOX) if k not in fields]
            if missing:
                raise ValidationError("add needs reference_id, label, x, y, width, height", record=where,
                                      field=missing[0])
            add.append({"kind": "box", **fields})
        elif action == "change":
            if not set(fields) - {"reference_id", "annotation_id", "reason"}:
                raise ValidationError("change names nothing to change (label, x, y, width, height, iscrowd)",
                                      record=where)
            change.append(fields)
        else:
            extra = set(fields) - {"reference_id", "annotation_id", "reason"}
            if extra:
                raise ValidationError("delete takes only reference_id, annotation_id, reason", record=where,
                                      field=sorted(extra)[0])
            delete.append(fields)
    if not (add or change or delete):
        raise LoupeError("the corrections file has no rows")
    add_t = None
    if add:
        cols = sorted(set().union(*add), key=lambda c: (c != "kind", list(_TYPES).index(c) if c in _TYPES else 0))
        try:
            add_t = pa.table({c: pa.array([a.get(c) for a in add], _TYPES.get(c, pa.string())) for c in cols})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValidationError(f"bad value in an add row: {e}") from None
    return {"add": add_t, "change": change or None, "delete": delete or None}


@cli.command("correct")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@db_option()
@dataset_option
@click.option("--reason", required=True, help="Why (recorded with the label version and every row without its own).")
@click.option("--author", default=None, help="Who (recorded with the label version).")
@format_option
@handle_errors
def correct(file: str, db: str, dataset: str, reason: str, author: str | None, fmt: str) -> None:
    """Apply a corrections FILE (CSV or JSON) as ONE new label version.

    Columns: action (add | change | delete), reference_id, annotation_id, label, x, y, width, height,
    iscrowd, reason (per row, optional). change: the given fields replace the current ones; add: a new
    box; delete: the annotation (history keeps it; `loupe undo` reverts the version).
    """
    args = corrections_args(read_corrections(file))
    with open_ws(db) as ws, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoupeWarning)
        r = ws.get_dataset(dataset).apply_changes(**args, reason=reason, author=author)
    _echo_warnings(caught)
    if fmt == "table":
        click.echo(f"label version {r['label_version']}: {r['added']} added, {r['changed']} changed, "
                   f"{r['deleted']} deleted" + (f", {r['unchanged']} unchanged" if r.get("unchanged") else ""))
    else:
        click.echo(render(pa.Table.from_pylist([r]), fmt))
