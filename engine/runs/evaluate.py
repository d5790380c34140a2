"""Evaluate a stored run: SQL inputs → candidate pairs → the COCO kernel (engine.metrics.cocoeval).

Pairs are found and matched one chunk of images at a time (``engine.runs.chunks``); only
per-object results are kept across chunks and accumulated once at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import LoupeError
from ..metrics.cocoeval import (CocoObjects, CocoParams, CocoPlan, CocoResult, DtArrays, GtArrays, PairArrays,
                                accumulate_inputs, concat_matches, finish, match, new_objects, prepare, record)
from ..metrics.params import default_params
from engine.store.database import Store
from .background import Background
from .chunks import Chunk, plan_chunks
from .inputs import EvalInputs, Pairs, box_pairs, gather, mask_pairs

IOU_TYPES = ("bbox", "segm", "keypoints")

# called per chunk with (chunk, chunk inputs, same-label pairs, cross-label pairs or None, chunk objects)
ChunkHook = Callable[[Chunk, EvalInputs, Pairs, "Pairs | None", CocoObjects], None]
# called per chunk once its pairs are found, before they are matched: (chunk, inputs, same, cross or None)
PairsHook = Callable[[Chunk, EvalInputs, Pairs, "Pairs | None"], None]


@dataclass(frozen=True)
class RunEvaluation:
    """A run's COCO evaluation with the inputs it was computed from."""

    inputs: EvalInputs
    result: CocoResult
    iou_type: str
    label_version: int | None


def candidate_pairs(store: Store, inp: EvalInputs, iou_type: str, same_category: bool = True,
                    params: CocoParams | None = None) -> Pairs:
    if iou_type == "keypoints":  # OKS compares keypoints of one label only
        from .keypoints import keypoint_pairs

        return keypoint_pairs(store, inp, params or default_params("keypoints"))
    if iou_type == "bbox":
        return box_pairs(store, inp, same_category=same_category)
    if iou_type == "segm":
        return mask_pairs(store, inp, same_category=same_category)
    raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")


def same_label(inp: EvalInputs, cross: Pairs) -> Pairs:
    """The same-category pairs of a cross-label pair list (same rows, order and IoU as a same-label join)."""
    ok = inp.dt.cat[cross.dt] == inp.gt.cat[cross.gt] if cross.same is None else cross.same
    rows = np.flatnonzero(ok)  # one scan of the mask, then gathers (1.14M pairs: 8 vs 12 ms for three masks)
    return Pairs(cross.dt.take(rows), cross.gt.take(rows), cross.iou.take(rows))


def evaluate_inputs(
    store: Store,
    inp: EvalInputs,
    iou_type: str = "bbox",
    params: CocoParams | None = None,
    chunk_dets: int | None = None,
    cross: bool = False,
    on_chunk: ChunkHook | None = None,
    per_object: bool = True,
) -> CocoResult:
    """COCO evaluation of gathered inputs, chunk by chunk.

    Args:
        chunk_dets: detections per chunk (default ``chunks.CHUNK_DETECTIONS``).
        cross: also find cross-label pairs (the same-label ones are then taken from them) and
            pass them to ``on_chunk``, as a commit needs for best-IoU and error types.
        on_chunk: called after each chunk is matched with the chunk, its inputs, pairs and
            per-object matches, all in the chunk's local indices.
        per_object: also return the per-object outputs over all objects (``finish``).
    """
    return start_evaluation(store, inp, iou_type, params, chunk_dets, cross, on_chunk, per_object).result()


@dataclass(frozen=True)
class StartedEvaluation:
    """An evaluation whose matching is done and whose accumulate may still run (see :func:`start_evaluation`)."""

    plan: CocoPlan
    pending: Background[CocoResult]

    def result(self) -> CocoResult:
        """The evaluation's result, once the accumulate has finished (its exception is raised here)."""
        return self.pending.result()


