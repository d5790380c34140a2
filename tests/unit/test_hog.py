"""OpenCV HOG people detector: post-processing, confidences, local files, runs and `loupe predict hog`.

Needs the optional extra (``pip install 'loupe[hog]'``); the real-image tests also need
../shared/datasets/PennFudanPed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import REPO, shared_path

from engine.detectors.hog import (HogParams, detect_image, hog_predictions, local_path, require_cv2, run_hog,
                                  squash)
from engine.errors import LoupeError

try:
    import cv2
except ModuleNotFoundError:
    cv2 = None
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="OpenCV is not installed (optional extra: pip install 'loupe[hog]')")

IMAGES = ("FudanPed00001", "FudanPed00004", "PennPed00001")  # clear, upright pedestrians


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """n x m IoU of x, y, w, h boxes (independent of the engine's kernels)."""
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = iw * ih
    return inter / (a[:, None, 2] * a[:, None, 3] + b[:, 2] * b[:, 3] - inter)


@pytest.fixture(scope="module")
def pennfudan_subset(tmp_path_factory):
    """A PennFudan-layout folder of symlinks to three real images (with masks and annotations)."""
    root = shared_path("PennFudanPed")
    sub = tmp_path_factory.mktemp("pf3")
    for d, suffix in (("PNGImages", ".png"), ("PedMasks", "_mask.png"), ("Annotation", ".txt")):
        (sub / d).mkdir()
        for n in IMAGES:
            os.symlink((root / d / f"{n}{suffix}").resolve(), sub / d / f"{n}{suffix}")
    return sub


class _FakeHog:
    """Stands in for cv2.HOGDescriptor: fixed windows, some reaching outside the image."""

    def __init__(self, rects, weights):
        self.rects, self.weights = np.asarray(rects), np.asarray(weights)

    def detectMultiScale(self, img, **kw):  # noqa: N802 - OpenCV's name
        return self.rects, self.weights


def test_squash_is_monotone_and_inside_unit_interval():
    w = np.array([-50.0, -3.0, -0.5, 0.0, 0.7, 2.0, 5.0, 50.0])
    c = squash(w)
    assert np.all((c > 0) & (c < 1))
    assert np.all(np.diff(c) > 0)
    assert c[3] == pytest.approx(0.5)
    assert c[5] == pytest.approx(1 / (1 + np.exp(-2.0)))


@needs_cv2
def test_boxes_are_trimmed_clipped_and_sorted():
    img = np.zeros((100, 200, 3), np.uint8)
    fake = _FakeHog([[-20, -10, 64, 128], [150, 50, 64, 128], [10, 10, 64, 128], [300, 0, 64, 128]],
                    [0.5, 2.0, 1.0, 3.0])
    boxes, weights = detect_image(img, HogParams(trim=(0.25, 0.125)), hog=fake)
    # the window entirely right of the image is dropped; the rest are inside the image
    assert len(boxes) == 3
    assert list(weights) == [2.0, 1.0, 0.5]
    x, y, w, h = boxes.T
    assert np.all(x >= 0) and np.all(y >= 0) and np.all(x + w <= 200) and np.all(y + h <= 100)
    # the window at (10, 10): trimmed by 16 px left/right and 16 px top, bottom clipped at 100
    np.testing.assert_allclose(boxes[1], [26, 26, 32, 74])
    # the window at (-20, -10): trimmed to x in [-4, 28] -> clipped to [0, 28]
    np.testing.assert_allclose(boxes[2], [0, 6, 28, 94])


@needs_cv2
def test_blank_image_has_no_people():
    boxes, weights = detect_image(np.full((256, 192, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and weights.shape == (0,)


def test_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails as if not installed
    with pytest.raises(LoupeError, match=r"pip install 'loupe\[hog\]'"):
        require_cv2()


def test_local_path_only_for_local_files(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    assert local_path(str(f)) == f
    assert local_path(f.as_uri()) == f
    assert local_path("https://example.org/a.png") is None
    assert local_path(str(tmp_path / "missing.png")) is None
    assert local_path(None) is None


@needs_cv2
def test_real_images_boxes_inside_and_people_found():
    root = shared_path("PennFudanPed")
    import engine

    ws = engine.connect()
    ws.import_pennfudan(root, dataset="pf")
    gt = ws.get_dataset("pf").annotations().to_pylist()
    for name in IMAGES:
        img = cv2.imread(str(root / "PNGImages" / f"{name}.png"))
        boxes, weights = detect_image(img)
        h, w = img.shape[:2]
        assert len(boxes) >= 1
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
        assert np.all(boxes[:, 0] + boxes[:, 2] <= w) and np.all(boxes[:, 1] + boxes[:, 3] <= h)
        assert np.all((squash(weights) > 0) & (squash(weights) < 1))
        g = np.array([[r["x"], r["y"], r["width"], r["height"]] for r in gt if r["reference_id"] == name])
        assert _iou(boxes, g).max() >= 0.5, f"no detection matches a pedestrian of {name}"


@needs_cv2
def test_hog_predictions_table_skips_non_local_and_unreadable(pennfudan_subset, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    items = pa.table({
        "reference_id": [*IMAGES, "remote", "broken"],
        "image_location": [str(pennfudan_subset / "PNGImages" / f"{n}.png") for n in IMAGES]
        + ["https://example.org/x.png", str(bad)],
    })
    table, summary = hog_predictions(items, workers=2)
    assert summary["images"] == 3 and summary["skipped"] == 1 and summary["unreadable"] == 1
    assert summary["predictions"] == table.num_rows > 0
    assert set(table.column("reference_id").to_pylist()) <= set(IMAGES)
    assert set(table.column("label").to_pylist()) == {"pedestrian"}
    conf = np.asarray(table.column("confidence"))
    assert np.all((conf > 0) & (conf < 1))
    raw = np.array([json.loads(m)["svm_weight"] for m in table.column("metadata").to_pylist()])
    np.testing.assert_allclose(conf, squash(raw), atol=1e-6)


@needs_cv2
def test_run_hog_stores_a_committable_run(pennfudan_subset):
    import engine

    ws = engine.connect()
    ws.import_pennfudan(pennfudan_subset, dataset="pf3")
    ds = ws.get_dataset("pf3")
    run, summary = run_hog(ds, "hog")
    sizes = {r["reference_id"]: (r["width"], r["height"]) for r in ds.items().to_pylist()}
    preds = run.predictions().to_pylist()
    assert len(preds) == summary["predictions"] > 0
    for p in preds:
        w, h = sizes[p["reference_id"]]
        assert 0 <= p["x"] and 0 <= p["y"] and p["x"] + p["width"] <= w and p["y"] + p["height"] <= h
    c = run.commit()
    assert c["tp"] >= len(IMAGES)  # every image has at least one person found (see the test above)
    meta = json.loads(ws.sql("SELECT metadata::VARCHAR AS m FROM runs WHERE name = 'hog'").column("m")[0].as_py())
    assert meta["opencv"] == cv2.__version__ and meta["confidence"] == "logistic(svm_weight)"


@needs_cv2
def test_cli_predict_hog_imports_then_runs(pennfudan_subset, tmp_path):
    db = tmp_path / "w.duckdb"

    def loupe(*args):
        return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    p = loupe("predict", "hog", pennfudan_subset, "--db", db, "--dataset", "pf", "--run", "hog", "--commit",
              "--format", "json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["imported"]["items"] == 3 and out["images"] == 3 and out["predictions"] > 0
    assert out["tp"] + out["fn"] == out["imported"]["annotations"]
    assert 0 < out["stats"]["AP50"] <= 1
    # the dataset exists now: a second run reuses it; a duplicate run name is one error line
    p = loupe("predict", "hog", pennfudan_subset, "--db", db, "--dataset", "pf", "--run", "hog2", "--limit", "1")
    assert p.returncode == 0, p.stderr
    assert "imported" not in p.stdout and "on 1 images" in p.stdout
    p = loupe("predict", "hog", pennfudan_subset, "--db", db, "--dataset", "pf", "--run", "hog")
    assert p.returncode == 1 and "already exists" in p.stderr
