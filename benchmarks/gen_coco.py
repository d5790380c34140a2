"""Seeded synthetic COCO ground truth + detector-like results for benchmarks.

The shapes mimic COCO val2017 scored by a typical detector: ~7.3 GT per image
(skewed class frequencies, ~1% crowd, all three size bins), and about 100
detections per image made of jittered copies of GT boxes (sometimes with a
confused class) plus background boxes, with scores rounded to 3 decimals so
score ties occur as in real result files.
"""

from __future__ import annotations

import json

import numpy as np


def make_pair(
    n_images: int = 5000, n_dets: int = 500_000, n_classes: int = 80, seed: int = 0
) -> tuple[dict, list[dict]]:
    """Build a (GT dataset dict, results list) pair in COCO json structure."""
    gt, (d_img, d_cat, d_box, d_score, order) = _make(n_images, n_dets, n_classes, seed)
    return gt, _results(d_img, d_cat, d_box, d_score, order)


def write_pair(gt_path, res_path, n_images: int = 5000, n_dets: int = 500_000, n_classes: int = 80,
               seed: int = 0) -> None:
    """Write the pair of :func:`make_pair` to two JSON files; the results (the same numbers, in the
    same order) are written by DuckDB from Arrow columns: 20M detections as Python dicts would need
    ~10 GB and ~15 minutes of ``json.dumps``."""
    import duckdb
    import pyarrow as pa

    gt, (d_img, d_cat, d_box, d_score, order) = _make(n_images, n_dets, n_classes, seed)
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    del gt
    box = d_box[order]
    res = pa.table({"image_id": d_img[order] + 1, "category_id": d_cat[order] + 1,
                    "bbox": pa.FixedSizeListArray.from_arrays(pa.array(box.ravel()), 4),
                    "score": d_score[order]})
    del box
    con = duckdb.connect()
    con.register("res", res)
    con.execute("SET preserve_insertion_order = true")
    con.execute("COPY (SELECT image_id, category_id, bbox::DOUBLE[] AS bbox, score FROM res) TO "
                "'" + str(res_path).replace("'", "''") + "' (FORMAT json, ARRAY true)")
    con.close()


def _results(d_img, d_cat, d_box, d_score, order) -> list[dict]:
    return [
        {
            "image_id": int(d_img[i] + 1),
            "category_id": int(d_cat[i] + 1),
            "bbox": [float(v) for v in d_box[i]],
            "score": float(d_score[i]),
        }
        for i in order
    ]


def _make(n_images: int, n_dets: int, n_classes: int, seed: int) -> tuple[dict, tuple]:
    """The GT dict and the detection arrays (image, class, box, score, file order)."""
    rng = np.random.default_rng(seed)
    img_w = rng.choice([640, 480, 500, 427], n_images)
    img_h = rng.choice([480, 640, 375, 333], n_images)
    images = [
        {"id": int(i + 1), "width": int(w), "height": int(h), "file_name": f"{i + 1:012d}.jpg"}
        for i, (w, h) in enumerate(zip(img_w, img_h))
    ]
    categories = [{"id": int(c + 1), "name": f"class_{c + 1}", "supercategory": "x"} for c in range(n_classes)]
    # Skewed class frequencies (class 1 ~ "person" dominates, as in COCO).
    cls_p = 1.0 / np.arange(1, n_classes + 1) ** 0.9
    cls_p /= cls_p.sum()

    n_gt_img = rng.poisson(7.3, n_images)
    n_gt = int(n_gt_img.sum())
    g_img = np.repeat(np.arange(n_images), n_gt_img)
    g_cat = rng.choice(n_classes, n_gt, p=cls_p)
    # Log-uniform box areas spanning small / medium / large.
    area = np.exp(rng.uniform(np.log(16.0), np.log(200_000.0), n_gt))
    aspect = np.exp(rng.normal(0.0, 0.5, n_gt))
    gw = np.minimum(np.sqrt(area * aspect), img_w[g_img] - 1.0)
    gh = np.minimum(np.sqrt(area / aspect), img_h[g_img] - 1.0)
    gx = rng.uniform(0, 1, n_gt) * (img_w[g_img] - gw)
    gy = rng.uniform(0, 1, n_gt) * (img_h[g_img] - gh)
    g_box = np.round(np.stack([gx, gy, gw, gh], 1), 2)
    g_crowd = rng.random(n_gt) < 0.01
    # Stored polygon area differs from the box area (as in COCO masks).
    g_area = np.round(g_box[:, 2] * g_box[:, 3] * rng.uniform(0.5, 0.95, n_gt), 2)
    annotations = [
        {
            "id": int(i + 1),
            "image_id": int(g_img[i] + 1),
            "category_id": int(g_cat[i] + 1),
            "bbox": [float(v) for v in g_box[i]],
            "area": float(g_area[i]),
            "iscrowd": int(g_crowd[i]),
        }
        for i in range(n_gt)
    ]
    gt = {"info": {"description": "loupe synthetic"}, "images": images, "annotations": annotations,
          "categories": categories}

    # Detections: ~60% jittered copies of GT, the rest background.
    n_match = int(n_dets * 0.6) if n_gt else 0
    src = rng.integers(0, max(n_gt, 1), n_match)
    jit = rng.normal(0.0, 0.12, (n_match, 4)) * np.repeat(g_box[src, 2:], 2, axis=1)
    m_box = g_box[src] + jit
    m_box[:, 2:] = np.maximum(m_box[:, 2:], 1.0)
    m_img = g_img[src]
    m_cat = np.where(rng.random(n_match) < 0.1, rng.choice(n_classes, n_match, p=cls_p), g_cat[src])
    m_score = rng.beta(4, 2, n_match)
    n_bg = n_dets - n_match
    b_img = rng.integers(0, n_images, n_bg)
    b_area = np.exp(rng.uniform(np.log(16.0), np.log(100_000.0), n_bg))
    b_asp = np.exp(rng.normal(0.0, 0.5, n_bg))
    bw = np.minimum(np.sqrt(b_area * b_asp), img_w[b_img] - 1.0)
    bh = np.minimum(np.sqrt(b_area / b_asp), img_h[b_img] - 1.0)
    b_box = np.stack([rng.uniform(0, 1, n_bg) * (img_w[b_img] - bw),
                      rng.uniform(0, 1, n_bg) * (img_h[b_img] - bh), bw, bh], 1)
    b_cat = rng.choice(n_classes, n_bg, p=cls_p)
    b_score = rng.beta(1.5, 5, n_bg)
    d_img = np.concatenate([m_img, b_img])
    d_cat = np.concatenate([m_cat, b_cat])
    d_box = np.round(np.concatenate([m_box, b_box]), 2)
    d_score = np.round(np.concatenate([m_score, b_score]), 3)
    order = rng.permutation(n_dets)  # results files are not grouped
    order = order[np.argsort(d_img[order], kind="stable")]  # ... but usually per image
    return gt, (d_img, d_cat, d_box, d_score, order)
