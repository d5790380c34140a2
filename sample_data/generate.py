"""Dataset generation: scene -> pixels -> labels -> files, one seeded stream per image."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .labels import PF_LABELS, annotate
from .pennfudan import SUBDIRS, annotation_text, write_item
from .render import render
from .scene import sample_scene

NAME_PREFIX = "SynthPed"
ERROR_REASONS = ("missing", "inconsistent_occluded", "loose_box", "wrong_label")


@dataclass(frozen=True)
class SampleInfo:
    """What :func:`generate` wrote and a summary of it."""

    out_dir: Path
    n_images: int
    seed: int
    reference_ids: tuple[str, ...]
    summary: dict = field(default_factory=dict)

    @property
    def images_dir(self) -> Path:
        return self.out_dir / "PNGImages"

    @property
    def masks_dir(self) -> Path:
        return self.out_dir / "PedMasks"

    @property
    def annotations_dir(self) -> Path:
        return self.out_dir / "Annotation"

    @property
    def metadata_path(self) -> Path:
        return self.out_dir / "metadata.json"

    @property
    def truth_path(self) -> Path:
        return self.out_dir / "truth.json"

    @property
    def predictions_path(self) -> Path:
        return self.out_dir / "predictions.json"


def image_name(i: int) -> str:
    """Reference id of the i-th (0-based) image, e.g. ``SynthPed00001``."""
    return f"{NAME_PREFIX}{i + 1:05d}"


def _rngs(seed: int, i: int) -> list[np.random.Generator]:
    """Independent generators (layout, texture, labels) for image ``i``.

    Keyed by (seed, i) so image i is the same whatever ``n_images`` is.
    """
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i, j))) for j in range(3)]


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def _prepare(out: Path) -> None:
    """Create the layout and drop files a previous (larger) run may have left."""
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in (out / sub).glob(f"{NAME_PREFIX}*"):
            f.unlink()
    for f in ("metadata.json", "truth.json", "predictions.json"):
        (out / f).unlink(missing_ok=True)


def _image_records(name: str, objects: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Errors, loose-box cases and corrections for one image."""
    errors, loose, fixes = [], [], []
    for o in objects:
        for reason in o["errors"]:
            err = {"reference_id": name, "reason": reason, "object_id": o["id"], "label": o["label"],
                   "box": o["box"], "mask_index": o["mask_index"]}
            if reason in ("missing", "inconsistent_occluded"):
                fixes.append({"action": "add", "reference_id": name, "box": o["box"], "label": o["label"],
                              "pf_label": PF_LABELS[o["label"]], "reason": reason, "object_id": o["id"]})
            elif reason == "wrong_label":
                err["annotated_label"] = o["annotated_label"]
                fixes.append({"action": "relabel", "reference_id": name, "mask_index": o["mask_index"],
                              "box": o["box"], "from_label": o["annotated_label"], "label": o["label"],
                              "pf_label": PF_LABELS[o["label"]], "reason": reason, "object_id": o["id"]})
            elif reason == "loose_box":
                err["text_box"] = o["text_box"]
                x, y, w, h = o["text_box"]
                loose.append({"reference_id": name, "mask_index": o["mask_index"], "object_id": o["id"],
                              "mask_box": o["box"], "text_box": o["text_box"],
                              "text_corners": [x + 1, y + 1, x + w, y + h]})
                fixes.append({"action": "set_box", "reference_id": name, "mask_index": o["mask_index"],
                              "box": o["box"], "from_box": o["text_box"], "label": o["label"],
                              "reason": reason, "object_id": o["id"]})
            errors.append(err)
    return errors, loose, fixes


def generate(out_dir: str | Path, n_images: int = 200, seed: int = 0,
             progress: Callable[[int, int], None] | None = None) -> SampleInfo:
    """Render a PennFudan-format synthetic street dataset with known label errors.

    Args:
        out_dir: destination; ``PNGImages/``, ``PedMasks/``, ``Annotation/``,
            ``metadata.json`` and ``truth.json`` are (re)written there.
        n_images: number of images.
        seed: same seed -> byte-identical files.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        A :class:`SampleInfo` with paths and summary counts.
    """
    out = Path(out_dir)
    _prepare(out)
    metadata: dict[str, dict] = {}
    images: dict[str, dict] = {}
    errors: list[dict] = []
    loose: list[dict] = []
    fixes: list[dict] = []
    names = []
    for i in range(n_images):
        name = image_name(i)
        names.append(name)
        r_scene, r_pix, r_lab = _rngs(seed, i)
        scene = sample_scene(r_scene)
        pix = render(scene, r_pix)
        ann = annotate(scene, pix, r_lab)
        text = annotation_text(name, scene.width, scene.height,
                               [(PF_LABELS[o["annotated_label"]], o["text_box"]) for o in ann.annotated])
        write_item(out, name, pix.rgb, ann.mask, text)
        c = scene.conditions
        metadata[name] = {"camera": c.camera, "time_of_day": c.time_of_day, "weather": c.weather,
                          "scene": c.scene, "crowd": len(ann.objects)}
        occ = [j for j, t in enumerate(scene.things) if not t.is_person and ann.thing_area[j]]
        images[name] = {
            "width": scene.width, "height": scene.height, "horizon": scene.horizon,
            "policy_annotate_occluded": ann.policy_annotate_occluded,
            "objects": ann.objects,
            "occluders": [{"kind": scene.things[j].kind, "box": [int(v) for v in ann.thing_boxes[j]]}
                          for j in occ],
        }
        e, lb, fx = _image_records(name, ann.objects)
        errors += e
        loose += lb
        fixes += fx
        if progress is not None:
            progress(i + 1, n_images)
    summary = _summary(metadata, images, errors)
    truth = {"version": 1, "seed": seed, "n_images": n_images,
             "label_map": {v: k for k, v in PF_LABELS.items()},
             "images": images, "errors": errors, "loose_boxes": loose, "corrections": fixes,
             "summary": summary}
    _dump(out / "metadata.json", metadata)
    _dump(out / "truth.json", truth)
    return SampleInfo(out, n_images, seed, tuple(names), summary)


def _summary(metadata: dict, images: dict, errors: list[dict]) -> dict:
    objs = [o for im in images.values() for o in im["objects"]]
    ann = [o for o in objs if o["status"] == "annotated"]
    return {
        "images": len(images),
        "objects": len(objs),
        "objects_per_label": dict(sorted(Counter(o["label"] for o in objs).items())),
        "annotated": len(ann),
        "annotated_per_label": dict(sorted(Counter(o["annotated_label"] for o in ann).items())),
        "negligible": sum(o["status"] == "negligible" for o in objs),
        "errors": {r: sum(e["reason"] == r for e in errors) for r in ERROR_REASONS},
        "crowded_images": sum(m["crowd"] >= 5 for m in metadata.values()),
        "empty_images": sum(m["crowd"] == 0 for m in metadata.values()),
        "small_objects": sum(o["area"] < 32 * 32 for o in objs if o["status"] != "negligible"),
    }
