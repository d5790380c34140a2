"""A simulated pedestrian/cyclist detector driven by the TRUE object list.

It never looks at the (noisy) annotation, so objects the annotator skipped are
still found — exactly what a label-error finder should surface. Error model:

* recall rises with pixel height and visible fraction, and drops at night, in
  rain and on the softer rear camera;
* localization noise proportional to box size; occluded objects drift towards
  their full (amodal) extent; a few boxes are badly off;
* cyclists are often reported as "pedestrian" with moderately high scores;
* a few duplicate detections, low-score background boxes and pole false alarms;
* scores follow the detection probability (bigger / more visible -> higher).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from .scene import PERSPECTIVE

_COND = {"night": 0.8, "dusk": 0.93, "rain": 0.9, "rear": 0.9}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _jitter(rng: np.random.Generator, boxes: np.ndarray, rel: float) -> np.ndarray:
    """Move centres by N(0, rel*size) and scale sizes by exp(N(0, 1.5*rel))."""
    w, h = boxes[:, 2], boxes[:, 3]
    cx = boxes[:, 0] + w / 2 + rng.normal(0, rel, len(boxes)) * w
    cy = boxes[:, 1] + h / 2 + rng.normal(0, rel, len(boxes)) * h
    w2 = w * np.exp(rng.normal(0, 1.5 * rel, len(boxes)))
    h2 = h * np.exp(rng.normal(0, 1.5 * rel, len(boxes)))
    return np.stack([cx - w2 / 2, cy - h2 / 2, w2, h2], axis=1)


def _detect_image(rng: np.random.Generator, im: dict, meta: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (n, 4), scores (n,) and labels (n,) for one image (unclipped)."""
    objs = [o for o in im["objects"] if o["box"] is not None]
    n = len(objs)
    vis_box = np.asarray([o["box"] for o in objs], float).reshape(n, 4)
    amo_box = np.asarray([o["amodal_box"] for o in objs], float).reshape(n, 4)
    vis = np.asarray([o["visible_fraction"] for o in objs], float)
    cyc = np.asarray([o["label"] == "cyclist" for o in objs], bool)
    q = np.prod([_COND.get(meta[k], 1.0) for k in ("time_of_day", "weather", "camera")])

    height = np.maximum(vis_box[:, 3], 1.0)
    p_det = np.clip(_sigmoid(1.6 * np.log(height / 14.0)) * vis ** 0.8 * q, 0.01, 0.97)
    found = rng.random(n) < p_det
    score = _sigmoid(_logit(p_det) + 0.8 + rng.normal(0, 0.5, n))

    # occluded people: predicted extent drifts toward the full silhouette
    t = rng.uniform(0.0, 0.7, n)[:, None] * (vis < 0.9)[:, None]
    target = vis_box + t * (amo_box - vis_box)
    box = _jitter(rng, target, 0.04)
    bad = rng.random(n) < 0.05 + 0.15 * (1 - vis)
    shift = rng.uniform(0.35, 0.7, n) * rng.choice([-1.0, 1.0], n)
    grow = rng.choice([0.5, 1.8], n)
    box[bad, 0] += shift[bad] * box[bad, 2]
    box[bad, 2:] *= grow[bad, None]
    score[bad] *= 0.75

    label = np.where(cyc, "cyclist", "pedestrian").astype(object)
    as_ped = cyc & (rng.random(n) < 0.4)  # cyclist reported as pedestrian
    label[as_ped] = "pedestrian"
    score[as_ped] = rng.uniform(0.45, 0.8, n)[as_ped]
    both = as_ped & (rng.random(n) < 0.3)  # ...sometimes in addition to the cyclist box
    ped_as_cyc = ~cyc & (rng.random(n) < 0.02)
    label[ped_as_cyc] = "cyclist"

    boxes = [box[found], _jitter(rng, vis_box[found & both], 0.04)]
    scores = [score[found], _sigmoid(_logit(p_det[found & both]) + rng.normal(0, 0.5, (found & both).sum()))]
    labels = [label[found], np.full((found & both).sum(), "cyclist", object)]

    dup = found & (rng.random(n) < 0.04)
    boxes.append(_jitter(rng, box[dup], 0.1))
    scores.append(score[dup] * rng.uniform(0.3, 0.7, dup.sum()))
    labels.append(label[dup])

    # background false positives: person-shaped boxes standing on the ground plane
    W, H, hz = im["width"], im["height"], im["horizon"]
    n_bg = rng.poisson(0.5 + 0.4 * (meta["time_of_day"] == "night"))
    gy = rng.uniform(hz + 20, H, n_bg)
    bh = PERSPECTIVE * (gy - hz) * rng.uniform(0.8, 1.1, n_bg)
    bw = bh * rng.uniform(0.3, 0.5, n_bg)
    boxes.append(np.stack([rng.uniform(0, W, n_bg) - bw / 2, gy - bh, bw, bh], axis=1))
    scores.append(rng.beta(1.2, 6.0, n_bg))
    labels.append(np.full(n_bg, "pedestrian", object))

    # thin vertical structures look like people to a weak detector
    poles = np.asarray([o["box"] for o in im["occluders"] if o["kind"] in ("pole", "bollard")], float).reshape(-1, 4)
    poles = poles[rng.random(len(poles)) < 0.3]
    ph = np.minimum(poles[:, 3], 0.6 * H)
    pw = np.maximum(poles[:, 2] * 2.5, ph * 0.3)
    boxes.append(np.stack([poles[:, 0] + poles[:, 2] / 2 - pw / 2, poles[:, 1] + poles[:, 3] - ph, pw, ph], axis=1))
    scores.append(rng.uniform(0.2, 0.55, len(poles)))
    labels.append(np.full(len(poles), "pedestrian", object))

    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)


