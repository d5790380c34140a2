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
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from udfs.matching import GreedyResult, greedy_match, hungarian_match

from ..errors import LoupeError
from ..store import Store
from .evaluate import RunEvaluation, candidate_pairs, evaluate_run, stats_dict
from .inputs import EvalInputs, Pairs

BG_IOU = 0.1
METHODS = ("coco", "hungarian")
MAX_DETS = 100


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
) -> dict[str, Any]:
    """Match, index and evaluate a run. Returns counts and the 12 COCO stats."""
    if method not in METHODS:
        raise LoupeError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < float(iou_threshold) <= 1:
        raise LoupeError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    allowed = _allowed(allowed_label_matches)
    if label_version is None:
        label_version = int(store.scalar("SELECT label_version FROM datasets WHERE dataset_id = ?", [dataset_id]))
    ev = evaluate_run(store, dataset_id, run_id, iou_type=iou_type, label_version=label_version,
                      class_agnostic=class_agnostic)
    inp = ev.inputs
    cross = candidate_pairs(store, inp, iou_type, same_category=False) if not class_agnostic else ev.pairs
    m = _match(ev, cross, float(iou_threshold), allowed, method)
    table = _matches_table(run_id, inp, ev.pairs, cross, m, float(iou_threshold), dropped=_dropped(ev, method, allowed))
    params = {"iou_threshold": float(iou_threshold), "class_agnostic": bool(class_agnostic),
              "allowed_label_matches": [list(p) for p in allowed] if allowed else None,
              "method": method, "iou_type": iou_type, "label_version": label_version}
    stats = stats_dict(ev.result.stats)
    con = store.con
    con.register("__new_matches", table)
    try:
        with store.transaction():
            con.execute("DELETE FROM matches WHERE run_id = ?", [run_id])
            con.execute("INSERT INTO matches SELECT * FROM __new_matches")
            con.execute("DELETE FROM evaluations WHERE run_id = ?", [run_id])
            con.execute(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?::JSON, ?::JSON, now()::TIMESTAMP)",
                [run_id, iou_type, label_version, bool(class_agnostic), json.dumps(stats),
                 json.dumps(_per_class(ev))])
            con.execute(
                "UPDATE runs SET committed_at = now()::TIMESTAMP, label_version = ?, params = ?::JSON WHERE run_id = ?",
                [label_version, json.dumps(params), run_id])
    finally:
        con.unregister("__new_matches")
    counts = {(r["source"], r["status"]): r["count_all"] for r in
              table.select(["source", "status"]).cast(pa.schema([("source", pa.string()), ("status", pa.string())]))
              .group_by(["source", "status"]).aggregate([([], "count_all")]).to_pylist()}
    return {"tp": int(counts.get(("prediction", "tp"), 0)), "fp": int(counts.get(("prediction", "fp"), 0)),
            "fn": int(counts.get(("gt", "fn"), 0)),
            "ignored": int(counts.get(("prediction", "ignored"), 0) + counts.get(("gt", "ignored"), 0)),
            "predictions": len(inp.dt), "ground_truth": len(inp.gt), "stats": stats, "params": params}


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


def _dropped(ev: RunEvaluation, method: str, allowed: set) -> np.ndarray:
    """Predictions outside the index's matching (beyond maxDets per image and label)."""
    if method == "coco" and not allowed:
        return ev.result.dt_dropped
    return np.zeros(len(ev.inputs.dt), bool)


def _match(ev: RunEvaluation, cross: Pairs, thr: float, allowed: set, method: str) -> GreedyResult:
    inp, r = ev.inputs, ev.result
    d, g = inp.dt, inp.gt
    if allowed:
        ok = (d.label[cross.dt] == g.label[cross.gt]) | np.fromiter(
            ((gl, dl) in allowed for gl, dl in zip(g.label[cross.gt], d.label[cross.dt])), bool, len(cross.dt))
        pairs = Pairs(cross.dt[ok], cross.gt[ok], cross.iou[ok])
        group = d.img
    else:
        pairs = ev.pairs
        group = d.img * max(len(inp.labels), 1) + d.cat
    if method == "hungarian":
        return hungarian_match(pairs.dt, pairs.gt, pairs.iou, len(d), len(g), thr)
    if not allowed:
        thrs = np.asarray(r.params.iou_thrs)
        hit = np.flatnonzero(thrs == thr)
        if len(hit):  # the evaluation already matched at this threshold (area 'all', maxDets 100)
            t = int(hit[0])
            return GreedyResult(r.dt_match[t].astype(np.int64), r.dt_ignore[t] & (r.dt_match[t] >= 0),
                                r.gt_match[t].astype(np.int64))
    return greedy_match(group, d.score, g.crowd, pairs.dt, pairs.gt, pairs.iou, thr, max_dets=MAX_DETS)


