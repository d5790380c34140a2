"""What every importer shares: one atomic write of items + ground truth (+ a run), and its summary.

Readers only build Arrow tables; :func:`write_import` sends them through the public bulk API
(``ds.append`` / ``ds.annotate`` / ``model.create_run``) inside ONE workspace transaction, so an
import that fails anywhere (a bad record, a missing image) leaves the workspace exactly as it was.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LoupeError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from ..api.dataset import Dataset
    from ..api.model import Model
    from ..api.workspace import Workspace

Progress = Callable[[int, int], None]


@dataclass
class ImportSummary:
    """What an import wrote (counts are rows new to the workspace)."""

    dataset: str
    items: int = 0
    annotations: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    predictions: int = 0
    run: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_or_create_dataset(ws: "Workspace", name: str) -> "Dataset":
    """The dataset ``name``; created when missing (imports add to an existing dataset)."""
    try:
        return ws.get_dataset(name)
    except NotFoundError:
        return ws.create_dataset(name)


def merge_dataset_metadata(ds: "Dataset", patch: Mapping[str, Any]) -> None:
    """Merge keys into the dataset's metadata JSON (nested objects merge, lists are replaced)."""
    ds.ws.store.con.execute(
        "UPDATE datasets SET metadata = json_merge_patch(coalesce(metadata, '{}'::JSON), ?::JSON) "
        "WHERE dataset_id = ?",
        [json.dumps(dict(patch)), ds.id],
    )


def dataset_metadata(ds: "Dataset") -> dict[str, Any]:
    raw = ds.ws.store.scalar("SELECT metadata::VARCHAR FROM datasets WHERE dataset_id = ?", [ds.id])
    return json.loads(raw) if raw else {}


def label_counts(table: pa.Table | None) -> dict[str, int]:
    """Label → rows of an annotation table, most frequent first."""
    if table is None or table.num_rows == 0:
        return {}
    vc = pc.value_counts(table.column("label")).to_pylist()
    return dict(sorted(((d["values"], int(d["counts"])) for d in vc), key=lambda kv: (-kv[1], kv[0])))


def write_import(
    ws: "Workspace",
    dataset: str,
    items: pa.Table | None,
    annotations: pa.Table | None,
    *,
    check_images: bool = True,
    clip: bool | str = False,
    metadata: Mapping[str, Any] | None = None,
    predictions: pa.Table | None = None,
    run: str | None = None,
    model: str | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Write an import in one transaction: dataset (created if new), items, GT, metadata, run.

    Raises:
        ValidationError: naming the first bad record; nothing is written.
    """
    summary = ImportSummary(dataset=dataset)
    with ws.store.transaction():
        ds = get_or_create_dataset(ws, dataset)
        if items is not None and items.num_rows:
            summary.items = ds.append(items, check_images=check_images, progress=progress)["new"]
        if annotations is not None and annotations.num_rows:
            summary.annotations = ds.annotate(annotations, clip=clip)["new"]
            summary.labels = label_counts(annotations)
        if metadata:
            merge_dataset_metadata(ds, metadata)
        if predictions is not None:
            summary.predictions, summary.run = write_run(ws, ds, predictions, run, model, clip), run
    return summary


def release_arrow_memory() -> None:
    """Hand the Arrow pool's freed memory back to the OS after a bulk import: mimalloc otherwise keeps
    it (GBs after 20M detections), and what follows (a commit: numpy) cannot reuse it."""
    pa.default_memory_pool().release_unused()


def write_run(ws: "Workspace", ds: "Dataset", predictions: pa.Table, run: str | None, model: str | None,
              clip: bool | str = False) -> int:
    """Store predictions as run ``run`` of ``model`` (registered on first use). Returns their count."""
    run_model(ws, run, model).create_run(run, ds, predictions, clip=clip)
    return predictions.num_rows


def run_model(ws: "Workspace", run: str | None, model: str | None) -> "Model":
    """The model an imported run is stored under: ``model``, by default named as the run (registered on
    first use)."""
    if not run:
        raise LoupeError("importing predictions needs a run name")
    model_name = model or run
    try:
        return ws.get_model(model_name)
    except NotFoundError:
        return ws.add_model(model_name)


# -- small helpers for readers -------------------------------------------------------------------
def need_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise LoupeError(f"{what} directory {p} does not exist")
    return p


def lookup(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in ``table_keys`` (unique, any order) and a found-mask, vectorized.

    Dense integer ids (COCO image / category ids) use a direct inverse table; others a sorted search.
    """
    if len(table_keys) and table_keys.dtype.kind in "iu" and keys.dtype.kind in "iu":
        lo, hi = int(table_keys.min()), int(table_keys.max())
        if hi - lo < max(8 * len(table_keys), 1 << 16):
            inv = np.full(hi - lo + 1, -1, dtype=np.int64)
            inv[table_keys - lo] = np.arange(len(table_keys))
            k = keys.astype(np.int64) - lo
            inside = (k >= 0) & (k <= hi - lo)
            pos = np.where(inside, inv[np.clip(k, 0, hi - lo)], -1)
            found = pos >= 0
            return np.where(found, pos, 0), found
    order = np.argsort(table_keys, kind="stable")
    sk = table_keys[order]
    pos = np.searchsorted(sk, keys)
    pos_c = np.minimum(pos, max(len(sk) - 1, 0))
    found = (pos < len(sk)) & (sk[pos_c] == keys) if len(sk) else np.zeros(len(keys), bool)
    return order[pos_c] if len(sk) else pos_c, found


def first_duplicate(values: np.ndarray) -> int | None:
    """Index of the first element equal to an earlier one, or None."""
    if len(values) < 2:
        return None
    _, first = np.unique(values, return_index=True)
    if len(first) == len(values):
        return None
    dup = np.ones(len(values), bool)
    dup[first] = False
    return int(np.argmax(dup))


def bad(message: str, record: str, field: str | None = None) -> ValidationError:
    return ValidationError(message, record=record, field=field)


def json_text(values: list[Mapping[str, Any] | None]) -> pa.Array:
    """Dicts → JSON text column (sorted keys, so equal dicts give equal text); empty → NULL."""
    return pa.array([json.dumps(v, sort_keys=True) if v else None for v in values], pa.string())


def abs_path(p: Path) -> str:
    return str(p.resolve())
