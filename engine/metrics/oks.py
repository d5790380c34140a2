"""Object keypoint similarity (OKS) of (detection, GT) pairs, as pycocotools ``COCOeval.computeOks``.

Per pair: ``e = (dx² + dy²) / (2σ)² / (area + eps) / 2`` per keypoint, OKS = mean of ``exp(-e)`` over
the GT's visible keypoints (v > 0); a GT without visible keypoints measures the distance to the
box ``[x - w, x + 2w] × [y - h, y + 2h]`` over all keypoints. Vectorized over pairs; the mean is
taken over compacted rows of equal length so the sums are pycocotools' own (bit-identical).
Also the keypoint defaults of pycocotools' ``Params(iouType='keypoints')``.
"""
from __future__ import annotations

import numpy as np

from .cocoeval import CocoParams

__all__ = ["COCO_PERSON_SIGMAS", "KEYPOINT_PARAMS", "oks_pairs"]

COCO_PERSON_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                               .89, .89]) / 10.0

# pycocotools setKpParams: maxDets [20], areas all / medium / large
KEYPOINT_PARAMS = CocoParams(max_dets=(20,), area_rng=((0 ** 2, 1e5 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2)),
                             area_lbl=("all", "medium", "large"), iou_type="keypoints")


def oks_pairs(dt_kp: np.ndarray, gt_kp: np.ndarray, gt_box: np.ndarray, gt_area: np.ndarray,
              sigmas: np.ndarray) -> np.ndarray:
    """OKS of P pairs that share ``sigmas`` (one keypoint count k).

    Args:
        dt_kp: (P, 3k) detection keypoints (x, y, v).
        gt_kp: (P, 3k) GT keypoints.
        gt_box: (P, 4) GT bbox (x, y, w, h).
        gt_area: (P,) GT area.
        sigmas: (k,) per-keypoint sigmas.
    """
    P = len(dt_kp)
    sigmas = np.asarray(sigmas, np.float64)
    k = len(sigmas)
    if P == 0:
        return np.zeros(0)
    var = (sigmas * 2) ** 2
    xd, yd = dt_kp[:, 0::3], dt_kp[:, 1::3]
    xg, yg, vg = gt_kp[:, 0::3], gt_kp[:, 1::3], gt_kp[:, 2::3]
    vis = vg > 0
    k1 = vis.sum(axis=1)
    x0 = (gt_box[:, 0] - gt_box[:, 2])[:, None]
    x1 = (gt_box[:, 0] + gt_box[:, 2] * 2)[:, None]
    y0 = (gt_box[:, 1] - gt_box[:, 3])[:, None]
    y1 = (gt_box[:, 1] + gt_box[:, 3] * 2)[:, None]
    z = np.zeros((P, k))
    has = (k1 > 0)[:, None]
    dx = np.where(has, xd - xg, np.maximum(z, x0 - xd) + np.maximum(z, xd - x1))
    dy = np.where(has, yd - yg, np.maximum(z, y0 - yd) + np.maximum(z, yd - y1))
    e = (dx ** 2 + dy ** 2) / var / (gt_area[:, None] + np.spacing(1)) / 2
    ex = np.exp(-e)
    use = np.where(has, vis, True)  # the keypoints each pair averages over
    n_use = np.where(k1 > 0, k1, k)
    out = np.empty(P)
    for n in np.unique(n_use):  # at most k + 1 lengths: rows of equal length, summed as numpy sums one row
        rows = np.flatnonzero(n_use == n)
        vals = ex[rows][use[rows]].reshape(len(rows), int(n))
        out[rows] = np.sum(vals, axis=1) / n
    return out
