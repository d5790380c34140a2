"""``NucleusClient``: Scale's client entry point, over a local Loupe workspace (the API key is ignored)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ..errors import NotFoundError
from .dataset import Dataset
from .model import Model, ModelRun, parse_id
from .offline import OfflineMethods

DEFAULT_PATH_ENV = "LOUPE_WORKSPACE"


class NucleusClient(OfflineMethods):
    """Nucleus client calls answered from one workspace file.

    Args:
        api_key: accepted and ignored (nothing leaves the machine).
        path: the workspace file; default ``$LOUPE_WORKSPACE`` or ``loupe.duckdb`` in the working directory.
            A ``engine.Workspace`` can be passed as ``workspace=`` instead.

    Example:
        >>> from engine import nucleus
        >>> client = nucleus.NucleusClient("YOUR_API_KEY", path="pennfudan.duckdb")
        >>> dataset = client.create_dataset("PennFudan")
    """

    _service_only = frozenset({
        "create_dataset_from_project", "create_launch_model", "create_launch_model_from_dir", "list_jobs",
        "get_job", "jobs", "create_evaluation_v2", "get_evaluation_v2", "list_evaluations_v2", "list_autotags",
        "delete_autotag", "get_autotag_refinement_metrics", "download_pointcloud_task", "download_pointcloud_tasks",
        "ingest_tasks", "validate", "make_request", "get_autotag_items",
    })

    def __init__(self, api_key: Optional[str] = None, use_notebook: bool = False, endpoint: Optional[str] = None,
                 limited_access_key: Optional[str] = None, path: Optional[str] = None, workspace: Any = None):
        import engine

        self.api_key = api_key
        self._use_notebook = use_notebook
        self.endpoint = endpoint
        self.ws = workspace if workspace is not None else engine.connect(
            path or os.environ.get(DEFAULT_PATH_ENV, "loupe.duckdb"))

    def __repr__(self) -> str:
        return f"NucleusClient(path={self.ws.path!r})"

    def close(self) -> None:
        self.ws.close()

    # -- datasets ----------------------------------------------------------------------------
    def create_dataset(self, name: str, is_scene: Optional[bool] = None, use_privacy_mode: bool = False,
                       item_metadata_schema: Optional[Dict] = None,
                       annotation_metadata_schema: Optional[Dict] = None) -> Dataset:
        if is_scene:
            from .offline import NotAvailableOffline

            raise NotAvailableOffline("scene (LiDAR/video) datasets")
        return Dataset(self, self.ws.create_dataset(name))

    def get_dataset(self, dataset_id: str) -> Dataset:
        """By Nucleus-style id (``ds_<n>``, from ``dataset.id``) or by name."""
        return Dataset(self, self._loupe_dataset(dataset_id))

    def _loupe_dataset(self, dataset_id: str):
        from ..api.dataset import Dataset as LoupeDataset

        n = parse_id(dataset_id, "ds_")
        if n is not None:
            row = self.ws.store.con.execute("SELECT name FROM datasets WHERE dataset_id = ?", [n]).fetchone()
            if row is None:
                raise NotFoundError(f"no dataset with id '{dataset_id}'")
            return LoupeDataset(self.ws, n, row[0])
        return self.ws.get_dataset(dataset_id)

    @property
    def datasets(self) -> List[Dataset]:
        names = self.ws.list_datasets().column("name").to_pylist()
        return [Dataset(self, self.ws.get_dataset(n)) for n in names]

    def list_datasets(self) -> Dict[str, List[str]]:
        """As the client's (deprecated) call: ``{"dataset_names": [...], "dataset_ids": [...]}``."""
        ds = self.datasets
        return {"dataset_names": [d.name for d in ds], "dataset_ids": [d.id for d in ds]}

    def delete_dataset(self, dataset_id: str) -> dict:
        ds = self._loupe_dataset(dataset_id)
        self.ws.delete_dataset(ds.name)
        return {"dataset_id": dataset_id}

    def get_dataset_items(self, dataset_id: str):
        return self.get_dataset(dataset_id).items

    def dataset_info(self, dataset_id: str):
        return self.get_dataset(dataset_id).info()

    # -- models and runs ----------------------------------------------------------------------
    def create_model(self, name: str, reference_id: str, metadata: Optional[Dict] = None,
                     bundle_name: Optional[str] = None, tags: Optional[List[str]] = None,
                     trained_slice_ids: Optional[List[str]] = None) -> Model:
        """Register a model; an existing model with the same reference_id is returned (as Nucleus does)."""
        from ..errors import AlreadyExistsError

        try:
            m = self.ws.add_model(name, reference_id, metadata=metadata)
        except AlreadyExistsError:
            m = self.ws.get_model(reference_id)
        return Model(self, m)

    def add_model(self, name: str, reference_id: str, metadata: Optional[Dict] = None) -> Model:
        return self.create_model(name, reference_id, metadata)

    @property
    def models(self) -> List[Model]:
        refs = self.ws.list_models().column("reference_id").to_pylist()
        return [Model(self, self.ws.get_model(r)) for r in refs]

    def list_models(self) -> List[Model]:
        return self.models

    def get_model(self, model_id: Optional[str] = None, model_run_id: Optional[str] = None) -> Model:
        if model_run_id is not None:
            return self.get_model_run(model_run_id, None).model
        n = parse_id(model_id, "prj_")
        if n is not None:
            row = self.ws.store.con.execute("SELECT reference_id FROM models WHERE model_id = ?", [n]).fetchone()
            if row is None:
                raise NotFoundError(f"no model with id '{model_id}'")
            model_id = row[0]
        return Model(self, self.ws.get_model(model_id))

    def get_model_run(self, model_run_id: str, dataset_id: Optional[str] = None) -> ModelRun:
        n = parse_id(model_run_id, "run_")
        if n is None:
            return ModelRun(self, self.ws.get_run(model_run_id))
        from ..api.model import ModelRun as LoupeRun

        if self.ws.store.con.execute("SELECT 1 FROM runs WHERE run_id = ?", [n]).fetchone() is None:
            raise NotFoundError(f"no model run with id '{model_run_id}'")
        return ModelRun(self, LoupeRun(self.ws, n))

    def commit_model_run(self, model_run_id: str, payload: Optional[dict] = None) -> dict:
        return self.get_model_run(model_run_id).commit(payload)

    # -- slices ------------------------------------------------------------------------------
    def get_slice(self, slice_id: str):
        from .dataset import Slice

        n = parse_id(slice_id, "slc_")
        row = self.ws.store.con.execute("SELECT dataset_id, name FROM slices WHERE slice_id = ?", [n]).fetchone() \
            if n is not None else None
        if row is None:
            raise NotFoundError(f"no slice with id '{slice_id}'")
        ds = self.get_dataset(f"ds_{row[0]}")
        return Slice(ds, ds._ds.get_slice(row[1]))

    def delete_slice(self, slice_id: str) -> dict:
        s = self.get_slice(slice_id)
        s.dataset._ds.delete_slice(s.name)
        return {}
