"""Model and ModelRun: a model's predictions on a dataset, and (after commit) their evaluation."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pyarrow as pa

from ..errors import AlreadyExistsError
from ..ingest.annotations import write_predictions
from ._inputs import annotations_table

if TYPE_CHECKING:
    from .dataset import Dataset
    from .workspace import Workspace


class Model:
    """A registered model. Create with ``ws.add_model``."""

    def __init__(self, ws: "Workspace", model_id: int, name: str, reference_id: str):
        self.ws = ws
        self.id = model_id
        self.name = name
        self.reference_id = reference_id

    def __repr__(self) -> str:
        return f"Model({self.reference_id!r})"

    def create_run(
        self,
        name: str,
        dataset: "Dataset",
        predictions: Iterable[Any] | pa.Table,
        metadata: Mapping[str, Any] | None = None,
        clip: bool = False,
    ) -> "ModelRun":
        """Store this model's predictions on ``dataset`` as a run (one transaction).

        Args:
            name: unique run name in the workspace.
            predictions: ``*Prediction`` objects or an Arrow table (annotation columns + confidence).
        """
        store = self.ws.store
        table = annotations_table(predictions)
        with store.transaction() as con:
            if con.execute("SELECT 1 FROM runs WHERE name = ?", [name]).fetchone():
                raise AlreadyExistsError(f"run '{name}' already exists")
            run_id = store.next_key("runs", "run_id")
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?::JSON, NULL, NULL, NULL)",
                [run_id, self.id, dataset.id, name, json.dumps(metadata) if metadata is not None else None],
            )
            write_predictions(store, run_id, dataset.id, table, clip=clip)
        return ModelRun(self.ws, run_id)


class ModelRun:
    """Predictions of one model on one dataset. Get it from ``create_run`` or ``ws.get_run``."""

    def __init__(self, ws: "Workspace", run_id: int):
        self.ws = ws
        self.id = run_id
        row = ws.store.con.execute(
            "SELECT r.name, r.dataset_id, d.name, r.model_id FROM runs r JOIN datasets d USING (dataset_id) WHERE run_id = ?",
            [run_id]).fetchone()
        self.name, self.dataset_id, self.dataset_name, self.model_id = row

    def __repr__(self) -> str:
        return f"ModelRun({self.name!r})"

    @property
    def dataset(self) -> "Dataset":
        from .dataset import Dataset

        return Dataset(self.ws, self.dataset_id, self.dataset_name)

    def predictions(self) -> pa.Table:
        """The run's predictions in input order."""
        return self.ws.store.arrow(
            """SELECT i.reference_id, p.annotation_id, p.kind, p.label, p.x, p.y, p.width, p.height, p.polygon, p.mask,
                      p.keypoints, p.keypoint_names, p.confidence, p.class_pdf, p.area, p.metadata::VARCHAR AS metadata
               FROM predictions p JOIN items i USING (item_id) WHERE p.run_id = ? ORDER BY p.seq""", [self.id])
