"""Reading a ``loupe export parquet --tables`` folder (engine.io.parquet_tables) from Spark and the driver."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..errors import LoupeError, NotFoundError
from ..io.parquet_tables import FORMAT


@dataclass(frozen=True)
class TablesDir:
    """An exported workspace: its folder and manifest."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> "TablesDir":
        root = Path(path)
        mf = root / "manifest.json"
        if not mf.is_file():
            raise LoupeError(f"{root} is not a table export (no manifest.json; write one with "
                             "`loupe export parquet --tables`)")
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise LoupeError(f"{root} holds format {manifest.get('format')!r}, not {FORMAT!r} "
                             "(export with `loupe export parquet --tables`)")
        return cls(root, manifest)

    def run(self, name: str) -> tuple[int, int]:
        """(run_id, dataset_id) of a run by name."""
        runs = pq.read_table(self.root / "runs.parquet", columns=["run_id", "dataset_id", "name"]).to_pylist()
        for r in runs:
            if r["name"] == name:
                return int(r["run_id"]), int(r["dataset_id"])
        raise NotFoundError(f"no run named '{name}' in {self.root}")

    def dataset(self, name: str) -> tuple[int, int]:
        """(dataset_id, current label_version) of a dataset by name."""
        for r in pq.read_table(self.root / "datasets.parquet").to_pylist():
            if r["name"] == name:
                return int(r["dataset_id"]), int(r["label_version"])
        raise NotFoundError(f"no dataset named '{name}' in {self.root}")

    def label_version(self, dataset_id: int) -> int:
        for r in pq.read_table(self.root / "datasets.parquet").to_pylist():
            if int(r["dataset_id"]) == dataset_id:
                return int(r["label_version"])
        raise NotFoundError(f"no dataset {dataset_id} in {self.root}")

    def coco_categories(self, dataset_id: int) -> Any:
        """The dataset's ``coco.categories`` metadata (the category order of a COCO import), or None."""
        import json

        for r in pq.read_table(self.root / "datasets.parquet").to_pylist():
            if int(r["dataset_id"]) == dataset_id:
                try:
                    meta = json.loads(r["metadata"]) if isinstance(r.get("metadata"), str) else r.get("metadata")
                except ValueError:
                    return None
                return (meta or {}).get("coco", {}).get("categories") if isinstance(meta, dict) else None
        return None

    def read(self, spark: Any, table: str, column: str | None = None, value: int | None = None) -> Any:
        """A Spark DataFrame of a table, or of one partition of it (empty when that partition has no rows)."""
        if column is None:
            return spark.read.parquet(str(self.root / (table + ("" if (self.root / table).is_dir() else ".parquet"))))
        p = self.root / table / f"{column}={int(value)}"
        if not p.is_dir():
            return None
        return spark.read.parquet(str(p))