def _clip(boxes: np.ndarray, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip x, y, w, h boxes to the image with corners rounded to 0.01 px; also
    return which keep a >= 1 px extent."""
    x0 = np.round(np.clip(boxes[:, 0], 0, W), 2)
    y0 = np.round(np.clip(boxes[:, 1], 0, H), 2)
    x1 = np.round(np.clip(boxes[:, 0] + boxes[:, 2], 0, W), 2)
    y1 = np.round(np.clip(boxes[:, 1] + boxes[:, 3], 0, H), 2)
    out = np.stack([x0, y0, np.round(x1 - x0, 2), np.round(y1 - y0, 2)], axis=1)
    return out, (out[:, 2] >= 1) & (out[:, 3] >= 1)


def detect(out_dir: str | Path, seed: int = 1) -> list[dict]:
    """Simulate detector output for a dataset written by :func:`generate`.

    Reads ``truth.json`` and ``metadata.json``, writes ``predictions.json`` and
    returns the same list: ``{"reference_id", "label": "pedestrian"|"cyclist",
    "bbox": [x, y, w, h] (0-based float pixels, inside the image), "score": (0, 1]}``,
    sorted by reference_id then descending score.
    """
    out = Path(out_dir)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    preds: list[dict] = []
    for name in sorted(truth["images"]):
        im = truth["images"][name]
        # keyed by name so an image's predictions do not depend on the dataset size
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),)))
        boxes, scores, labels = _detect_image(rng, im, meta[name])
        boxes, ok = _clip(boxes, im["width"], im["height"])
        scores = np.clip(np.round(scores, 4), 0.0001, 1.0)
        order = np.lexsort((np.arange(len(scores)), -scores))
        for j in order[ok[order]]:
            preds.append({"reference_id": name, "label": str(labels[j]),
                          "bbox": [float(v) for v in boxes[j]], "score": float(scores[j])})
    body = ",\n".join(json.dumps(p, sort_keys=True) for p in preds)  # one prediction per line
    (out / "predictions.json").write_text(f"[\n{body}\n]\n" if preds else "[]\n", encoding="utf-8")
    return preds