def start_evaluation(
    store: Store,
    inp: EvalInputs,
    iou_type: str = "bbox",
    params: CocoParams | None = None,
    chunk_dets: int | None = None,
    cross: bool = False,
    on_chunk: ChunkHook | None = None,
    per_object: bool = True,
    background: bool = False,
    on_pairs: PairsHook | None = None,
    object_thrs: Sequence[int] | None = None,
) -> StartedEvaluation:
    """:func:`evaluate_inputs`, with the final accumulate left running for the caller.

    ``on_pairs`` is called with each chunk's pairs before they are matched (a commit starts its
    pair-only per-object values there, beside the matching); ``object_thrs``: the threshold indices
    whose per-object matches ``on_chunk`` reads (row ``i`` of its objects is ``object_thrs[i]``;
    default all).

    ``prepare`` (ranks, accumulate order; for a single chunk also the accumulate's match-free part) runs
    on a second thread while DuckDB finds the first chunk's candidate pairs. With ``background`` and a
    single chunk, the accumulate starts on a second thread as soon as the pairs are matched: the
    ``on_chunk`` call and whatever the caller does before :meth:`StartedEvaluation.result` (a commit's
    ``matches`` write) run beside it. Chunked evaluations (large runs) accumulate after their last chunk,
    in the caller's thread: side by side, the two steps' memory would add up at the size where the peak
    matters.
    """
    if iou_type not in IOU_TYPES:
        raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    params = params or default_params(iou_type)
    ignore = None
    if iou_type == "keypoints":
        from .keypoints import keypoint_ignore

        ignore = keypoint_ignore(store, inp)
    chunks = plan_chunks(inp, chunk_dets)
    overlap = background and len(chunks) == 1
    planned = Background(_planned, inp, params, ignore, len(chunks) == 1)
    plan: CocoPlan | None = None
    prepared = None
    parts = []
    agnostic = len(inp.labels) <= 1 or iou_type == "keypoints"  # keypoints: same-label pairs only
    pending: Background[CocoResult] | None = None
    for ch in chunks:
        sub = ch.inputs(inp)
        if cross and not agnostic:
            xp = candidate_pairs(store, sub, iou_type, same_category=False)
            sp = same_label(sub, xp)
        else:
            sp = candidate_pairs(store, sub, iou_type, params=params)
            xp = sp if cross else None
        if on_pairs is not None:
            on_pairs(ch, sub, sp, xp)
        if plan is None:
            plan, prepared = planned.result()
        mt = match(plan, PairArrays(sp.dt, sp.gt, sp.iou), ch.dt, ch.gt)
        if overlap:  # the only chunk: its matches are all of them
            pending = Background(finish, plan, mt, per_object, prepared)
            prepared = None
        else:
            parts.append(mt)
        if on_chunk is not None:
            thrs = None if object_thrs is None else np.asarray(object_thrs, np.int64)
            objs = new_objects(plan, ch.dt, ch.gt, thrs)
            if thrs is None or len(thrs):
                record(plan, mt, objs, ch.dt, ch.gt, thrs)
            on_chunk(ch, sub, sp, xp, objs)
        del sp, xp, mt
    assert plan is not None  # plan_chunks returns at least one chunk
    if pending is None:
        mt = concat_matches(parts)
        parts.clear()  # the concatenated copy is enough
        pending = Background(finish, plan, mt, per_object, prepared, inline=True)
    return StartedEvaluation(plan, pending)


def _planned(inp: EvalInputs, params: CocoParams, ignore: np.ndarray | None, accumulate: bool
             ) -> tuple[CocoPlan, object]:
    """The plan, and with ``accumulate`` the accumulate's match-free part too (both beside the pair join)."""
    plan = _plan(inp, params, ignore)
    return plan, accumulate_inputs(plan) if accumulate else None


def _plan(inp: EvalInputs, params: CocoParams | None, ignore: np.ndarray | None = None) -> CocoPlan:
    g, d = inp.gt, inp.dt
    if inp.class_agnostic:  # pycocotools useCats=0: one curve, ties ordered by category (then input order)
        params = replace(params or CocoParams(), use_cats=False)
        g_cat, d_cat, n_cat = g.cat_rank, d.cat_rank, len(inp.categories)
    else:
        g_cat, d_cat, n_cat = g.cat, d.cat, len(inp.labels)
    return prepare(
        GtArrays(img=g.img, cat=g_cat, area=g.area, iscrowd=g.crowd, n_images=inp.n_images,
                 n_categories=n_cat, ann_id=inp.gt_ann_id0, ignore=ignore),
        DtArrays(img=d.img, cat=d_cat, score=d.score, area=d.area),
        params,
    )


def evaluate_run(
    store: Store,
    dataset_id: int,
    run_id: int,
    iou_type: str = "bbox",
    label_version: int | None = None,
    item_ids: Sequence[int] | None = None,
    class_agnostic: bool = False,
    params: CocoParams | None = None,
    chunk_dets: int | None = None,
) -> RunEvaluation:
    """COCO evaluation (pycocotools semantics) of a run against a label version, on all or some items."""
    if iou_type not in IOU_TYPES:
        raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    inp = gather(store, dataset_id, run_id, label_version=label_version, item_ids=item_ids,
                 class_agnostic=class_agnostic, keypoints=iou_type == "keypoints")
    res = evaluate_inputs(store, inp, iou_type, params, chunk_dets)
    return RunEvaluation(inp, res, iou_type, label_version)


def evaluate_unstored(store: Store, dataset_id: int, predictions, params: CocoParams | None = None,
                      chunk_dets: int | None = None) -> RunEvaluation:
    """Box evaluation of validated predictions that were never stored (``loupe eval``), against the current
    labels: the same inputs, order and numbers as storing them as a run and calling :func:`evaluate_run`.

    ``predictions``: :func:`engine.ingest.annotations.validate_predictions`' table.
    """
    inp = gather(store, dataset_id, None, predictions=predictions)
    res = evaluate_inputs(store, inp, "bbox", params, chunk_dets)
    return RunEvaluation(inp, res, "bbox", None)


def stats_dict(stats: np.ndarray) -> dict[str, float]:
    """Named stats: the 12 of bbox/segm, or the 10 of keypoints."""
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    if len(stats) == 10:
        names = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
    return {n: float(v) for n, v in zip(names, stats)}
