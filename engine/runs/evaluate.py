"""Evaluate a stored run: SQL inputs → candidate pairs → the COCO kernel (engine.metrics.cocoeval)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import LoupeError
from ..metrics.cocoeval import CocoParams, CocoResult, DtArrays, GtArrays, PairArrays, evaluate
from ..store import Store
from .inputs import EvalInputs, Pairs, box_pairs, gather, mask_pairs

IOU_TYPES = ("bbox", "segm")


@dataclass(frozen=True)
class RunEvaluation:
    """A run's COCO evaluation with the inputs it was computed from."""

    inputs: EvalInputs
    pairs: Pairs
    result: CocoResult
    iou_type: str
    label_version: int | None


def candidate_pairs(store: Store, inp: EvalInputs, iou_type: str, same_category: bool = True) -> Pairs:
    if iou_type == "bbox":
        return box_pairs(store, inp, same_category=same_category)
    if iou_type == "segm":
        return mask_pairs(store, inp, same_category=same_category)
    raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")


def evaluate_run(
    store: Store,
    dataset_id: int,
    run_id: int,
    iou_type: str = "bbox",
    label_version: int | None = None,
    item_ids: Sequence[int] | None = None,
    class_agnostic: bool = False,
    params: CocoParams | None = None,
) -> RunEvaluation:
    """COCO evaluation (pycocotools semantics) of a run against a label version, on all or some items."""
    if iou_type not in IOU_TYPES:
        raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    inp = gather(store, dataset_id, run_id, label_version=label_version, item_ids=item_ids,
                 class_agnostic=class_agnostic)
    pairs = candidate_pairs(store, inp, iou_type)
    g, d = inp.gt, inp.dt
    res = evaluate(
        GtArrays(img=g.img, cat=g.cat, area=g.area, iscrowd=g.crowd, n_images=inp.n_images,
                 n_categories=len(inp.labels), ann_id=inp.gt_ann_id0),
        DtArrays(img=d.img, cat=d.cat, score=d.score, area=d.area),
        PairArrays(dt=pairs.dt, gt=pairs.gt, iou=pairs.iou),
        params,
    )
    return RunEvaluation(inp, pairs, res, iou_type, label_version)


def stats_dict(stats: np.ndarray) -> dict[str, float]:
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    return {n: float(v) for n, v in zip(names, stats)}
