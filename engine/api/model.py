"""Model and ModelRun: a model's predictions on a dataset, and (after commit) their evaluation."""
from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pyarrow as pa

from ..errors import AlreadyExistsError, LoupeWarning
from ..ingest.annotations import write_predictions
from ._inputs import annotations_table, check_name

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
        exist_ok: bool = False,
    ) -> "ModelRun":
        """Store this model's predictions on ``dataset`` as a run (one transaction).

        Args:
            name: unique run name in the workspace.
            predictions: ``*Prediction`` objects or an Arrow table (annotation columns + confidence).
            exist_ok: a run of this model on this dataset with this name is returned as stored instead of
                raising AlreadyExistsError (a re-run script); the predictions given are not written, and a
                :class:`LoupeWarning` says so when their count differs from the stored run's.
        """
        store = self.ws.store
        check_name(name, "run")
        table = annotations_table(predictions)
        with store.transaction() as con:
            row = con.execute("SELECT run_id, model_id, dataset_id FROM runs WHERE name = ?", [name]).fetchone()
            if row is not None and exist_ok and (row[1], row[2]) == (self.id, dataset.id):
                n = con.execute("SELECT count(*) FROM predictions WHERE run_id = ?", [row[0]]).fetchone()[0]
                if n != table.num_rows:
                    warnings.warn(LoupeWarning(
                        f"run '{name}' already exists with {n} predictions; the {table.num_rows} given were not "
                        "stored (use another run name to store them)"), stacklevel=2)
                return ModelRun(self.ws, int(row[0]))
            run_id = new_run(self, name, dataset, metadata)
            write_predictions(store, run_id, dataset.id, table, clip=clip)
        return ModelRun(self.ws, run_id)


