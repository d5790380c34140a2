"""Dataset: items, their ground-truth annotations (versioned) and the runs made on them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import pyarrow as pa

from engine.store import item_values
from ..errors import ValidationError
from ..ingest.annotations import write_annotations
from ..ingest.items import append_items
from ._inputs import annotations_table, items_table

if TYPE_CHECKING:
    from engine.curation.slices import Slice
    from .workspace import Workspace

ANNOTATION_FIELDS = (
    "reference_id, annotation_id, kind, label, x, y, width, height, polygon, mask, keypoints, keypoint_names, "
    "iscrowd, area, metadata"
)


def label_state(version: int | None) -> str:
    """SQL predicate on ``annotations a`` selecting one label version (None = current)."""
    if version is None:
        return "a.valid_to IS NULL"
    v = int(version)
    return f"a.valid_from <= {v} AND (a.valid_to IS NULL OR a.valid_to > {v})"


class Dataset:
    """A named set of items with ground truth. Get one from ``ws.create_dataset`` / ``ws.get_dataset``."""

    def __init__(self, ws: "Workspace", dataset_id: int, name: str):
        self.ws = ws
        self.id = dataset_id
        self.name = name

    def __repr__(self) -> str:
        return f"Dataset({self.name!r})"

    @property
    def _store(self):
        return self.ws.store

    # -- items --------------------------------------------------------------------------------
    def append(
        self,
        items: Iterable[Any] | pa.Table,
        update: bool = False,
        check_images: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, int]:
        """Add items; an existing reference_id is skipped unless ``update=True`` replaces it.

        Args:
            items: ``DatasetItem`` objects or an Arrow table (reference_id, image_location, width,
                height, metadata).
            check_images: refuse items whose local image is missing or unreadable.

        Returns:
            ``{"new": n, "updated": n, "ignored": n}``.
        """
        return append_items(self._store, self.id, items_table(items), update=update,
                            check_images=check_images, progress=progress)

    def update_item_metadata(self, updates: Mapping[str, Mapping[str, Any]]) -> int:
        """Merge keys into items' metadata: ``{reference_id: {key: value}}``. Returns items changed."""
        refs = list(updates)
        t = pa.table({
            "reference_id": pa.array(refs, pa.string()),
            "patch": pa.array([json.dumps(dict(updates[r])) for r in refs], pa.string()),
        })
        con = self._store.con
        con.register("__meta_patch", t)
        try:
            missing = con.execute(
                "SELECT p.reference_id FROM __meta_patch p WHERE NOT EXISTS "
                "(SELECT 1 FROM items i WHERE i.dataset_id = ? AND i.reference_id = p.reference_id) LIMIT 1",
                [self.id],
            ).fetchone()
            if missing:
                raise ValidationError("unknown reference_id", record=f"reference_id '{missing[0]}'", field="reference_id")
            with self._store.transaction():
                con.execute(
                    """UPDATE items SET metadata = json_merge_patch(coalesce(items.metadata, '{}'::JSON), p.patch::JSON)
                       FROM __meta_patch p WHERE items.dataset_id = ? AND items.reference_id = p.reference_id""",
                    [self.id],
                )
                item_values.refresh(self._store, self.id, "SELECT reference_id FROM __meta_patch")
        finally:
            con.unregister("__meta_patch")
        return len(refs)

    def items(self) -> pa.Table:
        """All items: reference_id, image_location, width, height, metadata (JSON text)."""
        return self._store.arrow(
            "SELECT reference_id, image_location, width, height, metadata::VARCHAR AS metadata "
            "FROM items WHERE dataset_id = ? ORDER BY item_id", [self.id])

    # -- annotations ---------------------------------------------------------------------------
    def annotate(
        self,
        annotations: Iterable[Any] | pa.Table,
        update: bool = False,
        clip: bool = False,
        author: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Add ground truth; idempotent on (reference_id, annotation_id).

        An existing annotation is kept unless ``update=True``, which stores the new version and keeps
        the old one in the label history. Boxes outside the image are refused unless ``clip=True``.

        Returns:
            ``{"new", "updated", "ignored", "label_version"}``.
        """
        return write_annotations(self._store, self.id, annotations_table(annotations), update=update,
                                 clip=clip, author=author, reason=reason)

    def annotations(self, kind: str | None = None, label_version: int | None = None) -> pa.Table:
        """Ground truth of the current (or a past) label version, in input order."""
        cond = label_state(label_version)
        params: list[Any] = [self.id]
        if kind is not None:
            cond += " AND a.kind = ?"
            params.append(kind)
        return self._store.arrow(
            f"""SELECT i.reference_id, a.annotation_id, a.kind, a.label, a.x, a.y, a.width, a.height, a.polygon,
                       a.mask, a.keypoints, a.keypoint_names, a.iscrowd, a.area, a.metadata::VARCHAR AS metadata
                FROM annotations a JOIN items i USING (item_id)
                WHERE a.dataset_id = ? AND {cond} ORDER BY a.seq""",
            params,
        )

    def delete_annotations(self, annotation_ids: Iterable[Any], reason: str | None = None,
                           author: str | None = None, reference_id: str | None = None) -> int:
        """Delete annotations (kept in history as a new label version). Returns how many.

        Ids are unique per item: name objects of several items as ``(reference_id, annotation_id)``
        pairs (or pass ``reference_id``); an id found on several items is refused as ambiguous.
        """
        from engine.curation.corrections import delete_annotations

        return delete_annotations(self, annotation_ids, reason=reason, author=author, reference_id=reference_id)

    # -- label corrections (logic in engine/curation/corrections.py) ------------------------------------------
    def correct(self, annotation_id: Any, reason: str | None = None, author: str | None = None,
                reference_id: str | None = None, **changes: Any) -> dict[str, Any]:
        """Change one annotation's label / box / iscrowd / metadata as a new label version.

        Example:
            >>> ds.correct("2", reference_id="FudanPed00012", label="cyclist", reason="rides a bike", author="ana")
        """
        from engine.curation.corrections import correct

        return correct(self, annotation_id, reason=reason, author=author, reference_id=reference_id, **changes)

    def add_missing(self, annotations: Iterable[Any] | pa.Table, reason: str | None = None,
                    author: str | None = None, clip: bool = False) -> dict[str, Any]:
        """Add annotations the labels left out, as a new label version (logged with ``reason``)."""
        from engine.curation.corrections import add_missing

        return add_missing(self, annotations, reason=reason, author=author, clip=clip)

    def apply_changes(self, add: Any = None, change: Any = None, delete: Any = None, reason: str | None = None,
                      author: str | None = None, operation: str = "correct") -> dict[str, Any]:
        """Adds, changes and deletes as ONE label version; see :func:`engine.curation.corrections.apply_changes`."""
        from engine.curation.corrections import apply_changes

        return apply_changes(self, add=add, change=change, delete=delete, reason=reason, author=author,
                             operation=operation)

    def undo(self, version: int | None = None, reason: str | None = None, author: str | None = None) -> dict[str, Any]:
        """Revert a label version (default: the latest) by opening a new one; history is kept."""
        from engine.curation.corrections import undo

        return undo(self, version, reason=reason, author=author)

    def undo_last(self, reference_id: str | None = None, annotation_id: Any = None, reason: str | None = None,
                  author: str | None = None) -> dict[str, Any]:
        """Undo the latest label fix still in effect (of one item / object if given); again: the one before."""
        from engine.curation.corrections import undo_last

        return undo_last(self, reference_id, annotation_id, reason=reason, author=author)

    def annotation_history(self, annotation_id: Any = None, reference_id: str | None = None) -> pa.Table:
        """Every stored state of one annotation (or all) with version, operation, author and reason."""
        from engine.curation.corrections import history

        return history(self, annotation_id, reference_id)

    def label_changes(self, version: int | None = None) -> pa.Table:
        """Per-object log of corrections (action, fields, reason, old/new label) of one version or all."""
        from engine.curation.corrections import changes

        return changes(self, version)

    def label_versions(self) -> pa.Table:
        """The label history: one row per version with who, why, when and what changed."""
        return self._store.arrow(
            "SELECT version, created_at, operation, author, reason, added, changed, deleted "
            "FROM label_versions WHERE dataset_id = ? ORDER BY version", [self.id])

    @property
    def label_version(self) -> int:
        return int(self._store.scalar("SELECT label_version FROM datasets WHERE dataset_id = ?", [self.id]))

    # -- export (the formats live in engine.io) --------------------------------------------------
    def export_coco(self, path: str | Path, run: str | None = None) -> dict[str, int]:
        """Write the current ground truth as COCO JSON (original image/category/annotation ids when
        imported from COCO); with ``run``, that run's predictions as a COCO results file instead."""
        from ..io.coco import export_coco

        return export_coco(self, path, run=run)

    def export_parquet(self, out_dir: str | Path, run: str | None = None) -> dict[str, Any]:
        """Write items.parquet, annotations.parquet (+ predictions.parquet of ``run``) and manifest.json."""
        from ..io.parquet import export_parquet

        return export_parquet(self, out_dir, run=run)

    # -- labeling tools (logic in engine/curation/labeling_tools.py) -----------------------------
    def export_labels(self, tool: str, path: str | Path, slice: Any = None, reference_ids: Iterable[str] | None = None,
                      image_url: Any = None) -> dict[str, Any]:
        """Write a CVAT (``tool="cvat"``) or Label Studio (``"label-studio"``) task file of the chosen items
        (a slice, reference ids, or all) with their current labels as pre-annotations.

        Example:
            >>> ds.export_labels("cvat", "fix.xml", reference_ids=run.suggest_label_errors(limit=20)["reference_id"])
        """
        from engine.curation.labeling_tools import export_labels

        return export_labels(self, tool, path, slice=slice, reference_ids=reference_ids, image_url=image_url)

    def import_labels(self, tool: str, path: str | Path, reason: str | None = None, author: str | None = None,
                      tolerance: float = 0.01) -> dict[str, Any]:
        """Apply a CVAT / Label Studio export as ONE label version (ids kept, history kept, ``undo`` works).

        Returns ``{"label_version", "added", "changed", "deleted", "unchanged", "changes"}`` (``changes``: a
        table of what changed, object by object).
        """
        from engine.curation.labeling_tools import import_labels

        return import_labels(self, tool, path, reason=reason, author=author, tolerance=tolerance)

    def to_torch(self, slice: Any = None, transforms: Callable | None = None,
                 label_map: Mapping[str, int] | None = None, masks: bool | None = None) -> Any:
        """A ``torch.utils.data.Dataset``-compatible view yielding ``(image, target)`` in torchvision's
        detection format (extra ``torch``); see :mod:`engine.integrations.torch`.

        Example:
            >>> loader = DataLoader(ds.to_torch(slice="train"), batch_size=4, collate_fn=engine.integrations.torch.collate)
        """
        from engine.integrations.torch import TorchDataset

        return TorchDataset(self, slice=slice, transforms=transforms, label_map=label_map, masks=masks)

    # -- summary -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts: items, annotations by kind and label, runs, label version."""
        s = self._store
        labels = s.con.execute(
            "SELECT label, count(*) FROM annotations a WHERE dataset_id = ? AND valid_to IS NULL "
            "GROUP BY label ORDER BY count(*) DESC, label", [self.id]).fetchall()
        kinds = s.con.execute(
            "SELECT kind, count(*) FROM annotations a WHERE dataset_id = ? AND valid_to IS NULL "
            "GROUP BY kind ORDER BY kind", [self.id]).fetchall()
        runs = [r[0] for r in s.con.execute("SELECT name FROM runs WHERE dataset_id = ? ORDER BY run_id", [self.id]).fetchall()]
        return {
            "name": self.name,
            "items": int(s.scalar("SELECT count(*) FROM items WHERE dataset_id = ?", [self.id])),
            "annotations": int(sum(n for _, n in labels)),
            "labels": {k: int(n) for k, n in labels},
            "kinds": {k: int(n) for k, n in kinds},
            "label_version": self.label_version,
            "runs": runs,
        }

    def annotations_per_item(self) -> pa.Table:
        """Histogram: how many items carry n annotations."""
        return self._store.arrow(
            """SELECT n AS annotations, count(*) AS items FROM (
                   SELECT i.item_id, count(a.ann_key) AS n FROM items i
                   LEFT JOIN annotations a ON a.item_id = i.item_id AND a.valid_to IS NULL
                   WHERE i.dataset_id = ? GROUP BY i.item_id) GROUP BY n ORDER BY n""", [self.id])

    # -- analysis ------------------------------------------------------------------------------
    def insights(self, slice: Any = None, run: Any = None, **kwargs: Any) -> dict[str, pa.Table]:
        """Label, box-size and metadata distributions (and a committed run's errors) as Arrow tables.

        Thin wrapper of :func:`engine.analysis.insights` (see it for the tables; ``bins``,
        ``iou_threshold``). ``slice``: a slice name, a Slice or a list of reference ids; ``run``: a
        run or its name.
        """
        from ..analysis.insights import insights

        if isinstance(run, str):
            run = self.ws.get_run(run)
        return insights(self, slice=slice, run=run, **kwargs)

    # -- queries and slices (logic in engine/execution/runner.py and engine/curation/slices.py) --------------------
    def query(self, dsl: str, run: Any = None, order_by: str | None = None, limit: int | None = None,
              offset: int | None = None) -> pa.Table:
        """Items matching a DSL query, with the columns of :meth:`items` (docs/query-language.md).

        Example:
            >>> ds.query("annotations.pedestrian >= 4 AND metadata.camera = 'rear'")
            >>> ds.query("predictions.fp > 0", run="frcnn", order_by="predictions.fp DESC", limit=20)
        """
        from engine.execution.runner import query_items

        return query_items(self, dsl, run, order_by, limit, offset)

    def query_objects(self, dsl: str, run: Any = None, order_by: str | None = None, limit: int | None = None,
                      offset: int | None = None) -> pa.Table:
        """Annotations (and, with ``run``, predictions with their match rows) matching a DSL query.

        Example:
            >>> ds.query_objects('status = "fp" AND confidence > 0.8', run="frcnn", order_by="confidence DESC")
        """
        from engine.execution.runner import query_objects

        return query_objects(self, dsl, run, order_by, limit, offset)

    def explain(self, dsl: str, run: Any = None, objects: bool = False, dialect: str = "duckdb") -> str:
        """The SQL a DSL query runs on this dataset (``dialect``: duckdb, spark, trino, postgres)."""
        from engine.execution.runner import explain

        return explain(dsl, dialect, ds=self, run=run, objects=objects)

    def create_slice(self, name: str, reference_ids: Iterable[str] | None = None, query: str | None = None,
                     run: Any = None, objects: bool = False) -> "Slice":
        """A static slice of ``reference_ids``, or a dynamic one defined by a DSL ``query``.

        Example:
            >>> ds.create_slice("test", reference_ids=["FudanPed00001", "FudanPed00002"])
            >>> ds.create_slice("crowded", query="annotations.pedestrian >= 4")
        """
        from engine.curation.slices import create_slice

        return create_slice(self, name, reference_ids, query, run, objects)

    def slices(self) -> pa.Table:
        """This dataset's slices as a table: name, kind, dynamic query, run, size (objects: ``get_slice``)."""
        from engine.curation.slices import slices_table

        return slices_table(self.ws.store, self.id)

    def get_slice(self, name: str) -> "Slice":
        from engine.curation.slices import get_slice

        return get_slice(self, name)

    def delete_slice(self, name: str) -> None:
        from engine.curation.slices import delete_slice

        delete_slice(self, name)

    # -- scenario tests (logic in engine/analysis/scenarios.py) ---------------------------------------------------
    def create_scenario(self, name: str, criteria: str, slice: str | None = None, description: str | None = None,
                        baseline: Any = None, replace: bool = False) -> dict[str, Any]:
        """A scenario test: a slice + criteria such as ``bbox_recall(iou=0.5) > 0.8, bbox_map() >= 0.5``.

        See docs/scenarios.md. ``run.test()`` / ``loupe test`` evaluate it (with history).
        """
        from engine.analysis.scenarios import create_scenario

        return create_scenario(self, name, criteria, slice=slice, description=description, baseline=baseline,
                               replace=replace)

    def scenarios(self) -> pa.Table:
        """The scenario tests of this dataset with their last outcome."""
        from engine.analysis.scenarios import list_scenarios

        return list_scenarios(self)

    def delete_scenario(self, name: str) -> None:
        from engine.analysis.scenarios import delete_scenario

        delete_scenario(self, name)

    def set_scenario_baseline(self, run: Any, names: Iterable[str] | None = None) -> int:
        """Make ``run`` the baseline of the named scenarios (default all)."""
        from engine.analysis.scenarios import set_baseline

        return set_baseline(self, run, names)

    def scenario_history(self, name: str | None = None, run: Any = None) -> pa.Table:
        """Past scenario evaluations (newest first), one row per criterion."""
        from engine.analysis.scenarios import scenario_history

        return scenario_history(self, name, run)

    # -- embeddings and similarity (engine/similarity) -------------------------------------------
    def add_embeddings(self, name: str, vectors: Any, level: str = "item", run: Any = None,
                       model: str | None = None) -> dict[str, Any]:
        """Store vectors computed elsewhere (or 64-bit hashes) as the embedding set ``name``.

        Args:
            vectors: a ``pyarrow.Table`` (``reference_id``, or ``annotation_id`` / ``prediction_id`` with an
                optional ``reference_id``, and ``vector``; a uint64 ``hash`` column makes a hash set), a dict
                id -> vector, or ``(ids, numpy array [n, d])`` (a uint64 array [n]: hashes).
            level: "item", "gt" (current ground-truth objects) or "prediction" (objects of ``run``).

        Rows with ids already in the set replace them. Bad input (mixed dimensions, NaN/inf, unknown or
        duplicate ids) raises ``ValidationError`` naming the record; nothing is written.

        Example:
            >>> ds.add_embeddings("clip", (ref_ids, clip_vectors), model="clip-vit-b32")
        """
        from engine.similarity.sets import add_embeddings

        return add_embeddings(self, name, vectors, level=level, run=run, model=model)

    def embeddings(self) -> pa.Table:
        """The dataset's embedding sets: name, level, run, model, kind, dim, count, created_at."""
        from engine.similarity.sets import list_sets

        return list_sets(self)

    def delete_embeddings(self, name: str) -> None:
        """Delete an embedding set (its vectors and 2-D maps)."""
        from engine.similarity.sets import delete_set

        delete_set(self, name)

    def compute_embeddings(self, model: Any = "phash", level: str = "item", name: str | None = None,
                           run: Any = None, batch_size: int = 32, progress: Any = True,
                           limit: int | None = None) -> dict[str, Any]:
        """Embed the dataset's images (or object crops) with a built-in embedder or a callable.

        ``model``: "phash", "dhash", "efficientnet-lite0" or ``images -> float32[N, d]``. Resumes after an
        interruption (each batch is committed) and skips what the set already holds. ``level`` "gt" or
        "prediction" (with ``run``) embeds box crops. ``progress``: True (stderr), False or ``f(done, total)``;
        ``limit``: embed at most this many now.
        """
        from engine.similarity.compute import compute_embeddings

        return compute_embeddings(self, model=model, level=level, name=name, run=run, batch_size=batch_size,
                                  progress=progress, limit=limit)

    def similar(self, query: Any, k: int = 10, embeddings: str | None = None, where: str | None = None,
                slice: Any = None, run: Any = None, method: str = "exact", include_query: bool = False) -> pa.Table:
        """The k items (or objects) most similar to ``query``: ``reference_id`` [+ object id], ``score``.

        ``query``: a reference id (an object id at object level), several (positives, combined as the
        mean of their unit vectors) or a vector. ``where`` (item DSL) and ``slice`` restrict candidates.
        ``method="hnsw"`` uses an approximate index (``usearch``; built on first use, recall reported by
        ``similarity_index``). Scores: cosine similarity, or 1 - Hamming/64 for hash sets.

        Example:
            >>> ds.similar("crowded_017", k=20, embeddings="effnet", where="annotations.count = 0")
        """
        from engine.similarity.search import similar

        return similar(self, query, k=k, embeddings=embeddings, where=where, slice=slice, run=run,
                       method=method, include_query=include_query)

    def similarity_index(self, embeddings: str | None = None, **options: Any) -> dict[str, Any]:
        """Build (or load) the HNSW index of a vector set; returns its size and recall@10 vs exact search."""
        from engine.similarity import hnsw, search, sets

        info = sets.get_set(self, embeddings, kind="vector")
        if info.kind != "vector":
            raise ValidationError(f"HNSW indexes vector sets; '{info.name}' is a hash set (searched exactly)",
                                  field="embeddings")
        return hnsw.ensure(self, search.loaded(self, info), **options)

    def find_duplicates(self, method: str | None = "phash", max_hamming: int | None = None,
                        embeddings: str | None = None, max_distance: float | None = None) -> pa.Table:
        """Near-duplicate groups: one row per member (``group``, ``reference_id`` [+ object id], ``distance``).

        A hash set (``method`` names its model or the set; default threshold ``max_hamming=10`` bits) or a vector
        set (``embeddings=``; cosine distance ``max_distance``, default 0.05). ``duplicate_histogram`` helps
        pick the threshold.
        """
        from engine.similarity.duplicates import find_duplicates

        return find_duplicates(self, method=method, max_hamming=max_hamming, embeddings=embeddings,
                               max_distance=max_distance)

    def duplicate_histogram(self, method: str | None = "phash", embeddings: str | None = None, bins: int = 32,
                            sample: int | None = 2000, path: str | None = None) -> pa.Table:
        """Nearest-neighbour distance histogram (``bin_start``, ``bin_end``, ``count``); ``path`` writes a PNG."""
        from engine.similarity.duplicates import duplicate_histogram

        return duplicate_histogram(self, method=method, embeddings=embeddings, bins=bins, sample=sample, path=path)

    def leaky_splits(self, slice_a: Any, slice_b: Any, method: str | None = "phash", embeddings: str | None = None,
                     max_hamming: int | None = None, max_distance: float | None = None) -> pa.Table:
        """Near-duplicate pairs across two slices (e.g. train / test), closest first."""
        from engine.similarity.duplicates import leaky_splits

        return leaky_splits(self, slice_a, slice_b, method=method, embeddings=embeddings, max_hamming=max_hamming,
                            max_distance=max_distance)

    def uniqueness(self, embeddings: str | None = None) -> pa.Table:
        """Uniqueness per item (FiftyOne's definition: 3 nearest neighbours, weights .6/.3/.1, max = 1)."""
        from engine.similarity.uniqueness import uniqueness

        return uniqueness(self, embeddings)

    def select_for_labeling(self, n: int, strategy: str = "uncertainty+diversity", where: str | None = None,
                            slice_name: str = "to-label", embeddings: str | None = None, run: Any = None,
                            method: str = "entropy") -> "Slice":
        """Pick ``n`` items to label next among those matching ``where`` → a static slice ``slice_name``.

        ``strategy``: "uncertainty" (needs ``run``), "diversity" (k-center greedy on ``embeddings``) or
        "uncertainty+diversity" (k-center greedy over the 5n most uncertain).
        """
        from engine.similarity.selection import select_for_labeling

        return select_for_labeling(self, n, strategy=strategy, where=where, slice_name=slice_name,
                                   embeddings=embeddings, run=run, method=method)

    def embedding_map(self, name: str | None = None, method: str = "pca", path: str | None = None,
                      colour_by: str = "label", run: Any = None) -> pa.Table:
        """2-D map of an embedding set (PCA; UMAP when umap-learn is installed), stored per item / object:
        ``reference_id`` [+ object id], ``x``, ``y``. ``path``: also a PNG coloured by label, slice or status."""
        from engine.similarity.projection import embedding_map, map_png

        t = embedding_map(self, name, method)
        if path is not None:
            map_png(self, path, name, method, colour_by, run)
        return t