def _segment_best(idx: np.ndarray, iou: np.ndarray, other: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per index (``idx`` sorted): max IoU and the first ``other`` reaching it (NaN / -1 when none).

    IoUs of -inf mark rows to leave out. O(rows): one ``maximum.reduceat`` pass, no sort.
    """
    best = np.full(n, np.nan)
    arg = np.full(n, -1, np.int64)
    if len(idx) == 0:
        return best, arg
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    seg_max = np.maximum.reduceat(iou, starts)
    lengths = np.diff(np.r_[starts, len(idx)])
    hit = np.flatnonzero(iou == np.repeat(seg_max, lengths))
    seg_of_hit = np.searchsorted(starts, hit, side="right") - 1
    first = hit[np.r_[True, seg_of_hit[1:] != seg_of_hit[:-1]]]
    owner = idx[first]
    ok = np.isfinite(iou[first])
    best[owner[ok]] = iou[first][ok]
    arg[owner[ok]] = other[first][ok]
    return best, arg


def _best_three(idx: np.ndarray, iou: np.ndarray, other: np.ndarray, same: np.ndarray, n: int):
    """Best IoU with its partner over all candidates, and the best same-label and other-label IoU."""
    best, arg = _segment_best(idx, iou, other, n)
    s, _ = _segment_best(idx, np.where(same, iou, -np.inf), other, n)
    o, _ = _segment_best(idx, np.where(same, -np.inf, iou), other, n)
    return best, arg, np.nan_to_num(s, nan=0.0), np.nan_to_num(o, nan=0.0)


_STATUS = pa.array(["tp", "fp", "fn", "ignored"], pa.string())
_ERRORS = pa.array(["duplicate", "classification", "localization", "both", "background", "missed",
                    "beyond_max_dets"], pa.string())


def _dict(codes: np.ndarray, dictionary: pa.Array) -> pa.Array:
    """A dictionary-encoded string column (-1 = NULL) without building Python strings per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8(), mask=codes < 0), dictionary)


def _matches_table(run_id: int, inp: EvalInputs, pairs: Pairs, cross: Pairs, m: GreedyResult, thr: float,
                   dropped: np.ndarray) -> pa.Table:
    d, g = inp.dt, inp.gt
    nd, ng = len(d), len(g)
    # IoU with the partner: look the pair up in the candidate lists (sorted by (dt, gt))
    dm = np.asarray(m.dt_match, np.int64)
    partner_iou = _lookup(cross, np.arange(nd), dm)  # cross holds every candidate pair of any label
    gm = np.asarray(m.gt_match, np.int64)
    gt_partner_iou = _lookup(cross, gm, np.arange(ng))
    # best IoU across labels, same-label and other-label maxima (for error types)
    same = d.label[cross.dt] == g.label[cross.gt] if len(cross.dt) else np.zeros(0, bool)
    d_best, d_arg, d_same, d_other = _best_three(cross.dt, cross.iou, cross.gt, same, nd)  # cross is dt-sorted
    by_gt = np.argsort(cross.gt, kind="stable")
    g_best, g_arg, g_same, g_other = _best_three(cross.gt[by_gt], cross.iou[by_gt], cross.dt[by_gt], same[by_gt], ng)

    # codes into _STATUS: tp 0, fp 1, fn 2, ignored 3; into _ERRORS by position
    d_status = np.where(dm >= 0, np.where(m.dt_ignored, 3, 0), 1).astype(np.int8)
    d_status[dropped] = 3
    d_err = np.select([d_same >= thr, d_other >= thr, d_same >= BG_IOU, d_other >= BG_IOU], [0, 1, 2, 3], 4)
    d_err = np.where(d_status == 1, d_err, -1).astype(np.int8)
    d_err[dropped] = 6
    g_status = np.where(g.crowd, 3, np.where(gm >= 0, 0, 2)).astype(np.int8)
    g_err = np.select([np.maximum(g_same, g_other) < BG_IOU, g_same >= BG_IOU, g_other >= thr], [5, 2, 1], 3)
    g_err = np.where(g_status == 2, g_err, -1).astype(np.int8)

    def keys(side_keys: np.ndarray, idx: np.ndarray) -> pa.Array:
        k = np.where(idx >= 0, side_keys[np.maximum(idx, 0)] if len(side_keys) else 0, 0)
        return pa.array(k, pa.int64(), mask=idx < 0)

    def f64(a: np.ndarray) -> pa.Array:
        return pa.array(a, pa.float64(), mask=np.isnan(a))

    pred_rows = pa.table({
        "run_id": pa.array(np.full(nd, run_id, np.int32)),
        "iou_threshold": pa.array(np.full(nd, thr)),
        "source": _dict(np.zeros(nd, np.int8), pa.array(["prediction"])),
        "ann_key": keys(g.key, dm),
        "pred_key": pa.array(d.key, pa.int64()),
        "item_id": pa.array(d.item_id, pa.int64()),
        "iou": f64(partner_iou),
        "best_iou": f64(d_best),
        "best_iou_key": keys(g.key, d_arg),
        "status": _dict(d_status, _STATUS),
        "error_type": _dict(d_err, _ERRORS),
    })
    gt_rows = pa.table({
        "run_id": pa.array(np.full(ng, run_id, np.int32)),
        "iou_threshold": pa.array(np.full(ng, thr)),
        "source": _dict(np.zeros(ng, np.int8), pa.array(["gt"])),
        "ann_key": pa.array(g.key, pa.int64()),
        "pred_key": keys(d.key, gm),
        "item_id": pa.array(g.item_id, pa.int64()),
        "iou": f64(gt_partner_iou),
        "best_iou": f64(g_best),
        "best_iou_key": keys(d.key, g_arg),
        "status": _dict(g_status, _STATUS),
        "error_type": _dict(g_err, _ERRORS),
    })
    return pa.concat_tables([pred_rows, gt_rows])


def _lookup(p: Pairs, di: np.ndarray, gi: np.ndarray) -> np.ndarray:
    """IoU of pairs (di[k], gi[k]) from a (dt, gt)-sorted pair list; NaN where either is -1 or absent."""
    out = np.full(len(di), np.nan)
    ok = (di >= 0) & (gi >= 0)
    if not ok.any() or len(p.dt) == 0:
        return out
    n_gt = int(max(p.gt.max(initial=0), gi.max(initial=0))) + 1
    key = p.dt * n_gt + p.gt
    q = di[ok] * n_gt + gi[ok]
    pos = np.searchsorted(key, q)
    pos = np.minimum(pos, len(key) - 1)
    found = key[pos] == q
    vals = np.where(found, p.iou[pos], np.nan)
    out[np.flatnonzero(ok)] = vals
    return out
