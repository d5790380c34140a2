"""Real-data oracle: udfs mask kernels vs pycocotools on COCO val2014 (100 images) and PennFudan."""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from udfs import masks as MS
from udfs import rle as R

maskUtils = pytest.importorskip("pycocotools.mask")
pycoco = pytest.importorskip("pycocotools.coco")

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
COCO_DIR = DATASETS / "coco_subset" / "instances_val2014_100"
PENNFUDAN = DATASETS / "PennFudanPed" / "PedMasks"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real dataset not available: {path.resolve()} (needs ../shared/datasets)")
    return path


@pytest.fixture(scope="module")
def coco_gt():
    gt_file = _need(COCO_DIR / "instances_val2014_100.json")
    with contextlib.redirect_stdout(io.StringIO()):
        return pycoco.COCO(str(gt_file))


@pytest.fixture(scope="module")
def fake_segm():
    with open(_need(COCO_DIR / "instances_val2014_fakesegm100_results.json")) as f:
        return json.load(f)


def _ref_counts(rle: dict) -> np.ndarray:
    return R.decompress(rle["counts"])


def test_every_gt_annotation_matches_annToRLE(coco_gt):
    anns = coco_gt.loadAnns(coco_gt.getAnnIds())
    assert len(anns) == 839
    kinds = defaultdict(int)
    for ann in anns:
        img = coco_gt.imgs[ann["image_id"]]
        h, w = img["height"], img["width"]
        segm = ann["segmentation"]
        kinds["polygon" if isinstance(segm, list) else "rle"] += 1
        ref = coco_gt.annToRLE(ann)
        ours = MS.rle_from_coco(segm, h, w)
        assert np.array_equal(ours, _ref_counts(ref)), ann["id"]
        assert MS.area(ours) == int(maskUtils.area(ref)), ann["id"]
        assert np.array_equal(MS.to_bbox(ours, h, w), maskUtils.toBbox(ref)), ann["id"]
        assert MS.compress(ours) == ref["counts"].decode()
    assert kinds == {"polygon": 830, "rle": 9}  # both COCO forms were exercised


def test_batched_conversion_equals_single(coco_gt):
    anns = coco_gt.loadAnns(coco_gt.getAnnIds())
    hs = [coco_gt.imgs[a["image_id"]]["height"] for a in anns]
    ws = [coco_gt.imgs[a["image_id"]]["width"] for a in anns]
    values, offsets = MS.rles_from_coco_many([a["segmentation"] for a in anns], hs, ws)
    areas = R.area_flat(values, offsets)
    boxes = R.to_bbox_flat(values, offsets, np.array(hs), np.array(ws))
    for i, ann in enumerate(anns):
        ref = coco_gt.annToRLE(ann)
        assert np.array_equal(values[offsets[i] : offsets[i + 1]], _ref_counts(ref))
        assert areas[i] == int(maskUtils.area(ref))
        assert np.array_equal(boxes[i], maskUtils.toBbox(ref))


def test_fake_segm_results_area_and_iou_per_image(coco_gt, fake_segm):
    by_img = defaultdict(list)
    for d in fake_segm:
        by_img[d["image_id"]].append(d)
    pair_dt, pair_gt, pair_crowd, pair_ref = [], [], [], []
    n_nonzero = 0
    for img_id, dts in by_img.items():
        img = coco_gt.imgs[img_id]
        h, w = img["height"], img["width"]
        gts = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[img_id]))
        dt_ours = [MS.rle_from_coco(d["segmentation"], h, w) for d in dts]
        for d, c in zip(dts, dt_ours):
            assert MS.area(c) == int(maskUtils.area(d["segmentation"]))
        if not gts:
            continue
        gt_ref = [coco_gt.annToRLE(g) for g in gts]
        gt_ours = [MS.rle_from_coco(g["segmentation"], h, w) for g in gts]
        crowd = [int(g["iscrowd"]) for g in gts]
        ref = np.asarray(maskUtils.iou([d["segmentation"] for d in dts], gt_ref, crowd))
        ours = MS.iou(dt_ours, gt_ours, crowd)
        assert ours.shape == ref.shape
        assert np.array_equal(ours, ref), img_id
        n_nonzero += int((ref > 0).sum())
        for i, dc in enumerate(dt_ours):
            for j, gc in enumerate(gt_ours):
                pair_dt.append(dc)
                pair_gt.append(gc)
                pair_crowd.append(crowd[j])
                pair_ref.append(ref[i, j])
    assert n_nonzero > 100  # the comparison is not vacuous
    # the vectorized aligned-pair form over all images at once
    dv, do = R.to_flat(pair_dt)
    gv, go = R.to_flat(pair_gt)
    idx = np.arange(len(pair_dt))
    flat = R.iou_pairs_flat(dv, do, idx, gv, go, idx, np.array(pair_crowd, bool))
    assert np.array_equal(flat, np.array(pair_ref))


def test_pennfudan_instances_roundtrip_and_match_pycocotools():
    from PIL import Image

    files = sorted(_need(PENNFUDAN).glob("*.png"))
    assert len(files) == 170
    n = 0
    for f in files:
        arr = np.array(Image.open(f))
        h, w = arr.shape
        ids = np.unique(arr)
        ids = ids[ids > 0]
        stack = np.stack([arr == k for k in ids])
        values, offsets = R.encode_many(stack)
        ref = maskUtils.encode(np.asfortranarray(stack.transpose(1, 2, 0).astype(np.uint8)))
        for i, m in enumerate(stack):
            counts = values[offsets[i] : offsets[i + 1]]
            assert np.array_equal(R.decode(counts, h, w), m)
            assert np.array_equal(R.decompress(R.compress(counts)), counts)
            assert R.compress(counts) == ref[i]["counts"].decode()
            assert R.area(counts) == int(m.sum())
            assert np.array_equal(R.to_bbox(counts, h, w), maskUtils.toBbox(ref[i]))
            n += 1
    assert n > 400  # PennFudan has 423 pedestrians
