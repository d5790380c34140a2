"""Nucleus ``Model`` and ``ModelRun`` over Loupe's models and runs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .offline import OfflineMethods
from .records import to_loupe

if TYPE_CHECKING:
    from .client import NucleusClient
    from .dataset import Dataset


def parse_id(value: Any, prefix: str) -> int | None:
    """``ds_12`` → 12 for Nucleus-style ids; None for anything else (then it is a name)."""
    if isinstance(value, str) and value.startswith(prefix) and value[len(prefix):].isdigit():
        return int(value[len(prefix):])
    return None


class Model(OfflineMethods):
    """A registered model: ``id`` (``prj_<n>``), ``name``, ``reference_id``."""

    _service_only = frozenset({"add_tags", "remove_tags", "evaluate", "run", "predict"})

    def __init__(self, client: "NucleusClient", model: Any):
        self._client = client
        self.loupe = model
        self.id = f"prj_{model.id}"
        self.name = model.name
        self.reference_id = model.reference_id

    def __repr__(self) -> str:
        return f"Model(model_id='{self.id}', name='{self.name}', reference_id='{self.reference_id}')"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Model) and other.id == self.id

    def create_run(self, name: str, dataset: "Dataset", predictions: List[Any], metadata: Optional[Dict] = None,
                   asynchronous: bool = False) -> "ModelRun":
        """Upload ``predictions`` of this model on ``dataset`` as a run named ``name`` (one transaction)."""
        run = self.loupe.create_run(name, dataset._ds, to_loupe(predictions, predictions=True), metadata=metadata)
        return ModelRun(self._client, run)


class ModelRun(OfflineMethods):
    """Predictions of one model on one dataset; ``commit()`` matches them to the ground truth."""

    _service_only = frozenset({"predict", "iloc", "refloc", "loc", "prediction_loc", "ungrouped_export"})

    def __init__(self, client: "NucleusClient", run: Any):
        self._client = client
        self.loupe = run
        self.model_run_id = self.id = f"run_{run.id}"
        self.name = run.name
        self.dataset_id = f"ds_{run.dataset_id}"
        self.model_id = f"prj_{run.model_id}"

    def __repr__(self) -> str:
        return f"ModelRun(model_run_id='{self.id}', name='{self.name}', dataset_id='{self.dataset_id}')"

    @property
    def model(self) -> Model:
        from ..api.model import Model as LoupeModel

        row = self._client.ws.store.con.execute(
            "SELECT name, reference_id FROM models WHERE model_id = ?", [self.loupe.model_id]).fetchone()
        return Model(self._client, LoupeModel(self._client.ws, self.loupe.model_id, row[0], row[1]))

    def info(self) -> dict:
        return {"model_run_id": self.id, "name": self.name, "dataset_id": self.dataset_id, "model_id": self.model_id,
                "predictions": self.loupe.predictions().num_rows}

    def commit(self, payload: Optional[dict] = None) -> dict:
        """Match predictions to ground truth, as the client's ``commit(payload)``.

        ``payload`` keys as in Nucleus: ``class_agnostic`` (default True, as Nucleus documents; False when
        ``allowed_label_matches`` is given) and ``allowed_label_matches`` (``[{"ground_truth_label": ..,
        "model_prediction_label": ..}]``). Returns ``{"model_run_id": ..}`` plus Loupe's COCO ``stats``.
        """
        payload = dict(payload or {})
        unknown = set(payload) - {"class_agnostic", "allowed_label_matches"}
        if unknown:
            from ..errors import ValidationError

            raise ValidationError(f"unknown commit payload keys: {sorted(unknown)}", record="payload", field="keys")
        allowed = payload.get("allowed_label_matches")
        pairs = None
        if allowed:
            pairs = [(m["ground_truth_label"], m["model_prediction_label"]) for m in allowed]
        class_agnostic = bool(payload.get("class_agnostic", pairs is None))
        result = self.loupe.commit(class_agnostic=class_agnostic if pairs is None else False,
                                   allowed_label_matches=pairs)
        return {"model_run_id": self.id, **result}
