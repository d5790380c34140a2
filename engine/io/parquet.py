"""Parquet export (and import back) of a dataset: items, current annotations, a run's predictions.

An export folder holds ``items.parquet``, ``annotations.parquet`` (the current label version, in
input order), with ``--run`` also ``predictions.parquet``, and ``manifest.json`` (names, counts,
dataset metadata). The parquet columns are exactly the ingest schema
(:mod:`engine.ingest.schema`: boxes as top-left x, y, width, height; masks as uncompressed RLE
counts with ``mask_height``/``mask_width``), so any tool can read them and :func:`import_parquet`
feeds them straight back through ``ds.append`` / ``ds.annotate`` / ``model.create_run``.
Files are written by DuckDB's ``COPY`` (streaming, no Python rows).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import LoupeError
from ..ingest.schema import ANNOTATION_COLUMNS, ITEM_COLUMNS
from ._common import ImportSummary, dataset_metadata, need_dir, write_import

if TYPE_CHECKING:
    from ..api.dataset import Dataset
    from ..api.workspace import Workspace

FORMAT = "loupe-parquet"
VERSION = 1


def _geom(t: str) -> str:
    """Geometry columns of table alias ``t`` (masks get their size from the item ``i``)."""
    return (f"{t}.x, {t}.y, {t}.width, {t}.height, {t}.polygon, {t}.mask, "
            f"CASE WHEN {t}.mask IS NOT NULL THEN i.height END AS mask_height, "
            f"CASE WHEN {t}.mask IS NOT NULL THEN i.width END AS mask_width, {t}.keypoints, {t}.keypoint_names")


def _copy(ds: "Dataset", query: str, path: Path) -> int:
    con = ds.ws.store.con
    path.unlink(missing_ok=True)
    con.execute(f"COPY ({query}) TO '{_sql_path(path)}' (FORMAT parquet, COMPRESSION zstd)")
    return pq.ParquetFile(path).metadata.num_rows


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


def export_parquet(ds: "Dataset", out_dir: str | Path, run: str | None = None,
                   items_sql: str | None = None) -> dict[str, Any]:
    """Write the dataset (and run ``run``'s predictions) as parquet files in ``out_dir``.

    ``items_sql`` (SQL selecting ``item_id``) restricts the export to those items, e.g. a slice's.

    Returns:
        the manifest written (file names and row counts).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = int(ds.id)
    sub = lambda alias: "" if items_sql is None else f"AND {alias}item_id IN ({items_sql})"  # noqa: E731
    files: dict[str, int] = {}
    files["items.parquet"] = _copy(
        ds, f"SELECT reference_id, image_location, width, height, metadata::VARCHAR AS metadata FROM items "
            f"WHERE dataset_id = {d} {sub('')} ORDER BY item_id", out / "items.parquet")
    files["annotations.parquet"] = _copy(
        ds, f"SELECT i.reference_id, a.annotation_id, a.kind, a.label, {_geom('a')}, a.iscrowd, a.area, "
            f"a.metadata::VARCHAR AS metadata FROM annotations a JOIN items i USING (item_id) "
            f"WHERE a.dataset_id = {d} AND a.valid_to IS NULL {sub('a.')} ORDER BY a.seq",
        out / "annotations.parquet")
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "dataset": ds.name,
                                "dataset_metadata": dataset_metadata(ds), "label_version": ds.label_version}
    if run is not None:
        r = ds.ws.get_run(run)
        if r.dataset_id != ds.id:
            raise LoupeError(f"run '{run}' is not a run of dataset '{ds.name}'")
        files["predictions.parquet"] = _copy(
            ds, f"SELECT i.reference_id, p.annotation_id, p.kind, p.label, {_geom('p')}, p.area, "
                f"p.metadata::VARCHAR AS metadata, p.confidence, p.class_pdf FROM predictions p "
                f"JOIN items i USING (item_id) WHERE p.run_id = {int(r.id)} {sub('p.')} "
                f"ORDER BY p.seq",
            out / "predictions.parquet")
        model = ds.ws.store.scalar("SELECT reference_id FROM models WHERE model_id = ?", [r.model_id])
        manifest.update({"run": r.name, "model": model})
    manifest["files"] = files
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n", encoding="utf-8")
    return manifest


def export_slice(ds: "Dataset", out_dir: str | Path, item_ids_sql: str, run: str | None = None) -> dict[str, Any]:
    """Export only the items selected by ``item_ids_sql`` (the hook ``Slice.export("parquet", ...)`` calls)."""
    return export_parquet(ds, out_dir, run=run, items_sql=item_ids_sql)


def _read(path: Path, columns: dict[str, pa.DataType]) -> pa.Table:
    t = pq.read_table(path)
    return t.select([c for c in t.column_names if c in columns])


def import_parquet(ws: "Workspace", in_dir: str | Path, dataset: str | None = None, run: str | None = None,
                   model: str | None = None, check_images: bool = False) -> ImportSummary:
    """Load a folder written by :func:`export_parquet` (name defaults come from its manifest)."""
    src = need_dir(in_dir, "parquet export")
    mf = src / "manifest.json"
    manifest = json.loads(mf.read_text()) if mf.is_file() else {}
    name = dataset or manifest.get("dataset")
    if not name:
        raise LoupeError("no dataset name given and no manifest.json naming one")
    if not (src / "items.parquet").is_file():
        raise LoupeError(f"{src} has no items.parquet")
    items = _read(src / "items.parquet", ITEM_COLUMNS)
    gt_cols = {k: v for k, v in ANNOTATION_COLUMNS.items() if k not in ("confidence", "class_pdf")}
    anns = _read(src / "annotations.parquet", gt_cols) if (src / "annotations.parquet").is_file() else None
    preds = None
    if (src / "predictions.parquet").is_file():
        preds = _read(src / "predictions.parquet", ANNOTATION_COLUMNS)
        run = run or manifest.get("run") or "imported"
        model = model or manifest.get("model")
    meta = manifest.get("dataset_metadata") or None
    return write_import(ws, name, items, anns, check_images=check_images, metadata=meta, predictions=preds,
                        run=run, model=model)
