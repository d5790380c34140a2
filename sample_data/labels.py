"""Ground truth and the noisy annotation derived from it (label-error injection).

The true object list comes from the rendered id canvas. The annotation then
deliberately deviates from it in four recorded ways (see the package docstring):
missing small pedestrians, an inconsistent policy for heavily occluded ones,
a few loose text boxes and a few swapped pedestrian/cyclist labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Rendered
from .scene import Scene

PF_LABELS = {"pedestrian": "PASpersonWalking", "cyclist": "PAScyclist"}
"""Category name -> PennFudan-style label string written to Annotation/*.txt."""

# Objects below these are "negligible": real pixels, but nobody would label them.
MIN_VISIBLE_AREA = 40
MIN_VISIBLE_FRACTION = 0.12
HEAVY_OCCLUSION = 0.5  # visible_fraction below this = heavily occluded

P_ANNOTATE_OCCLUDED = 0.5  # per-image annotator policy for heavily occluded people
P_MISSING = 0.35  # per eligible small, clearly visible pedestrian
P_LOOSE = 0.02
P_CYCLIST_AS_PEDESTRIAN = 0.10
P_PEDESTRIAN_AS_CYCLIST = 0.006


@dataclass
class Annotation:
    """One image's labels: true objects, the written annotation and its mask."""

    objects: list[dict]  # every true person/cyclist, with status and errors
    annotated: list[dict]  # written objects in mask-index order (k = position + 1)
    mask: np.ndarray  # (H, W) uint8 instance mask, 0 = background
    policy_annotate_occluded: bool
    thing_area: np.ndarray  # (n_things,) visible pixels of every scene thing
    thing_boxes: np.ndarray  # (n_things, 4) visible 0-based boxes of every scene thing


def instance_boxes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel areas and tight 0-based boxes (x, y, w, h) of ids 1..n (vectorized).

    Ids with no pixels get area 0 and box (-1, -1, 0, 0).
    """
    ys, xs = np.nonzero(ids)
    lab = ids[ys, xs].astype(np.intp)
    area = np.bincount(lab, minlength=n + 1)[1:n + 1]
    big = np.iinfo(np.int64).max
    x0 = np.full(n + 1, big, np.int64)
    y0 = np.full(n + 1, big, np.int64)
    x1 = np.full(n + 1, -1, np.int64)
    y1 = np.full(n + 1, -1, np.int64)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs)
    np.maximum.at(y1, lab, ys)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)[1:]
    boxes[area == 0] = (-1, -1, 0, 0)
    return area, boxes


def annotate(scene: Scene, rendered: Rendered, rng: np.random.Generator) -> Annotation:
    """Build the true object list and a noisy annotation with recorded errors."""
    n = len(scene.things)
    area, boxes = instance_boxes(rendered.ids, n)
    policy = bool(rng.random() < P_ANNOTATE_OCCLUDED)
    objects: list[dict] = []
    for i, t in enumerate(scene.things):
        if not t.is_person:
            continue
        in_img, total = int(rendered.amodal_in_image[i]), int(rendered.amodal_total[i])
        if in_img == 0:  # entirely outside the frame: not part of this image
            continue
        vis = float(area[i]) / in_img if in_img else 0.0
        x, y, w, h = (int(v) for v in boxes[i])
        obj = {
            "id": len(objects) + 1,
            "label": t.kind,
            "box": [x, y, w, h] if area[i] else None,
            "area": int(area[i]),
            "amodal_area": total,
            "amodal_box": [int(v) for v in rendered.amodal_boxes[i]],
            "visible_fraction": round(vis, 4),
            "in_image_fraction": round(in_img / total, 4) if total else 0.0,
            "height_px": round(float(t.height), 1),
            "depth_order": i,
            "status": "annotated",
            "mask_index": None,
            "annotated_label": None,
            "text_box": None,
            "errors": [],
            "_thing": i + 1,
        }
        # a single draw per object keeps the stream independent of which branch runs
        u = rng.random(3)
        small = h >= 16 and w * h < 48 * 48
        if area[i] < MIN_VISIBLE_AREA or vis < MIN_VISIBLE_FRACTION:
            obj["status"] = "negligible"
        elif t.kind == "pedestrian" and vis < HEAVY_OCCLUSION and not policy:
            obj["status"] = "inconsistent_occluded"
        elif (t.kind == "pedestrian" and small and vis >= 0.8 and obj["in_image_fraction"] >= 0.95
              and u[0] < P_MISSING):
            obj["status"] = "missing"
        else:
            p_swap = P_CYCLIST_AS_PEDESTRIAN if t.kind == "cyclist" else P_PEDESTRIAN_AS_CYCLIST
            if u[1] < p_swap:
                obj["annotated_label"] = "pedestrian" if t.kind == "cyclist" else "cyclist"
                obj["errors"].append("wrong_label")
            else:
                obj["annotated_label"] = t.kind
            if u[2] < P_LOOSE and not obj["errors"]:
                obj["errors"].append("loose_box")
        if obj["status"] in ("missing", "inconsistent_occluded"):
            obj["errors"].append(obj["status"])
        objects.append(obj)

    written = sorted((o for o in objects if o["status"] == "annotated"), key=lambda o: (o["box"][0], o["box"][1]))
    lut = np.zeros(n + 1, np.uint8)
    H, W = rendered.ids.shape
    for k, o in enumerate(written, start=1):
        o["mask_index"] = k
        lut[o["_thing"]] = k
        x, y, w, h = o["box"]
        if "loose_box" in o["errors"]:
            pad = rng.integers(3, 9, size=4)
            x0, y0 = max(x - int(pad[0]), 0), max(y - int(pad[1]), 0)
            x1, y1 = min(x + w - 1 + int(pad[2]), W - 1), min(y + h - 1 + int(pad[3]), H - 1)
            o["text_box"] = [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
        else:
            o["text_box"] = [x, y, w, h]
    for o in objects:
        del o["_thing"]
    return Annotation(objects, written, lut[rendered.ids], policy, area, boxes)
