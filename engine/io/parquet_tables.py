"""Whole workspace tables as Parquet, for Spark (or any engine): ``loupe export parquet --tables``.

Layout under the output folder (Hive-style partitions, so Spark prunes by dataset / run)::

    items/dataset_id=D/part-0.parquet        annotations/dataset_id=D/part-0.parquet
    predictions/run_id=R/part-0.parquet      matches/run_id=R/part-0.parquet
    datasets.parquet  models.parquet  runs.parquet  manifest.json

Rows keep their workspace keys (item_id, ann_key, pred_key) and are clustered by item (sorted by
item_id, then input order), so row-group statistics prune per-item reads and a per-image join needs
no shuffle beyond the first. JSON columns are written as strings. Every annotation version is
written (valid_from / valid_to), so any label version can be evaluated from the export.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

if TYPE_CHECKING:
    from ..api.workspace import Workspace

FORMAT = "loupe-tables"
VERSION = 1

# table -> (partition column, sort order inside a partition); None = one file
TABLES: dict[str, tuple[str | None, str]] = {
    "datasets": (None, "dataset_id"),
    "models": (None, "model_id"),
    "runs": (None, "run_id"),
    "items": ("dataset_id", "item_id"),
    "annotations": ("dataset_id", "item_id, seq, valid_from"),
    "predictions": ("run_id", "item_id, seq"),
    "matches": ("run_id", "item_id, source, ann_key, pred_key"),
    "slices": (None, "slice_id"),
    "slice_items": (None, "slice_id, item_id"),
    "slice_objects": (None, "slice_id, ann_key, pred_key"),
}


def _columns(ws: "Workspace", table: str, drop: str | None) -> str:
    """The select list: JSON columns as VARCHAR, the partition column left out (it is the folder)."""
    rows = ws.store.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = 'main' ORDER BY ordinal_position", [table]).fetchall()
    out = []
    for name, typ in rows:
        if name == drop:
            continue
        out.append(f'"{name}"::VARCHAR AS "{name}"' if typ == "JSON" else f'"{name}"')
    return ", ".join(out)


def _copy(ws: "Workspace", query: str, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = str(path).replace("'", "''")
    ws.store.con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    return pq.ParquetFile(path).metadata.num_rows


def export_tables(ws: "Workspace", out_dir: str | Path) -> dict[str, Any]:
    """Write every dataset, run and matches index of the workspace under ``out_dir`` (replaced).

    Returns:
        the manifest written: per table, per partition value, the row count.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = ws.store.con
    files: dict[str, Any] = {}
    for table, (part, order) in TABLES.items():
        shutil.rmtree(out / table, ignore_errors=True)
        cols = _columns(ws, table, part)
        if part is None:
            files[table] = _copy(ws, f"SELECT {cols} FROM {table} ORDER BY {order}", out / f"{table}.parquet")
            continue
        files[table] = {}
        values = [v for (v,) in con.execute(f"SELECT DISTINCT {part} FROM {table} ORDER BY 1").fetchall()]
        if not values:  # an empty partition keeps the table (and its partition column) readable
            _copy(ws, f"SELECT {cols} FROM {table} LIMIT 0", out / table / f"{part}=-1" / "part-0.parquet")
        for value in values:
            files[table][str(value)] = _copy(
                ws, f"SELECT {cols} FROM {table} WHERE {part} = {int(value)} ORDER BY {order}",
                out / table / f"{part}={int(value)}" / "part-0.parquet")
    names = {
        "datasets": {str(i): n for i, n in con.execute("SELECT dataset_id, name FROM datasets").fetchall()},
        "runs": {str(i): n for i, n in con.execute("SELECT run_id, name FROM runs").fetchall()},
    }
    manifest = {"format": FORMAT, "version": VERSION, **names, "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
