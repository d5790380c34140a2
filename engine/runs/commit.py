"""Commit a run: match predictions to ground truth and write the TP/FP/FN index (``matches``).

One row per prediction and per GT object of the run's dataset, in one transaction that replaces
the previous index: a failure anywhere leaves the old index intact. Matching follows pycocotools
(``method="coco"``, per image and label, greedy by score, maxDets 100) unless told otherwise; see
docs/matching.md. Error types (TIDE-style, ``BG = 0.1`` background threshold, ``t`` = commit IoU):

* false positive: ``duplicate`` (a same-label GT with IoU >= t exists but was taken by a
  higher-scoring prediction), ``classification`` (other-label GT with IoU >= t), ``localization``
  (same-label GT with BG <= IoU < t), ``both`` (other-label GT with BG <= IoU < t), ``background``;
* false negative: ``missed`` when no prediction of any label reaches IoU BG, else the failure of the
  closest prediction (``localization``, ``classification`` or ``both``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udfs.matching import GreedyResult, greedy_match, hungarian_match, stable_order

from engine.store import match_counts, match_order
from ..errors import LoupeError
from engine.store.database import Store
from ..metrics.cocoeval import CocoObjects, CocoParams
from ..metrics.params import default_params, params_json
from .background import Background
from .chunks import Chunk
from .evaluate import IOU_TYPES, RunEvaluation, start_evaluation, stats_dict
from .inputs import EvalInputs, Pairs, Side, gather

BG_IOU = 0.1
METHODS = ("coco", "hungarian")
MAX_DETS = 100
# a commit's evaluation, called inside the write's transaction: (stats, per-class rows)
Evaluation = Callable[[], "tuple[dict[str, float], list[dict[str, Any]]]"]


def commit_run(
    store: Store,
    run_id: int,
    dataset_id: int,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    allowed_label_matches: Iterable[tuple[str, str]] | None = None,
    method: str = "coco",
    label_version: int | None = None,
    iou_type: str = "bbox",
    chunk_dets: int | None = None,
    params: CocoParams | None = None,
) -> dict[str, Any]:
    """Match, index and evaluate a run. Returns counts and the 12 COCO stats.

    ``params`` (validated, see ``engine.metrics.params.coco_params``) sets the evaluation's
    thresholds, max detections and area ranges; the index is built at ``iou_threshold`` with the
    largest max_dets.

    Images are processed in chunks of about ``chunk_dets`` detections (``chunks.CHUNK_DETECTIONS``
    by default): candidate pairs live for one chunk, only per-object results are kept.
    """
    if method not in METHODS:
        raise LoupeError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < float(iou_threshold) <= 1:
        raise LoupeError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if iou_type not in IOU_TYPES:
        raise LoupeError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    allowed = _allowed(allowed_label_matches)
    if label_version is None:
        label_version = int(store.scalar("SELECT label_version FROM datasets WHERE dataset_id = ?", [dataset_id]))
    inp = gather(store, dataset_id, run_id, label_version=label_version, class_agnostic=class_agnostic,
                 keypoints=iou_type == "keypoints")
    thr = float(iou_threshold)
    rows = _ObjectRows.empty(len(inp.dt), len(inp.gt))
    coco = params or default_params(iou_type)
    max_dets = max(coco.max_dets)
    thrs = np.asarray(coco.iou_thrs)
    t_eval = np.flatnonzero(thrs == thr) if method == "coco" and not allowed else np.zeros(0, np.int64)

    bests: list[Background[_PairBests]] = []

    def on_pairs(ch: Chunk, sub: EvalInputs, sp: Pairs, xp: Pairs | None) -> None:
        bests.append(Background(_pair_bests, sub, xp, None if sp is xp else sp))  # beside the matching

    def on_chunk(ch: Chunk, sub: EvalInputs, sp: Pairs, xp: Pairs | None, objs: CocoObjects) -> None:
        if len(t_eval):  # the evaluation already matched at this threshold (area 'all', maxDets 100)
            m = _from_eval(objs, 0)
        else:
            m = _match(sub, sp, xp, thr, allowed, method, max_dets)
        rows.put(ch, *_object_values(sub, xp, m, thr, bests.pop()))

    # per-object outputs come from on_chunk (rows): not built again over every object. The accumulate
    # runs on a second thread beside the per-object values and the matches write (engine/runs/background.py)
    started = start_evaluation(store, inp, iou_type, params, chunk_dets=chunk_dets, cross=True, on_chunk=on_chunk,
                               per_object=False, background=True, on_pairs=on_pairs, object_thrs=t_eval[:1])
    if method == "coco" and not allowed:  # predictions outside the index's matching (beyond maxDets)
        dropped = ~started.plan.evaluated
        rows.d_status[dropped] = 3
        rows.d_err[dropped] = 6
    table = _matches_table(run_id, inp, rows, thr, class_agnostic)
    params = {"iou_threshold": thr, "class_agnostic": bool(class_agnostic),
              "allowed_label_matches": [list(p) for p in allowed] if allowed else None,
              "method": method, "iou_type": iou_type, "label_version": label_version,
              "coco_params": params_json(params)}
    counts = _match_counts(run_id, thr, inp, rows)
    stats: dict[str, float] = {}

    def evaluation() -> tuple[dict[str, float], list[dict[str, Any]]]:
        res = started.result()
        stats.update(stats_dict(res.stats))
        return stats, _per_class(RunEvaluation(inp, res, iou_type, label_version))

    write_commit(store, run_id, table, evaluation, None, params, counts=counts)
    # counts from the status codes (indexing _STATUS): Table.group_by would import pyarrow.acero (~0.25 s CPU)
    d_n = np.bincount(rows.d_status, minlength=len(_STATUS))
    g_n = np.bincount(rows.g_status, minlength=len(_STATUS))
    return {"tp": int(d_n[0]), "fp": int(d_n[1]), "fn": int(g_n[2]), "ignored": int(d_n[3] + g_n[3]),
            "predictions": len(inp.dt), "ground_truth": len(inp.gt), "stats": stats, "params": params}


def write_commit(store: Store, run_id: int, table: Any, stats: dict[str, float] | Evaluation,
                 per_class: list[dict[str, Any]] | None, params: dict[str, Any], counts: pa.Table | None = None) -> None:
    """Replace a run's matches index, match counts and evaluation in one transaction.

    ``table`` holds the matches columns plus each object's ``label`` (an Arrow table or a relation
    DuckDB can scan); also used to import a commit made on Spark (engine.spark.importer). ``counts``: the
    per-item match counts already computed (:func:`_match_counts`), else they are grouped from ``table``.
    An Arrow ``table`` is written in storage order (engine/store/match_order.py). ``stats`` may be a
    function returning ``(stats, per_class)`` (``per_class`` is then None): it is called inside the
    transaction, after the matches are written, so an evaluation still running elsewhere overlaps the
    write; if it raises, nothing is written.
    """
    con = store.con
    con.register("__new_matches", table)
    try:
        with store.transaction():
            con.execute("DELETE FROM matches WHERE run_id = ?", [run_id])
            if isinstance(table, pa.Table):
                for part in match_order.in_batches(table):
                    con.register("__new_matches_part", part)
                    con.execute("INSERT INTO matches SELECT * EXCLUDE (label) FROM __new_matches_part")
                con.unregister("__new_matches_part")
            else:
                con.execute("INSERT INTO matches SELECT * EXCLUDE (label) FROM __new_matches")
            if counts is None:
                match_counts.write_committed(store, run_id, "__new_matches")
            else:
                match_counts.write_counted(store, run_id, counts)
            if callable(stats):
                stats, per_class = stats()
            con.execute("DELETE FROM evaluations WHERE run_id = ?", [run_id])
            con.execute(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?::JSON, ?::JSON, now()::TIMESTAMP)",
                [run_id, params["iou_type"], params["label_version"], bool(params["class_agnostic"]),
                 json.dumps(stats), json.dumps(per_class)])
            con.execute(
                "UPDATE runs SET committed_at = now()::TIMESTAMP, label_version = ?, params = ?::JSON WHERE run_id = ?",
                [params["label_version"], json.dumps(params), run_id])
    finally:
        con.unregister("__new_matches")


@dataclass
class _ObjectRows:
    """Per-object values of the ``matches`` rows (global indexing), filled chunk by chunk.

    ``dm``/``d_arg`` are GT indices, ``gm``/``g_arg`` detection indices (-1 = none); status and
    error codes index _STATUS / _ERRORS.
    """

    dm: np.ndarray
    d_iou: np.ndarray
    d_best: np.ndarray
    d_arg: np.ndarray
    d_status: np.ndarray
    d_err: np.ndarray
    gm: np.ndarray
    g_iou: np.ndarray
    g_best: np.ndarray
    g_arg: np.ndarray
    g_status: np.ndarray
    g_err: np.ndarray

    @classmethod
    def empty(cls, nd: int, ng: int) -> "_ObjectRows":
        def side(n: int) -> list[np.ndarray]:
            return [np.full(n, -1, np.int64), np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int64),
                    np.zeros(n, np.int8), np.full(n, -1, np.int8)]
        return cls(*side(nd), *side(ng))

    def put(self, ch: Chunk, d_vals: tuple, g_vals: tuple) -> None:
        """Store a chunk's local values; partner indices become global ones."""
        fields = list(self.__dataclass_fields__)
        for name, v in zip(fields[:6], d_vals):
            if name in ("dm", "d_arg"):
                v = _to_global(v, ch.gt)
            _put(getattr(self, name), ch.dt, v)
        for name, v in zip(fields[6:], g_vals):
            if name in ("gm", "g_arg"):
                v = _to_global(v, ch.dt)
            _put(getattr(self, name), ch.gt, v)


