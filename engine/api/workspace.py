"""Workspace: one DuckDB file (or memory) holding datasets, models, runs and their results."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa

from ..errors import AlreadyExistsError, LoupeError, NotFoundError
from engine.store.database import Store


def connect(path: str | Path | None = None, read_only: bool = False, shared: bool = True,
            timeout: float | None = None) -> "Workspace":
    """Open (or create) a workspace.

    Args:
        path: the DuckDB file; None keeps everything in memory.
        read_only: open an existing file for reading only (refuses writes).
        shared: take turns on the file with other processes (the App, a notebook, the CLI): the lock is
            held only while an operation (or a ``with ws.hold():`` block) runs, released when idle or
            when another process waits. ``False`` holds it until ``close()`` (a bit faster for bulk jobs;
            every other process then waits, then fails).
        timeout: seconds an operation waits for another process's lock before ``WorkspaceLocked``
            (default 30, or ``LOUPE_LOCK_TIMEOUT``).

    Example:
        >>> ws = connect("loupe.duckdb")
        >>> ds = ws.create_dataset("pennfudan")
    """
    return Workspace(Store(path, read_only=read_only, shared=shared, timeout=timeout))


class Workspace:
    """Entry point of the API; create it with :func:`engine.connect`."""

    def __init__(self, store: Store):
        self.store = store

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def checkpoint(self) -> None:
        """Move committed data from FILE.wal into FILE, so FILE alone is the whole workspace (before
        copying it); raises CheckpointError (data safe in FILE.wal) when it cannot, e.g. disk full."""
        self.store.checkpoint()

    def hold(self):
        """``with ws.hold():`` keeps the workspace's lock for a burst of operations (one connection for
        all, no other process in between); other processes wait meanwhile. Each API call does this alone."""
        return self.store.hold()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str | None:
        return self.store.path

    # -- SQL --------------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run any SQL over the workspace tables and return a pyarrow Table.

        Example:
            >>> ws.sql("SELECT label, count(*) n FROM annotations GROUP BY label")
        """
        import duckdb

        if self.store.shared and _SESSION_STATE.search(query):
            self.store.pin_session()  # a TEMP table / ATTACH lives on this connection: keep it until close()
        try:
            return self.store.arrow(query, params)
        except duckdb.Error as e:
            raise LoupeError(f"SQL error: {e}") from None
        finally:
            if _may_write(self.store, query):
                self.store.generation += 1  # raw SQL may have written: invalidate caches
                if not self.store.read_only:
                    self.store.derived_stale = True  # derived tables are rebuilt before the next DSL query

    # -- datasets ---------------------------------------------------------------------------
    def create_dataset(self, name: str, metadata: Mapping[str, Any] | None = None) -> "Dataset":
        """Create an empty dataset; names are unique in the workspace."""
        from .dataset import Dataset

        if not isinstance(name, str) or not name.strip():
            raise LoupeError("dataset name must be a non-empty string")
        with self.store.transaction() as con:
            if con.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchone():
                raise AlreadyExistsError(f"dataset '{name}' already exists")
            ds_id = self.store.next_key("datasets", "dataset_id")
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, now()::TIMESTAMP, ?::JSON, 0)",
                [ds_id, name, json.dumps(metadata) if metadata is not None else None],
            )
        return Dataset(self, ds_id, name)

    def get_dataset(self, name: str) -> "Dataset":
        from .dataset import Dataset

        row = self.store.con.execute("SELECT dataset_id FROM datasets WHERE name = ?", [name]).fetchone()
        if row is None:
            known = [r[0] for r in self.store.con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
            raise NotFoundError(f"no dataset named '{name}'" + (f"; datasets: {', '.join(known)}" if known else ""))
        return Dataset(self, int(row[0]), name)

    def list_datasets(self) -> pa.Table:
        """Datasets with their item, annotation and run counts."""
        return self.store.arrow(
            """SELECT d.name, d.created_at,
                      (SELECT count(*) FROM items i WHERE i.dataset_id = d.dataset_id) AS items,
                      (SELECT count(*) FROM annotations a WHERE a.dataset_id = d.dataset_id AND a.valid_to IS NULL) AS annotations,
                      (SELECT count(*) FROM runs r WHERE r.dataset_id = d.dataset_id) AS runs,
                      d.label_version
               FROM datasets d ORDER BY d.dataset_id"""
        )

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset with its items, annotations, slices, runs, predictions and matches."""
        ds = self.get_dataset(name)
        with self.store.transaction() as con:
            from engine.similarity.sets import delete_dataset_sets

            delete_dataset_sets(self.store, ds.id)  # embedding sets and their maps
            p = {"ds": ds.id}
            runs = "(SELECT run_id FROM runs WHERE dataset_id = $ds)"
            slices = "(SELECT slice_id FROM slices WHERE dataset_id = $ds)"
            for stmt in (
                f"DELETE FROM matches WHERE run_id IN {runs}",
                f"DELETE FROM item_match_counts WHERE run_id IN {runs}",
                f"DELETE FROM match_count_state WHERE run_id IN {runs}",
                f"DELETE FROM evaluations WHERE run_id IN {runs}",
                f"DELETE FROM predictions WHERE run_id IN {runs}",
                "DELETE FROM runs WHERE dataset_id = $ds",
                f"DELETE FROM slice_items WHERE slice_id IN {slices}",
                f"DELETE FROM slice_objects WHERE slice_id IN {slices}",
                "DELETE FROM slices WHERE dataset_id = $ds",
                "DELETE FROM annotations WHERE dataset_id = $ds",
                "DELETE FROM item_counts WHERE dataset_id = $ds",
                "DELETE FROM label_count_versions WHERE dataset_id = $ds",
                "DELETE FROM item_count_columns WHERE dataset_id = $ds",
                "DELETE FROM count_column_slots WHERE dataset_id = $ds",
                "DELETE FROM count_column_state WHERE dataset_id = $ds",
                "DELETE FROM item_metadata_values WHERE dataset_id = $ds",
                "DELETE FROM item_value_state WHERE dataset_id = $ds",
                "DELETE FROM label_versions WHERE dataset_id = $ds",
                "DELETE FROM label_changes WHERE dataset_id = $ds",
                "DELETE FROM scenario_results WHERE evaluation_id IN (SELECT evaluation_id FROM scenario_evaluations "
                "WHERE scenario_id IN (SELECT scenario_id FROM scenarios WHERE dataset_id = $ds))",
                "DELETE FROM scenario_evaluations WHERE scenario_id IN (SELECT scenario_id FROM scenarios "
                "WHERE dataset_id = $ds)",
                "DELETE FROM scenarios WHERE dataset_id = $ds",
                "DELETE FROM items WHERE dataset_id = $ds",
                "DELETE FROM datasets WHERE dataset_id = $ds",
            ):
                con.execute(stmt, p)

    # -- models and runs ---------------------------------------------------------------------
    def add_model(self, name: str, reference_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> "Model":
        """Register a model; ``reference_id`` (default: the name) is unique in the workspace.

        Get-or-create: the same name and reference id again returns the existing model (a script can be
        re-run); a reference id taken under another name raises AlreadyExistsError.
        """
        from .model import Model

        from ._inputs import check_name

        check_name(name, "model")
        ref = check_name(name if reference_id is None else reference_id, f"model '{name}'", "reference_id")
        with self.store.transaction() as con:
            row = con.execute("SELECT model_id, name FROM models WHERE reference_id = ?", [ref]).fetchone()
            if row is not None and row[1] == name:
                return Model(self, int(row[0]), name, ref)
            if row is not None:
                raise AlreadyExistsError(f"model with reference_id '{ref}' already exists, named '{row[1]}' "
                                         f"(use get_model('{ref}'))")
            model_id = self.store.next_key("models", "model_id")
            con.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?::JSON, now()::TIMESTAMP)",
                [model_id, name, ref, json.dumps(metadata) if metadata is not None else None],
            )
        return Model(self, model_id, name, ref)

    def get_model(self, reference_id: str) -> "Model":
        from .model import Model

        row = self.store.con.execute(
            "SELECT model_id, name, reference_id FROM models WHERE reference_id = ? OR name = ? ORDER BY model_id LIMIT 1",
            [reference_id, reference_id],
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no model '{reference_id}'")
        return Model(self, int(row[0]), row[1], row[2])

    def list_models(self) -> pa.Table:
        return self.store.arrow("SELECT name, reference_id, created_at, metadata FROM models ORDER BY model_id")

    def list_runs(self) -> pa.Table:
        return self.store.arrow(
            """SELECT r.name, m.name AS model, d.name AS dataset, r.created_at, r.committed_at,
                      (SELECT count(*) FROM predictions p WHERE p.run_id = r.run_id) AS predictions
               FROM runs r JOIN models m USING (model_id) JOIN datasets d USING (dataset_id) ORDER BY r.run_id"""
        )

    def get_run(self, name: str) -> "ModelRun":
        from .model import ModelRun

        row = self.store.con.execute("SELECT run_id FROM runs WHERE name = ?", [name]).fetchone()
        if row is None:
            known = [r[0] for r in self.store.con.execute("SELECT name FROM runs ORDER BY run_id").fetchall()]
            raise NotFoundError(f"no run named '{name}'" + (f"; runs: {', '.join(known)}" if known else ""))
        return ModelRun(self, int(row[0]))

    # -- import from files (the formats live in engine.io) --------------------------------------
    def import_coco(self, path: str | Path, dataset: str, images_dir: str | Path | None = None,
                    results: str | Path | None = None, run: str | None = None, **options: Any):
        """Import COCO JSON (instances; a results list becomes a run) into ``dataset`` (created if new).

        Example:
            >>> ws.import_coco("instances_val2017.json", dataset="coco", images_dir="val2017/",
            ...                results="detections.json", run="frcnn")

        Options: ``model``, ``check_images``, ``clip``, ``progress``; see :func:`engine.io.coco.import_coco`.
        Returns an :class:`engine.io.ImportSummary`.
        """
        from ..io.coco import import_coco

        return import_coco(self, path, dataset, images_dir=images_dir, results=results, run=run, **options)

    def import_pennfudan(self, root: str | Path, dataset: str, **options: Any):
        """Import a PennFudan-layout folder (PNGImages/, PedMasks/, Annotation/); see :mod:`engine.io.pennfudan`."""
        from ..io.pennfudan import import_pennfudan

        return import_pennfudan(self, root, dataset, **options)

    def import_voc(self, root: str | Path, dataset: str, **options: Any):
        """Import a Pascal VOC folder (Annotations/*.xml, JPEGImages/); see :mod:`engine.io.voc`."""
        from ..io.voc import import_voc

        return import_voc(self, root, dataset, **options)

    def import_yolo(self, root: str | Path, dataset: str, **options: Any):
        """Import a YOLO folder (images/, labels/, classes.txt or data.yaml); see :mod:`engine.io.yolo`."""
        from ..io.yolo import import_yolo

        return import_yolo(self, root, dataset, **options)

    def import_parquet(self, in_dir: str | Path, dataset: str | None = None, **options: Any):
        """Load a folder written by ``Dataset.export_parquet``; see :mod:`engine.io.parquet`."""
        from ..io.parquet import import_parquet

        return import_parquet(self, in_dir, dataset, **options)


_SESSION_STATE = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?TEMP(?:ORARY)?\b|^\s*ATTACH\b", re.I | re.M)


def _may_write(store: Store, query: str) -> bool:
    """Whether raw SQL may have changed data (anything but SELECT / EXPLAIN statements)."""
    import duckdb

    read = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
    try:
        return any(s.type not in read for s in store.con.extract_statements(query))
    except duckdb.Error:
        return True


from .dataset import Dataset  # noqa: E402  (type references above)
from .model import Model, ModelRun  # noqa: E402