def new_run(model: Model, name: str, dataset: "Dataset", metadata: Mapping[str, Any] | None = None) -> int:
    """Insert run ``name``'s row (no predictions yet) in the caller's transaction; returns its ``run_id``.

    Raises:
        ValidationError: the name is empty; AlreadyExistsError: it is taken.
    """
    check_name(name, "run")
    store = model.ws.store
    with store.transaction() as con:
        row = con.execute("SELECT model_id, dataset_id FROM runs WHERE name = ?", [name]).fetchone()
        if row is not None:
            other = "" if tuple(row) == (model.id, dataset.id) else " (of another model or dataset)"
            raise AlreadyExistsError(f"run '{name}' already exists{other}"
                                     + ("; exist_ok=True returns it" if not other else ""))
        run_id = store.next_key("runs", "run_id")
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?::JSON, NULL, NULL, NULL)",
            [run_id, model.id, dataset.id, name, json.dumps(metadata) if metadata is not None else None],
        )
    return run_id


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

    def patches(
        self,
        status: str | Iterable[str] | None = None,
        query: str | None = None,
        sort: str = "iou",
        descending: bool = False,
        limit: int | None = None,
        label: str | Iterable[str] | None = None,
        **kwargs: Any,
    ) -> pa.Table:
        """The committed run's objects (GT and predictions) with status, partner and IoU, sorted.

        Thin wrapper of :func:`engine.analysis.patches` (see it for columns and ``error_type``,
        ``iou_threshold``, ``pairs``). Example: ``run.patches(status="fp", sort="confidence",
        descending=True, limit=50)``.
        """
        from ..analysis.patches import patches

        return patches(self.ws.store, self, status=status, query=query, sort=sort, descending=descending,
                       limit=limit, label=label, **kwargs)

    # -- evaluation (logic in engine.runs and engine.metrics) ---------------------------------------
    def commit(
        self,
        iou_threshold: float = 0.5,
        class_agnostic: bool = False,
        allowed_label_matches: Iterable[tuple[str, str]] | None = None,
        method: str = "coco",
        label_version: int | None = None,
        iou_type: str = "bbox",
        iou_thresholds: Sequence[float] | None = None,
        recall_thresholds: Sequence[float] | None = None,
        max_dets: Sequence[int] | None = None,
        area_ranges: Mapping[str, tuple[float, float]] | None = None,
        kpt_oks_sigmas: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    ) -> dict[str, Any]:
        """Match predictions to ground truth and index every object as TP / FP / FN.

        Replaces the previous index atomically and caches the COCO stats. See docs/matching.md.
        ``iou_thresholds``, ``recall_thresholds``, ``max_dets``, ``area_ranges`` ({name: (min, max)})
        are pycocotools' ``Params`` (defaults when None). ``iou_type="keypoints"`` evaluates OKS with
        ``kpt_oks_sigmas`` (one list, or {label: list}; default COCO's 17 person sigmas).

        Example:
            >>> run.commit(iou_threshold=0.5)["stats"]["AP"]
        """
        from ..metrics.params import coco_params
        from ..runs.commit import commit_run

        params = coco_params(iou_thresholds, recall_thresholds, max_dets, area_ranges, iou_type, kpt_oks_sigmas)
        return commit_run(self.ws.store, self.id, self.dataset_id, iou_threshold=iou_threshold,
                          class_agnostic=class_agnostic, allowed_label_matches=allowed_label_matches,
                          method=method, label_version=label_version, iou_type=iou_type, params=params)

    def metrics(self, iou_type: str = "bbox", slice: Any = None, label_version: int | None = None,
                class_agnostic: bool = False, iou_thresholds: Sequence[float] | None = None,
                recall_thresholds: Sequence[float] | None = None, max_dets: Sequence[int] | None = None,
                area_ranges: Mapping[str, tuple[float, float]] | None = None,
                kpt_oks_sigmas: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """COCO stats (pycocotools-exact), per-class AP/AR and TP/FP/FN counts at IoU 0.5.

        ``slice`` is a slice name or a list of reference ids; ``label_version`` evaluates against past labels.
        ``iou_thresholds``, ``recall_thresholds``, ``max_dets``, ``area_ranges`` as in :meth:`commit`.
        """
        from ..metrics.params import coco_params
        from ..metrics.report import coco_metrics

        params = coco_params(iou_thresholds, recall_thresholds, max_dets, area_ranges, iou_type, kpt_oks_sigmas)
        return coco_metrics(self, iou_type=iou_type, slice=slice, label_version=label_version,
                            class_agnostic=class_agnostic, params=params)

    def voc_metrics(self, iou_threshold: float = 0.5, eleven_point: bool = False, plus_one: bool = False,
                    slice: Any = None, label_version: int | None = None) -> dict[str, Any]:
        """Pascal VOC AP per label and mAP: ``{"mAP": float, "per_class": {label: AP}}``.

        All-point interpolation (VOC2010+) or ``eleven_point`` (VOC2007); ``difficult`` GT (annotation
        metadata) and crowds are ignored; ``plus_one``: the devkit's inclusive-pixel areas. See engine/runs/voc.py.
        """
        from ..metrics.report import subset_item_ids
        from ..runs.voc import voc_report, voc_run

        inp, res = voc_run(self.ws.store, self.dataset_id, self.id, iou_threshold=iou_threshold,
                           eleven_point=eleven_point, plus_one=plus_one, label_version=label_version,
                           item_ids=subset_item_ids(self, slice))
        return voc_report(inp, res)

    def pr_curves(self, iou_type: str = "bbox", slice: Any = None, label_version: int | None = None) -> pa.Table:
        """PR curves: 101 interpolated precision points per label and IoU threshold (area all, 100 dets)."""
        from ..metrics.report import pr_curves

        return pr_curves(self, iou_type=iou_type, slice=slice, label_version=label_version)

    def precision_recall(self, iou: float = 0.5, confidence: float = 0.0, slice: Any = None,
                         label_version: int | None = None) -> pa.Table:
        """Precision, recall and F1 per label at an IoU and a confidence threshold."""
        from ..metrics.report import precision_recall

        return precision_recall(self, iou=iou, confidence=confidence, slice=slice, label_version=label_version)

    def confusion_matrix(self, iou: float = 0.5, confidence: float = 0.0, slice: Any = None,
                         label_version: int | None = None) -> pa.Table:
        """(gt_label, pred_label, count) with a 'background' row/column for unmatched objects."""
        from ..metrics.report import confusion_matrix

        return confusion_matrix(self, iou=iou, confidence=confidence, slice=slice, label_version=label_version)

    def error_types(self) -> pa.Table:
        """TIDE-style error counts per label from the commit index."""
        from ..metrics.report import error_types

        return error_types(self)

    # -- label errors, comparison, scenario tests (logic in engine/analysis and engine/analysis/scenarios.py) ----
    def suggest_label_errors(self, other_runs: Any = None, **kwargs: Any) -> pa.Table:
        """Likely label errors (missing, spurious, wrong label, loose box, inconsistent) ranked by score.

        Thin wrapper of :func:`engine.analysis.label_errors.suggest_label_errors`; ``other_runs``
        (runs or names on the same dataset) confirm or refute each suggestion. See docs/label-errors.md.

        Example:
            >>> run.suggest_label_errors(limit=25)
        """
        from ..analysis.label_errors import suggest_label_errors

        return suggest_label_errors(self, other_runs=other_runs, **kwargs)

    def compare(self, other: "ModelRun | str", slice: Any = None, **kwargs: Any) -> dict[str, pa.Table]:
        """Metric deltas against another run and the objects one gets right and the other wrong.

        Thin wrapper of :func:`engine.analysis.compare.compare_runs` (this run is A, ``other`` is B).
        """
        from ..analysis.compare import compare_runs

        return compare_runs(self, other, slice=slice, **kwargs)

    def test(self, baseline: "ModelRun | str | None" = None, scenarios: Any = None) -> pa.Table:
        """Evaluate the dataset's scenario tests for this run (stored with history); one row per criterion.

        Thin wrapper of :func:`engine.analysis.scenarios.run_scenarios`.
        """
        from engine.analysis.scenarios import run_scenarios

        return run_scenarios(self, baseline=baseline, scenarios=scenarios)

    def uncertainty(self, method: str = "entropy", per: str = "prediction") -> pa.Table:
        """Uncertainty of the run's predictions from ``class_pdf`` (else confidence as a 2-class distribution).

        ``method``: "entropy" (normalised), "margin" (1 - (p1 - p2)) or "least_confidence" (1 - p1); all in
        [0, 1]. ``per="item"``: each item's most uncertain prediction, most uncertain items first.
        """
        from engine.similarity.uncertainty import uncertainty

        return uncertainty(self, method=method, per=per)
