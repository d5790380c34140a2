"""Random COCO GT/results pairs full of edge cases, for comparing Loupe with pycocotools."""
from __future__ import annotations

import numpy as np


def random_pair(seed: int, n_images: int = 12, n_cats: int = 4, max_gt: int = 8, max_dt: int = 14,
                first_ann_id: int = 0) -> tuple[dict, list[dict]]:
    """A COCO GT dict and a results list: crowds, score and IoU ties, empty images, images with
    only detections, a category without GT, touching and zero-area boxes, annotation id 0,
    detections crossing the image border."""
    rng = np.random.default_rng(seed)
    W, H = 200, 160
    images = [{"id": int(i), "file_name": f"img{i:04d}.jpg", "width": W, "height": H}
              for i in rng.choice(np.arange(1, 10 * n_images), n_images, replace=False)]
    cats = [{"id": int(c), "name": f"class{c}"} for c in range(1, n_cats + 2)]  # last one never has GT
    anns, dets = [], []
    ann_id = first_ann_id
    for im in images:
        n_gt = int(rng.integers(0, max_gt + 1)) if rng.random() > 0.15 else 0
        boxes = []
        for _ in range(n_gt):
            if boxes and rng.random() < 0.15:  # exact duplicate GT box: IoU ties
                x, y, w, h = boxes[int(rng.integers(len(boxes)))]
            else:
                x, y = float(rng.integers(0, W - 20)), float(rng.integers(0, H - 20))
                w = float(rng.integers(0, min(120, W - x) + 1))
                h = float(rng.integers(0, min(120, H - y) + 1))
                if rng.random() < 0.3:
                    x, y, w, h = x + 0.25, y + 0.5, max(w - 0.75, 0.0), max(h - 0.5, 0.0)
            boxes.append((x, y, w, h))
            crowd = int(rng.random() < 0.1)
            anns.append({"id": ann_id, "image_id": im["id"], "category_id": int(rng.integers(1, n_cats + 1)),
                         "bbox": [x, y, w, h], "area": float(w * h) if rng.random() > 0.1 else float(rng.uniform(0, 12000)),
                         "iscrowd": crowd, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            ann_id += 1
        n_dt = int(rng.integers(0, max_dt + 1))
        if rng.random() < 0.1:
            n_dt = 120  # more than maxDets
        for _ in range(n_dt):
            if boxes and rng.random() < 0.6:
                x, y, w, h = boxes[int(rng.integers(len(boxes)))]
                jit = rng.choice([0.0, 0.0, 2.0, 8.0, 30.0])
                x, y = x + float(rng.integers(-1, 2)) * jit, y + float(rng.integers(-1, 2)) * jit
                if rng.random() < 0.1:  # touching: shares an edge only
                    x = x + w
            else:
                x, y = float(rng.integers(0, W - 10)), float(rng.integers(0, H - 10))
                w, h = float(rng.integers(1, 80)), float(rng.integers(1, 80))
            x, y = min(max(x, 0.0), W - 1.0), min(max(y, 0.0), H - 1.0)
            if rng.random() > 0.05:  # else: crosses the image border (pycocotools keeps it as is)
                w, h = min(w, W - x), min(h, H - y)
            score = float(rng.choice([0.5, 0.9, 0.25])) if rng.random() < 0.3 else float(np.round(rng.random(), 3))
            dets.append({"image_id": im["id"], "category_id": int(rng.integers(1, n_cats + 2)),
                         "bbox": [x, y, w, h], "score": score})
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


def import_pair(folder, gt: dict, dets: list[dict]):
    """Write the pair as JSON in ``folder`` and import it into an in-memory workspace as run "r".

    Boxes crossing the border are kept as pycocotools keeps them. Returns ``(ws, run)``.
    """
    import json

    import engine

    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "res.json").write_text(json.dumps(dets))
    ws = engine.connect()
    ws.import_coco(folder / "gt.json", dataset="d", results=folder / "res.json", run="r", check_images=False,
                   clip="keep")
    return ws, ws.get_run("r")