def _put(dst: np.ndarray, idx: np.ndarray | None, v: np.ndarray) -> None:
    if idx is None:
        dst[:] = v
    else:
        dst[idx] = v


def _to_global(local: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    if index is None or len(local) == 0:
        return local
    return np.where(local >= 0, index[np.maximum(local, 0)] if len(index) else -1, -1)


def _from_eval(objs: CocoObjects, t: int) -> GreedyResult:
    """The evaluation's matches of a chunk at row ``t`` of its per-object outputs (local indices)."""
    dm = objs.dt_match[t].astype(np.int64)
    return GreedyResult(dm, objs.dt_ignore[t] & (dm >= 0), objs.gt_match[t].astype(np.int64))


def _allowed(pairs: Iterable[tuple[str, str]] | None) -> set[tuple[str, str]]:
    if pairs is None:
        return set()
    out = set()
    for p in pairs:
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise LoupeError(f"allowed_label_matches must be (gt_label, pred_label) pairs, got {p!r}")
        out.add((str(p[0]), str(p[1])))
    return out


def _per_class(ev: RunEvaluation) -> list[dict[str, Any]]:
    r = ev.result
    n_gt = np.bincount(ev.inputs.gt.cat[~ev.inputs.gt.crowd], minlength=len(ev.inputs.labels))
    n_dt = np.bincount(ev.inputs.dt.cat, minlength=len(ev.inputs.labels))
    return [{"label": lab, "ap": float(r.ap_per_class[k]), "ap50": float(r.ap50_per_class[k]),
             "ar": float(r.ar_per_class[k]), "gt": int(n_gt[k]), "predictions": int(n_dt[k])}
            for k, lab in enumerate(ev.inputs.labels)]


def _match(inp: EvalInputs, same: Pairs, cross: Pairs, thr: float, allowed: set, method: str,
           max_dets: int = MAX_DETS) -> GreedyResult:
    """Matching at the commit threshold for one chunk (local indices)."""
    d, g = inp.dt, inp.gt
    if allowed:
        rank = {lab: k for k, lab in enumerate(inp.categories)}
        table = np.zeros((len(rank), len(rank)), bool)  # allowed (gt category, prediction category)
        for gl, dl in allowed:
            if gl in rank and dl in rank:
                table[rank[gl], rank[dl]] = True
        ok = (d.label[cross.dt] == g.label[cross.gt]) | table[g.cat_rank[cross.gt], d.cat_rank[cross.dt]]
        pairs = Pairs(cross.dt[ok], cross.gt[ok], cross.iou[ok])
        group = d.img
    else:
        pairs = same
        group = d.img * max(len(inp.labels), 1) + d.cat
    if method == "hungarian":
        return hungarian_match(pairs.dt, pairs.gt, pairs.iou, len(d), len(g), thr)
    if not inp.class_agnostic:
        return greedy_match(group, d.score, g.crowd, pairs.dt, pairs.gt, pairs.iou, thr, max_dets=max_dets)
    # pycocotools useCats=0 gathers an image's objects category by category (then input order): tied
    # scores and tied IoUs are broken in that order, so match on objects permuted into it
    n_cat = len(inp.categories)
    dp, gp = stable_order((d.cat_rank, n_cat)), stable_order((g.cat_rank, n_cat))
    inv_d, inv_g = np.empty_like(dp), np.empty_like(gp)
    inv_d[dp], inv_g[gp] = np.arange(len(dp)), np.arange(len(gp))
    r = greedy_match(group[dp], d.score[dp], g.crowd[gp], inv_d[pairs.dt], inv_g[pairs.gt], pairs.iou, thr,
                     max_dets=max_dets)
    dt_match, dt_ignored, gt_match = (np.empty_like(r.dt_match), np.empty_like(r.dt_ignored),
                                      np.empty_like(r.gt_match))
    dt_match[dp] = _through(gp, r.dt_match)
    dt_ignored[dp] = r.dt_ignored
    gt_match[gp] = _through(dp, r.gt_match)
    return GreedyResult(dt_match, dt_ignored, gt_match)


def _through(perm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``perm[idx]`` where idx >= 0, -1 elsewhere."""
    out = np.full(len(idx), -1, idx.dtype)
    ok = idx >= 0
    out[ok] = perm[idx[ok]]
    return out


def _segment_best(idx: np.ndarray, iou: np.ndarray, other: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per index (``idx`` sorted): the best IoU and its first partner reaching it (NaN / -1 when none)."""
    best = np.full(n, np.nan)
    arg = np.full(n, -1, np.int64)
    if len(idx) == 0:
        return best, arg
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    best[idx[starts]] = np.maximum.reduceat(iou, starts)
    hit = np.flatnonzero(iou == best[idx])
    first = hit[np.r_[True, idx[hit[1:]] != idx[hit[:-1]]]]
    arg[idx[first]] = other[first]
    return best, arg


def _segment_max(idx: np.ndarray, iou: np.ndarray, n: int) -> np.ndarray:
    """Per index (``idx`` sorted): the best IoU, 0 when none (the pair lists hold IoU > 0 only)."""
    out = np.zeros(n)
    if len(idx):
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        out[idx[starts]] = np.maximum.reduceat(iou, starts)
    return out


_STATUS = pa.array(["tp", "fp", "fn", "ignored"], pa.string())
_ERRORS = pa.array(["duplicate", "classification", "localization", "both", "background", "missed",
                    "beyond_max_dets"], pa.string())


def _dict(codes: np.ndarray, dictionary: pa.Array) -> pa.Array:
    """A dictionary-encoded string column (-1 = NULL) without building Python strings per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8(), mask=codes < 0), dictionary)


@dataclass(frozen=True)
class _PairBests:
    """What a chunk's cross-label pairs alone say of each object (no matching needed): per prediction and
    per GT, the best IoU with any label and its partner (NaN / -1), the best same-label IoU (0 when none)
    and the other-label one where it beats the same-label one (else 0: the error codes read it only then)."""

    d: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    g: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _pair_bests(inp: EvalInputs, cross: Pairs, same_pairs: Pairs | None = None) -> _PairBests:
    """:class:`_PairBests` of a chunk. ``same_pairs``: the same-label rows of ``cross`` (in its order), when
    the caller split them already (by ``cat``, so not for class-agnostic commits).

    The best over all pairs and the best over the same-label pairs (a quarter of them at 80 labels) are
    enough: the best other-label IoU only decides an error code when it is the overall best (TIDE's rules
    in the module docstring test ``other >= t`` or ``>= BG`` only after ``same`` fell short), and then it
    equals it. One pass over all pairs instead of a same and an other pass (-20 ms CPU at 500k detections).
    """
    d, g = inp.dt, inp.gt
    nd, ng = len(d), len(g)
    if same_pairs is None or inp.class_agnostic:
        # same label: cat_rank indexes every label, also class-agnostic (otherwise it is ``cat``, which the
        # pair join may have compared already)
        same = cross.same if cross.same is not None and not inp.class_agnostic else \
            d.cat_rank[cross.dt] == g.cat_rank[cross.gt]
        same_pairs = Pairs(cross.dt[same], cross.gt[same], cross.iou[same])
    d_best, d_arg = _segment_best(cross.dt, cross.iou, cross.gt, nd)  # cross is dt-sorted
    d_same = _segment_max(same_pairs.dt, same_pairs.iou, nd)  # ... and so are its same-label rows
    by_gt = stable_order((cross.gt, ng))  # (gt, dt) order: the pairs are (dt, gt)-sorted
    g_best, g_arg = _segment_best(cross.gt[by_gt], cross.iou[by_gt], cross.dt[by_gt], ng)
    by_gt = stable_order((same_pairs.gt, ng))
    g_same = _segment_max(same_pairs.gt[by_gt], same_pairs.iou[by_gt], ng)
    return _PairBests((d_best, d_arg, d_same, np.where(d_best > d_same, d_best, 0.0)),
                      (g_best, g_arg, g_same, np.where(g_best > g_same, g_best, 0.0)))


def _object_values(inp: EvalInputs, cross: Pairs, m: GreedyResult, thr: float,
                   bests: Background[_PairBests] | None = None) -> tuple[tuple, tuple]:
    """Per prediction and per GT of a chunk: partner, its IoU, best IoU (any label) and its partner,
    status and error codes (dropped predictions are set by the caller). ``bests``: :func:`_pair_bests`
    of the same pairs, started already (awaited once the partner IoUs are looked up)."""
    d, g = inp.dt, inp.gt
    nd, ng = len(d), len(g)
    # IoU with the partner: its row in the candidate pairs (cross holds every candidate pair of any label)
    dm = np.asarray(m.dt_match, np.int64)
    partner_iou = _partner_iou(cross.dt, cross.gt, cross.iou, dm)
    gm = np.asarray(m.gt_match, np.int64)
    gt_partner_iou = _partner_iou(cross.gt, cross.dt, cross.iou, gm)
    # codes into _STATUS: tp 0, fp 1, fn 2, ignored 3; into _ERRORS by position
    d_status = np.where(dm >= 0, np.where(m.dt_ignored, 3, 0), 1).astype(np.int8)
    g_status = np.where(g.crowd, 3, np.where(gm >= 0, 0, 2)).astype(np.int8)
    b = _pair_bests(inp, cross) if bests is None else bests.result()
    d_best, d_arg, d_same, d_other = b.d
    g_best, g_arg, g_same, g_other = b.g
    d_err = np.select([d_same >= thr, d_other >= thr, d_same >= BG_IOU, d_other >= BG_IOU], [0, 1, 2, 3], 4)
    d_err = np.where(d_status == 1, d_err, -1).astype(np.int8)
    g_err = np.select([np.maximum(g_same, g_other) < BG_IOU, g_same >= BG_IOU, g_other >= thr], [5, 2, 1], 3)
    g_err = np.where(g_status == 2, g_err, -1).astype(np.int8)
    return ((dm, partner_iou, d_best, d_arg, d_status, d_err),
            (gm, gt_partner_iou, g_best, g_arg, g_status, g_err))


def _labels(side: Side, inp: EvalInputs, class_agnostic: bool) -> pa.Array:
    """Each object's own label, dictionary-encoded (from the category codes unless matching ignored labels)."""
    if class_agnostic:
        return pc.dictionary_encode(pa.array(side.label, pa.string()))
    return pa.DictionaryArray.from_arrays(pa.array(side.cat, pa.int32()), pa.array(inp.labels, pa.string()))


def _matches_table(run_id: int, inp: EvalInputs, r: _ObjectRows, thr: float, class_agnostic: bool) -> pa.Table:
    """The ``matches`` rows, plus each object's ``label`` (for ``item_match_counts``; not stored in matches)."""
    d, g = inp.dt, inp.gt
    nd, ng = len(d), len(g)

    def keys(side_keys: np.ndarray, idx: np.ndarray) -> pa.Array:
        k = np.where(idx >= 0, side_keys[np.maximum(idx, 0)] if len(side_keys) else 0, 0)
        return pa.array(k, pa.int64(), mask=idx < 0)

    def f64(a: np.ndarray) -> pa.Array:
        return pa.array(a, pa.float64(), mask=np.isnan(a))

    pred_rows = pa.table({
        "run_id": pa.array(np.full(nd, run_id, np.int32)),
        "iou_threshold": pa.array(np.full(nd, thr)),
        "source": _dict(np.zeros(nd, np.int8), pa.array(["prediction"])),
        "ann_key": keys(g.key, r.dm),
        "pred_key": pa.array(d.key, pa.int64()),
        "item_id": pa.array(d.item_id, pa.int64()),
        "iou": f64(r.d_iou),
        "best_iou": f64(r.d_best),
        "best_iou_key": keys(g.key, r.d_arg),
        "status": _dict(r.d_status, _STATUS),
        "error_type": _dict(r.d_err, _ERRORS),
        "label": _labels(d, inp, class_agnostic),
    })
    gt_rows = pa.table({
        "run_id": pa.array(np.full(ng, run_id, np.int32)),
        "iou_threshold": pa.array(np.full(ng, thr)),
        "source": _dict(np.zeros(ng, np.int8), pa.array(["gt"])),
        "ann_key": pa.array(g.key, pa.int64()),
        "pred_key": keys(d.key, r.gm),
        "item_id": pa.array(g.item_id, pa.int64()),
        "iou": f64(r.g_iou),
        "best_iou": f64(r.g_best),
        "best_iou_key": keys(d.key, r.g_arg),
        "status": _dict(r.g_status, _STATUS),
        "error_type": _dict(r.g_err, _ERRORS),
        "label": _labels(g, inp, class_agnostic),
    })
    return pa.concat_tables([pred_rows, gt_rows])


def _match_counts(run_id: int, thr: float, inp: EvalInputs, r: _ObjectRows) -> pa.Table:
    """The run's ``item_match_counts`` rows from the commit's own arrays (engine.store.match_counts): per
    item, prediction tp / fp and GT fn counts over all labels (label NULL) and per label (the object's own)."""
    d, g = inp.dt, inp.gt
    d_ok = r.d_status <= 1  # tp 0 / fp 1 (not ignored 3)
    g_ok = r.g_status == 2  # fn
    img = np.r_[d.img[d_ok], g.img[g_ok]]  # dense image index: ascending item_id
    status = np.r_[r.d_status[d_ok], r.g_status[g_ok]].astype(np.int64)  # 0 tp, 1 fp, 2 fn
    lab = np.r_[d.cat_rank[d_ok], g.cat_rank[g_ok]]  # indexes inp.categories (every label)
    items = np.zeros(max(inp.n_images, 1), np.int64)
    items[d.img], items[g.img] = d.item_id, g.item_id
    n_lab = max(len(inp.categories), 1)
    # per (image, status, label) counts: a bincount while its bins are few next to the rows, else a sort
    k = (img * 3 + status) * n_lab + lab
    n_bins = inp.n_images * 3 * n_lab
    if n_bins <= 4 * len(k) + (1 << 20):
        cnt = np.bincount(k, minlength=n_bins)
        k_lab = np.flatnonzero(cnt)
        n_lab_rows = cnt[k_lab]
    else:
        k_lab, n_lab_rows = np.unique(k, return_counts=True)
    k_lab_all = k_lab // n_lab  # image * 3 + status, ascending: the all-label counts are their runs' sums
    first = np.flatnonzero(np.r_[True, k_lab_all[1:] != k_lab_all[:-1]]) if len(k_lab) else np.zeros(0, np.int64)
    k_all = k_lab_all[first]
    n_all = np.add.reduceat(n_lab_rows, first) if len(first) else np.zeros(0, np.int64)
    key = np.r_[k_all, k_lab_all]
    st = key % 3
    labels = pa.array(inp.categories, pa.string())
    lab_codes = np.r_[np.full(len(k_all), -1), k_lab % n_lab]
    n = len(key)
    return pa.table({
        "run_id": pa.array(np.full(n, run_id, np.int32)),
        "iou_threshold": pa.array(np.full(n, thr)),
        "item_id": pa.array(items[key // 3], pa.int64()),
        "source": pa.array(["prediction", "prediction", "gt"]).take(pa.array(st)),
        "status": pa.array(["tp", "fp", "fn"]).take(pa.array(st)),
        "label": labels.take(pa.array(lab_codes, pa.int64(), mask=lab_codes < 0)),
        "n": pa.array(np.r_[n_all, n_lab_rows], pa.int64()),
    })


def _partner_iou(own: np.ndarray, other: np.ndarray, iou: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Per object of one side, the IoU of its pair with ``partner[object]`` (NaN where -1 or not a pair).

    ``own``/``other``/``iou``: the pair rows, each (own, other) pair at most once (the pair joins match
    unique object indices), so the row whose other object is the partner is the only one: one gather and
    compare over the rows instead of a binary search per object (~half the CPU).
    """
    out = np.full(len(partner), np.nan)
    rows = np.flatnonzero(other == partner[own])
    out[own[rows]] = iou[rows]
    return out
