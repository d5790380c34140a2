"""Nucleus ``Dataset`` and ``Slice`` over a Loupe dataset (same names, arguments and argument order)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

from .model import Model, ModelRun
from .offline import NotAvailableOffline, OfflineMethods
from .records import DatasetItem, from_loupe_item, to_loupe

if TYPE_CHECKING:
    from .client import NucleusClient


class DatasetInfo(dict):
    """Like the client's ``DatasetInfo``: attributes and dict access both work."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class UploadResponse:
    """What ``Dataset.append`` answers: new, updated and ignored item counts."""

    def __init__(self, dataset_id: str, new_items: int, updated_items: int, ignored_items: int):
        self.dataset_id = dataset_id
        self.new_items = new_items
        self.updated_items = updated_items
        self.ignored_items = ignored_items
        self.upload_errors = 0
        self.error_codes: set[str] = set()
        self.error_payload: list[Any] = []

    def json(self) -> dict:
        return {"dataset_id": self.dataset_id, "new_items": self.new_items, "updated_items": self.updated_items,
                "ignored_items": self.ignored_items, "upload_errors": self.upload_errors}

    def __repr__(self) -> str:
        return f"UploadResponse(json={self.json()})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UploadResponse) and self.json() == other.json()


def _items(items: Iterable[Any]) -> list[Any]:
    return [i.to_loupe() if isinstance(i, DatasetItem) else i for i in items]


class Dataset(OfflineMethods):
    """A dataset as the Nucleus client shows it; ``loupe`` is the native :class:`engine.Dataset`."""

    _service_only = frozenset({
        "autotag_items", "autotag_training_items", "create_image_index", "create_object_index",
        "create_custom_index", "delete_custom_index", "set_primary_index", "set_continuous_indexing",
        "get_image_indexing_status", "get_object_indexing_status", "ingest_tasks", "build_slice", "update_autotag",
        "list_autotags", "append_scenes", "scenes", "query_scenes", "export_scale_task_info", "get_tags", "add_tags",
        "remove_tags", "embedding_indexes", "export_embeddings", "deduplicate", "deduplicate_by_ids",
        "items_and_annotation_chip_generator", "calculate_evaluation_metrics", "add_taxonomy", "delete_taxonomy",
        "upload_lidar_semseg_predictions", "create_slice_by_ids", "delete_annotations", "delete_item",
    })

    def __init__(self, client: "NucleusClient", ds: Any):
        self._client = client
        self._ds = self.loupe = ds
        self.id = f"ds_{ds.id}"
        self.name = ds.name

    def __repr__(self) -> str:
        return f"Dataset(name='{self.name}', dataset_id='{self.id}')"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Dataset) and other.id == self.id

    # -- items -----------------------------------------------------------------------------------
    def append(self, items: Sequence[Any], update: bool = False, batch_size: int = 20, asynchronous: bool = False,
               local_files_per_upload_request: int = 10) -> UploadResponse:
        """Add items in one transaction; an existing reference_id is ignored unless ``update=True``."""
        r = self._ds.append(_items(items), update=update)
        return UploadResponse(self.id, r["new"], r["updated"], r["ignored"])

    @property
    def items(self) -> List[DatasetItem]:
        return [from_loupe_item(r) for r in self._ds.items().to_pylist()]

    def items_generator(self, page_size: int = 100000) -> Iterable[DatasetItem]:
        for batch in self._ds.items().to_batches(max_chunksize=page_size):
            for r in batch.to_pylist():
                yield from_loupe_item(r)

    @property
    def size(self) -> int:
        return self._ds.items().num_rows

    def refloc(self, reference_id: str) -> dict:
        """``{"item": DatasetItem, "annotations": {kind: [...]}}`` for one item."""
        for row in self.items_and_annotations():
            if row["item"].reference_id == reference_id:
                return row
        from ..errors import NotFoundError

        raise NotFoundError(f"no item with reference_id '{reference_id}' in dataset '{self.name}'")

    def query_items(self, query: str) -> Iterable[DatasetItem]:
        """Items matching a query in Loupe's DSL (docs/query-language.md; close to Nucleus' query language)."""
        for r in self._ds.query(query).to_pylist():
            yield from_loupe_item(r)

    # -- annotations -----------------------------------------------------------------------------
    def annotate(self, annotations: Sequence[Any], update: bool = False, batch_size: int = 5000,
                 asynchronous: bool = False, remote_files_per_upload_request: int = 20,
                 local_files_per_upload_request: int = 10) -> Dict[str, Any]:
        """Add ground truth in one transaction; existing (reference_id, annotation_id) kept unless ``update``."""
        r = self._ds.annotate(to_loupe(annotations), update=update)
        return {"dataset_id": self.id, "annotations_processed": r["new"] + r["updated"],
                "annotations_ignored": r["ignored"], **r}

    def items_and_annotations(self) -> List[Dict[str, Any]]:
        """Every item with its current ground truth grouped by kind (``box``, ``polygon``, ...)."""
        from .export import annotations_by_item

        return annotations_by_item(self._ds)

    # -- predictions -------------------------------------------------------------------------------
    def upload_predictions(self, model: Model, predictions: List[Any], update: bool = False,
                           asynchronous: bool = False, batch_size: int = 5000, remote_files_per_upload_request: int = 20,
                           local_files_per_upload_request: int = 10, trained_slice_id: Optional[str] = None) -> dict:
        """Store ``model``'s predictions on this dataset as the run ``<model reference_id>@<dataset name>``."""
        run = model.create_run(f"{model.reference_id}@{self.name}", self, predictions)
        return {"model_run_id": run.id, "predictions_processed": len(predictions), "predictions_ignored": 0}

    @property
    def model_runs(self) -> List[str]:
        rows = self._client.ws.store.con.execute(
            "SELECT run_id FROM runs WHERE dataset_id = ? ORDER BY run_id", [self._ds.id]).fetchall()
        return [f"run_{r[0]}" for r in rows]

    def create_model_run(self, name: str, reference_id: Optional[str] = None, model_id: Optional[str] = None,
                         metadata: Optional[Dict[str, Any]] = None, annotation_metadata_schema: Optional[Dict] = None):
        raise NotAvailableOffline("Dataset.create_model_run without predictions (use model.create_run)")

    # -- slices ------------------------------------------------------------------------------------
    def create_slice(self, name: str, reference_ids: Optional[List[str]] = None) -> "Slice":
        return Slice(self, self._ds.create_slice(name, reference_ids=reference_ids or []))

    @property
    def slices(self) -> List["Slice"]:
        names = self._ds.slices().column("name").to_pylist()
        return [Slice(self, self._ds.get_slice(n)) for n in names]

    def get_slices(self, name: Optional[str] = None, slice_type: Optional[str] = None) -> List["Slice"]:
        out = [s for s in self.slices if name is None or s.name == name]
        if not out and name is not None:
            from ..errors import NotFoundError

            raise NotFoundError(f"no slice named '{name}' in dataset '{self.name}'")
        return out

    # -- summary -----------------------------------------------------------------------------------
    def info(self) -> DatasetInfo:
        i = self._ds.info()
        return DatasetInfo(dataset_id=self.id, name=self.name, length=i["items"], model_run_ids=self.model_runs,
                           slice_ids=[s.id for s in self.slices], annotation_metadata_schema=None,
                           item_metadata_schema=None, tags=[])


