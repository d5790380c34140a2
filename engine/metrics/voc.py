"""Pascal VOC average precision (VOC2007 11-point and VOC2010+ all-point), vectorized.

Semantics of the VOC devkit (``VOCevaldet.m``, and the ``voc_eval.py`` port): per class,
detections in score order (ties: input order) are each assigned the GT of their image and class
with the highest IoU (ties: the first GT), whether or not that GT is already taken. The detection
is a true positive when that IoU is >= the threshold, the GT is not ``difficult`` and no
higher-scored detection took it first; a false positive otherwise, except that a detection whose
best GT is difficult (IoU >= threshold) counts as neither. Recall is over the non-difficult GT.

Because each detection's best GT does not depend on earlier matches, the TP is simply the first
detection (in score order) whose best GT is a given GT: no sequential loop is needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VocResult", "voc_ap", "voc_evaluate"]


@dataclass(frozen=True, eq=False)
class VocResult:
    """Per-class AP (NaN for classes without non-difficult GT), mAP over the classes with GT,
    and the per-class PR points (``recall``/``precision`` in score order, ignored detections left out)."""

    ap: np.ndarray
    mAP: float
    n_pos: np.ndarray
    tp: np.ndarray  # (D,) True where the detection is a true positive
    ignored: np.ndarray  # (D,) detection matched to a difficult GT
    recall: list[np.ndarray]
    precision: list[np.ndarray]


def voc_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False) -> float:
    """AP of one PR curve (points in score order): VOC2007 11-point or VOC2010+ all-point."""
    if eleven_point:  # the devkit's thresholds, np.arange(0., 1.1, 0.1) (0.3 is 0.30000000000000004)
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ok = recall >= t
            ap += (float(np.max(precision[ok])) if ok.any() else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_evaluate(
    gt_img: np.ndarray, gt_cat: np.ndarray, gt_difficult: np.ndarray,
    dt_img: np.ndarray, dt_cat: np.ndarray, dt_score: np.ndarray,
    pair_dt: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray,
    n_categories: int, iou_threshold: float = 0.5, eleven_point: bool = False,
) -> VocResult:
    """VOC AP per class from flat arrays (GT and detections in input order).

    Args:
        gt_cat, dt_cat: class index in [0, n_categories); detections of other classes are dropped.
        pair_dt, pair_gt, pair_iou: (detection, GT) pairs with IoU > 0; pairs not in the same image
            and class are ignored; a detection without a pair has IoU 0 with every GT.
    """
    gt_img, gt_cat = np.asarray(gt_img, np.int64), np.asarray(gt_cat, np.int64)
    dt_img, dt_cat = np.asarray(dt_img, np.int64), np.asarray(dt_cat, np.int64)
    diff = np.asarray(gt_difficult, bool)
    score = np.asarray(dt_score, np.float64)
    pd, pg = np.asarray(pair_dt, np.int64), np.asarray(pair_gt, np.int64)
    piou = np.asarray(pair_iou, np.float64)
    D, K = len(dt_img), int(n_categories)
    ok = (dt_img[pd] == gt_img[pg]) & (dt_cat[pd] == gt_cat[pg]) & (piou > 0)
    pd, pg, piou = pd[ok], pg[ok], piou[ok]

    # best GT per detection: highest IoU, first GT on ties
    o = np.lexsort((pg, -piou, pd))
    first = np.r_[True, pd[o][1:] != pd[o][:-1]] if len(o) else np.zeros(0, bool)
    best_gt = np.full(D, -1, np.int64)
    best_iou = np.zeros(D)
    best_gt[pd[o][first]] = pg[o][first]
    best_iou[pd[o][first]] = piou[o][first]

    valid = (dt_cat >= 0) & (dt_cat < K)
    hit = valid & (best_gt >= 0) & (best_iou >= iou_threshold)
    ignored = hit & diff[np.maximum(best_gt, 0)]
    cand = hit & ~ignored
    # score order (desc, stable in input order); the first candidate per GT is the TP
    order = np.argsort(-score, kind="stable")
    c = order[cand[order]]
    _, first_c = np.unique(best_gt[c], return_index=True)
    tp = np.zeros(D, bool)
    tp[c[first_c]] = True

    n_pos = np.bincount(gt_cat[~diff & (gt_cat >= 0) & (gt_cat < K)], minlength=K)[:K]
    ap = np.full(K, np.nan)
    recs, precs = [], []
    live = order[valid[order] & ~ignored[order]]
    live = live[np.argsort(dt_cat[live], kind="stable")]  # class-major, score order inside
    bounds = np.searchsorted(dt_cat[live], np.arange(K + 1))
    for k in range(K):  # K is small; each step is vectorized
        sel = live[bounds[k]:bounds[k + 1]]
        ctp = np.cumsum(tp[sel])
        cfp = np.cumsum(~tp[sel])
        rec = ctp / n_pos[k] if n_pos[k] else np.zeros(len(sel))
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        recs.append(rec)
        precs.append(prec)
        if n_pos[k]:
            ap[k] = voc_ap(rec, prec, eleven_point)
    have = n_pos > 0
    mAP = float(np.mean(ap[have])) if have.any() else float("nan")
    return VocResult(ap=ap, mAP=mAP, n_pos=n_pos, tp=tp, ignored=ignored, recall=recs, precision=precs)
