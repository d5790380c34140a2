"""Build evaluation arrays and box IoU pairs from COCO json structures.

Mirrors what pycocotools does when loading (``COCO`` + ``loadRes`` for bbox
results): images and categories are indexed in ascending id order, a result's
area is ``w * h`` of its box, GT keeps its stored ``area``. Used by tests and
benchmarks; the engine's own ingest builds the same arrays from its tables.
"""

from __future__ import annotations

import numpy as np

from engine.metrics.cocoeval import DtArrays, GtArrays, PairArrays
from udfs.iou import box_iou_indexed

__all__ = ["arrays_from_coco", "box_pairs"]


def box_pairs(
    d_box: np.ndarray, d_key: np.ndarray, g_box: np.ndarray, g_key: np.ndarray, g_crowd: np.ndarray
) -> PairArrays:
    """All detection/GT pairs with equal group key and IoU > 0 (pycocotools box IoU)."""
    d_key = np.asarray(d_key, dtype=np.int64)
    g_key = np.asarray(g_key, dtype=np.int64)
    go = np.argsort(g_key, kind="stable")
    gk = g_key[go]
    lo = np.searchsorted(gk, d_key, side="left")
    hi = np.searchsorted(gk, d_key, side="right")
    cnt = hi - lo
    di = np.repeat(np.arange(len(d_key)), cnt)
    start = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
    gi = go[start + np.arange(len(di))] if len(di) else np.zeros(0, np.int64)
    iou = box_iou_indexed(tuple(np.asarray(d_box, np.float64).T), tuple(np.asarray(g_box, np.float64).T), g_crowd, di, gi)
    keep = iou > 0
    return PairArrays(dt=di[keep], gt=gi[keep], iou=iou[keep])


def arrays_from_coco(
    gt: dict, results: list[dict], use_cats: bool = True
) -> tuple[GtArrays, DtArrays, PairArrays]:
    """(GtArrays, DtArrays, PairArrays) for a COCO GT dict and a bbox results list.

    GT annotations on unknown images/categories are dropped (pycocotools never
    loads them); results on unknown categories get category -1.
    """
    img_ids = np.unique(np.asarray([im["id"] for im in gt["images"]], dtype=np.int64))
    cat_ids = np.unique(np.asarray([c["id"] for c in gt["categories"]], dtype=np.int64))
    anns = gt["annotations"]
    ga_img = np.asarray([a["image_id"] for a in anns], dtype=np.int64)
    ga_cat = np.asarray([a["category_id"] for a in anns], dtype=np.int64)
    ok = np.isin(ga_img, img_ids) & np.isin(ga_cat, cat_ids)
    anns = [a for a, k in zip(anns, ok) if k]
    g_img = np.searchsorted(img_ids, ga_img[ok])
    g_cat = np.searchsorted(cat_ids, ga_cat[ok])
    g_box = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    g_crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    gta = GtArrays(
        img=g_img, cat=g_cat,
        area=np.asarray([a["area"] for a in anns], dtype=np.float64),
        iscrowd=g_crowd, n_images=len(img_ids), n_categories=len(cat_ids),
        ann_id=np.asarray([a["id"] for a in anns], dtype=np.int64),
    )
    r_img = np.asarray([r["image_id"] for r in results], dtype=np.int64)
    r_cat = np.asarray([r["category_id"] for r in results], dtype=np.int64)
    d_box = np.asarray([r["bbox"] for r in results], dtype=np.float64).reshape(-1, 4)
    d_img = np.searchsorted(img_ids, r_img)
    if len(r_img) and not np.isin(r_img, img_ids).all():
        raise ValueError("results refer to images that are not in the ground truth")
    ci = np.searchsorted(cat_ids, r_cat)
    known = (ci < len(cat_ids)) & (cat_ids[np.minimum(ci, len(cat_ids) - 1)] == r_cat) if len(cat_ids) else ci < 0
    d_cat = np.where(known, ci, -1)
    dta = DtArrays(
        img=d_img, cat=d_cat,
        score=np.asarray([r["score"] for r in results], dtype=np.float64),
        area=d_box[:, 2] * d_box[:, 3],
    )
    n_cat = max(len(cat_ids), 1)
    if use_cats:
        pairs = box_pairs(d_box, np.where(known, d_img * n_cat + d_cat, -1), g_box, g_img * n_cat + g_cat, g_crowd)
    else:
        pairs = box_pairs(d_box, np.where(known, d_img, -1), g_box, g_img, g_crowd)
    return gta, dta, pairs