class Slice(OfflineMethods):
    """A slice: ``id`` (``slc_<n>``), ``name``, ``items``; ``append(reference_ids)`` adds to a static one."""

    _service_only = frozenset({"send_to_labeling", "export_scale_task_info", "add_tags", "export_embeddings",
                               "export_raw_json", "export_raw_items"})

    def __init__(self, dataset: Dataset, s: Any):
        self.dataset = dataset
        self.loupe = s
        self.id = self.slice_id = f"slc_{s.id}"
        self.name = s.name
        self.dataset_id = dataset.id

    def __repr__(self) -> str:
        return f"Slice(slice_id='{self.id}', name='{self.name}', dataset_id='{self.dataset_id}')"

    @property
    def items(self) -> List[DatasetItem]:
        return [from_loupe_item(r) for r in self.loupe.items().to_pylist()]

    def items_generator(self, page_size: int = 100000) -> Iterable[DatasetItem]:
        yield from self.items

    def info(self) -> dict:
        return {"slice_id": self.id, "name": self.name, "dataset_id": self.dataset_id, "length": len(self.loupe)}

    def append(self, reference_ids: Optional[List[str]] = None) -> dict:
        self.loupe.append(reference_ids or [])
        return {"slice_id": self.id}

    def items_and_annotations(self) -> List[Dict[str, Any]]:
        refs = set(self.loupe.reference_ids())
        return [r for r in self.dataset.items_and_annotations() if r["item"].reference_id in refs]


__all__ = ["Dataset", "Slice", "DatasetInfo", "UploadResponse", "ModelRun"]
