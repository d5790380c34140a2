"""Run pycocotools COCOeval (the oracle) and line its per-object output up with Loupe's arrays."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def run_pycocotools(gt: dict, results: list[dict], use_cats: bool = True, params: dict | None = None):
    """COCOeval(bbox) after evaluate/accumulate/summarize, with its prints silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.useCats = int(use_cats)
        for k, v in (params or {}).items():
            setattr(ev.params, k, v)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_object(ev, gt_ids: np.ndarray, n_dt: int):
    """pycocotools evalImgs for area 'all' as dense arrays.

    Returns (dt_match_id (T, D), dt_ignore (T, D), dt_seen (D,), gt_match_id (T, G), gt_ignore (G,)):
    matched annotation ids (0 = none, as pycocotools stores them), indexed by the
    detection's position in the results list (loadRes ids are position + 1) and
    the GT's position in ``gt_ids``.
    """
    T = len(ev.params.iouThrs)
    G = len(gt_ids)
    gpos = {int(g): i for i, g in enumerate(gt_ids)}
    dt_match = np.zeros((T, n_dt), np.int64)
    dt_ignore = np.zeros((T, n_dt), bool)
    dt_seen = np.zeros(n_dt, bool)
    gt_match = np.zeros((T, G), np.int64)
    gt_ignore = np.zeros(G, bool)
    all_rng = ev.params.areaRng[0]
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(all_rng):
            continue
        d = np.asarray(e["dtIds"], np.int64) - 1
        g = np.asarray([gpos[int(i)] for i in e["gtIds"]], np.int64)
        if len(d):
            dt_match[:, d] = e["dtMatches"]
            dt_ignore[:, d] = e["dtIgnore"]
            dt_seen[d] = True
        if len(g):
            gt_match[:, g] = e["gtMatches"]
            gt_ignore[g] = e["gtIgnore"]
    return dt_match, dt_ignore, dt_seen, gt_match, gt_ignore


def assert_matches_agree(res, ev, gt_ids: np.ndarray, n_dt: int) -> None:
    """Loupe's per-object matches (area 'all', largest maxDet) equal pycocotools' evalImgs."""
    pm_dt, pm_dtig, seen, pm_gt, pm_gtig = per_object(ev, gt_ids, n_dt)
    ids0 = np.append(np.asarray(gt_ids, np.int64), 0)  # -1 (unmatched) -> id 0, like pycocotools
    ours_dt = ids0[res.dt_match]
    np.testing.assert_array_equal(~res.dt_dropped, seen)
    np.testing.assert_array_equal(ours_dt[:, seen], pm_dt[:, seen])
    np.testing.assert_array_equal(res.dt_ignore[:, seen], pm_dtig[:, seen])
    ours_gt = np.where(res.gt_match >= 0, res.gt_match + 1, 0)  # loadRes ids = position + 1
    np.testing.assert_array_equal(ours_gt, pm_gt)
    np.testing.assert_array_equal(res.gt_ignore, pm_gtig)


def assert_same_eval(res, ev) -> None:
    """precision / recall / scores / stats bit-identical to pycocotools."""
    np.testing.assert_array_equal(res.precision, ev.eval["precision"])
    np.testing.assert_array_equal(res.recall, ev.eval["recall"])
    np.testing.assert_array_equal(res.scores, ev.eval["scores"])
    np.testing.assert_array_equal(res.stats, np.asarray(ev.stats, dtype=np.float64))
