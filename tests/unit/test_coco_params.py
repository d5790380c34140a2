"""COCO evaluation parameters are validated where they enter the kernel (issue 13, C12), by the same
rules as the public API (engine.metrics.params): a ValidationError naming the public field, not a numpy error deep in the kernel (an empty area-range list raised
"need at least one array to stack")."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ValidationError
from engine.metrics.cocoeval import CocoParams, DtArrays, GtArrays, PairArrays, evaluate, summarize
from engine.metrics.params import validate_params


def _tiny():
    gt = GtArrays(img=np.array([0]), cat=np.array([0]), area=np.array([100.0]), iscrowd=np.array([False]),
                  n_images=1, n_categories=1)
    dt = DtArrays(img=np.array([0]), cat=np.array([0]), score=np.array([0.9]), area=np.array([100.0]))
    return gt, dt, PairArrays(dt=np.array([0]), gt=np.array([0]), iou=np.array([0.8]))


@pytest.mark.parametrize("kw,field", [
    (dict(area_rng=(), area_lbl=()), "area_ranges"),
    (dict(area_rng=((10.0, 5.0),), area_lbl=("all",)), "area_ranges"),
    (dict(area_rng=((0.0, float("nan")),), area_lbl=("all",)), "area_ranges"),
    (dict(area_rng=((0.0, 1e10),), area_lbl=("all", "small")), "area_ranges"),
    (dict(area_rng=((0.0, 1e10), (0.0, 5.0)), area_lbl=("all", "all")), "area_ranges"),
    (dict(max_dets=()), "max_dets"),
    (dict(max_dets=(100,)), "max_dets"),
    (dict(max_dets=(0, 10, 100)), "max_dets"),
    (dict(max_dets=(1.5, 10, 100)), "max_dets"),
    (dict(iou_thrs=()), "iou_thresholds"),
    (dict(iou_thrs=(0.0, 0.5)), "iou_thresholds"),
    (dict(iou_thrs=(0.5, 1.5)), "iou_thresholds"),
    (dict(iou_thrs=("a",)), "iou_thresholds"),
    (dict(rec_thrs=()), "recall_thresholds"),
    (dict(rec_thrs=(0.5, 2.0)), "recall_thresholds"),
])
def test_bad_params_are_refused_naming_the_field(kw, field):
    gt, dt, pairs = _tiny()
    with pytest.raises(ValidationError, match=f"field '{field}'"):
        evaluate(gt, dt, pairs, CocoParams(**kw))
    with pytest.raises(ValidationError, match=f"field '{field}'"):
        summarize(np.zeros((1, 1, 1, 1, 3)), np.zeros((1, 1, 1, 3)), CocoParams(**kw))


def test_valid_custom_params_pass():
    p = CocoParams(iou_thrs=(0.5, 1.0), rec_thrs=(0.0, 1.0), max_dets=(np.int64(1), 5, 100),
                   area_rng=((0.0, 1e10), (50.0, 50.0)), area_lbl=("all", "exact"))
    assert validate_params(p) is p
    gt, dt, pairs = _tiny()
    assert evaluate(gt, dt, pairs, p).stats[0] == pytest.approx(0.5)  # AP at IoU .5 is 1, at 1.0 is 0
