"""An unlabeled pool beside a generated sample dataset: the scenario's "more street images, nobody has
labeled them yet" (the role WiderPerson plays in the walk-through).

``generate_pool(labeled_dir)`` writes ``labeled_dir/pool/`` (same seed -> byte-identical files):

``PNGImages/SynthPoolNNNNN.png|.jpg``  generated street scenes (no annotation) and planted
                                      near-duplicates of labeled images, ids in a seeded shuffled order.
``metadata.json``  ``{reference_id: {"camera", "time_of_day", "weather", "scene"}}`` — capture
                   conditions only: nobody has counted the people in an unlabeled image.
``truth.json``     what is really there (``images`` in the labeled truth's schema, so
                   :func:`sample_data.detect` can run the simulated detector over the pool) and
``pool``: ``{reference_id: {"kind": "generated"|"duplicate", "crowd": true people in the frame,
    "crowded": crowd >= CROWDED, "source": labeled reference id | None, "transform": ... | None,
    "source_split": "train"|"test"|None}}``,
``duplicates``: ``[{"reference_id", "source", "transform", "source_split"}]``,
``crowded``: sorted ids of the crowded pool images, ``summary``: counts.

Generated scenes are crowded (``CROWD_PEOPLE`` people placed) with probability ``P_CROWDED``, otherwise
hold at most 3 people, so "crowded" is a known, fairly rare subset. Each near-duplicate takes one labeled
image through one of ``TRANSFORMS``: JPEG re-encoding, a half-size resize, an off-centre crop to 85 %,
brightening by 35 %, or a left-right mirror. With ``test_ids`` (the labeled test split), half the
sources are test images, so a leak check between the test slice and the pool has planted answers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageEnhance

from .labels import annotate
from .render import render
from .scene import sample_scene

POOL_PREFIX = "SynthPool"
TRANSFORMS = ("reencode", "resize", "crop", "brighten", "mirror")
CROWDED = 5  # true people in the frame for an image to count as crowded (truth.json's crowded_images)
P_CROWDED = 0.2
CROWD_PEOPLE = (7, 13)  # people placed in a crowded scene: integers in [7, 13)
SPARSE_PEOPLE = (0, 4)
CROP_KEEP = 0.85
RESIZE = 0.5
BRIGHTEN = 1.35
JPEG_QUALITY = 40


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7919, *key)))


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def _scene_record(scene, ann) -> dict:
    """The detector-facing record of one rendered scene (the labeled truth's ``images`` schema)."""
    occ = [j for j, t in enumerate(scene.things) if not t.is_person and ann.thing_area[j]]
    return {"width": scene.width, "height": scene.height, "horizon": scene.horizon, "objects": ann.objects,
            "occluders": [{"kind": scene.things[j].kind, "box": [int(v) for v in ann.thing_boxes[j]]} for j in occ]}


def _map_box(box: list | None, f: Callable[[np.ndarray], np.ndarray], W: int, H: int) -> list[int] | None:
    """A 0-based x, y, w, h box through a coordinate map, clipped to the new W x H (None if gone)."""
    if box is None:
        return None
    x, y, w, h = box
    xs, ys = f(np.array([[x, y], [x + w, y + h]], float)).T
    x0, x1 = np.clip(np.sort(xs), 0, W)
    y0, y1 = np.clip(np.sort(ys), 0, H)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return [int(round(x0)), int(round(y0)), max(int(round(x1 - x0)), 1), max(int(round(y1 - y0)), 1)]


def _duplicate(im: Image.Image, rec: dict, transform: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """The transformed image and its record with boxes moved the same way."""
    W, H = im.size
    f: Callable[[np.ndarray], np.ndarray] = lambda p: p  # noqa: E731
    if transform == "resize":
        out = im.resize((round(W * RESIZE), round(H * RESIZE)), Image.Resampling.BILINEAR)
        f = lambda p: p * RESIZE  # noqa: E731
    elif transform == "crop":
        cw, ch = round(W * CROP_KEEP), round(H * CROP_KEEP)
        x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
        out = im.crop((x0, y0, x0 + cw, y0 + ch))
        f = lambda p: p - np.array([x0, y0])  # noqa: E731
    elif transform == "mirror":
        out = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        f = lambda p: np.stack([W - p[:, 0], p[:, 1]], axis=1)  # noqa: E731
    elif transform == "brighten":
        out = ImageEnhance.Brightness(im).enhance(BRIGHTEN)
    else:  # reencode: the pixels change only through the JPEG written later
        out = im.copy()
    w2, h2 = out.size
    objects = []
    for o in rec["objects"]:
        box = _map_box(o["box"], f, w2, h2)
        if box is not None:
            objects.append({**o, "box": box, "amodal_box": _map_box(o["amodal_box"], f, w2, h2) or box})
    occluders = [{"kind": o["kind"], "box": b} for o in rec["occluders"]
                 if (b := _map_box(o["box"], f, w2, h2)) is not None]
    horizon = float(f(np.array([[0.0, rec["horizon"]]]))[0, 1])
    return out, {"width": w2, "height": h2, "horizon": int(round(horizon)), "objects": objects, "occluders": occluders}


def generate_pool(labeled_dir: str | Path, n_generated: int = 300, n_duplicates: int | None = None,
                  seed: int = 0, test_ids: Iterable[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the unlabeled pool under ``labeled_dir/pool`` and return that folder.

    Args:
        labeled_dir: a folder written by :func:`sample_data.generate` (its images are duplicated).
        n_generated: new street scenes, about ``P_CROWDED`` of them crowded.
        n_duplicates: planted near-duplicates of labeled images (default: a tenth of the labeled
            images, at least one per transform, at most all of them).
        seed: same seed -> byte-identical files.
        test_ids: the labeled test split; half the duplicated sources are drawn from it.
        progress: called as ``progress(done, total)``.
    """
    src = Path(labeled_dir)
    labeled = json.loads((src / "truth.json").read_text(encoding="utf-8"))
    meta_l = json.loads((src / "metadata.json").read_text(encoding="utf-8"))
    names = sorted(labeled["images"])
    if n_duplicates is None:
        n_duplicates = min(len(names), max(len(TRANSFORMS), round(0.1 * len(names))))
    if n_duplicates > len(names):
        raise ValueError(f"n_duplicates {n_duplicates} > {len(names)} labeled images")
    out = src / "pool"
    (out / "PNGImages").mkdir(parents=True, exist_ok=True)
    for f in (out / "PNGImages").glob(f"{POOL_PREFIX}*"):
        f.unlink()
    test = sorted(set(test_ids or ()) & set(names))
    rng = _rng(seed, 0)
    if test:  # half the sources from the test split, half from the rest
        train = sorted(set(names) - set(test))
        n_test = min(len(test), (n_duplicates + 1) // 2)
        sources = list(rng.choice(test, n_test, replace=False)) + list(
            rng.choice(train, n_duplicates - n_test, replace=False))
    else:
        sources = list(rng.choice(names, n_duplicates, replace=False))
    total = n_generated + n_duplicates
    ids = [f"{POOL_PREFIX}{i + 1:05d}" for i in rng.permutation(total)]
    images, pool, meta, dups = {}, {}, {}, []
    test_set = set(test)
    for i in range(total):
        ref = ids[i]
        if i < n_generated:
            r_scene, r_pix, r_lab, r_n = (_rng(seed, 1, i, j) for j in range(4))
            crowded = bool(r_n.random() < P_CROWDED)
            n = int(r_n.integers(*(CROWD_PEOPLE if crowded else SPARSE_PEOPLE)))
            scene = sample_scene(r_scene, n_people=n)
            pix = render(scene, r_pix)
            rec = _scene_record(scene, annotate(scene, pix, r_lab))
            Image.fromarray(pix.rgb).save(out / "PNGImages" / f"{ref}.png", compress_level=1)
            c = scene.conditions
            meta[ref] = {"camera": c.camera, "time_of_day": c.time_of_day, "weather": c.weather, "scene": c.scene}
            entry = {"kind": "generated", "source": None, "transform": None, "source_split": None}
        else:
            j = i - n_generated
            source = str(sources[j])
            transform = TRANSFORMS[j % len(TRANSFORMS)]
            with Image.open(src / "PNGImages" / f"{source}.png") as im:
                img, rec = _duplicate(im.convert("RGB"), labeled["images"][source], transform, _rng(seed, 2, j))
            if transform == "reencode":
                img.save(out / "PNGImages" / f"{ref}.jpg", quality=JPEG_QUALITY)
            else:
                img.save(out / "PNGImages" / f"{ref}.png", compress_level=1)
            meta[ref] = {k: meta_l[source][k] for k in ("camera", "time_of_day", "weather", "scene")}
            split = ("test" if source in test_set else "train") if test else None
            entry = {"kind": "duplicate", "source": source, "transform": transform, "source_split": split}
            dups.append({"reference_id": ref, "source": source, "transform": transform, "source_split": split})
        crowd = len(rec["objects"])
        images[ref] = rec
        pool[ref] = {**entry, "crowd": crowd, "crowded": crowd >= CROWDED}
        if progress is not None:
            progress(i + 1, total)
    crowded = sorted(r for r, p in pool.items() if p["crowded"])
    summary = {"images": total, "generated": n_generated, "duplicates": n_duplicates, "crowded": len(crowded),
               "crowded_generated": sum(pool[r]["kind"] == "generated" for r in crowded),
               "duplicates_of_test": sum(d["source_split"] == "test" for d in dups)}
    truth = {"version": 1, "seed": seed, "crowded_threshold": CROWDED, "labeled_dir": src.name,
             "images": images, "pool": pool, "duplicates": sorted(dups, key=lambda d: d["reference_id"]),
             "crowded": crowded, "summary": summary}
    _dump(out / "metadata.json", meta)
    _dump(out / "truth.json", truth)
    return out
