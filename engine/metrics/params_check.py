"""Validation of COCO evaluation parameters (``CocoParams``), before any array is built.

pycocotools fails deep inside numpy (or silently returns -1 / NaN) on parameters that cannot
describe an evaluation; Loupe refuses them up front with a ValidationError naming the field.
"""
from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING

from ..errors import ValidationError

if TYPE_CHECKING:
    from .cocoeval import CocoParams

__all__ = ["validate_params"]


def _numbers(values, field: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValidationError(f"must be a list of numbers, got {values!r:.80}", field=field) from None
    if not out:
        raise ValidationError("must not be empty", field=field)
    if not all(math.isfinite(v) for v in out):
        raise ValidationError(f"values must be finite, got {list(values)!r:.80}", field=field)
    return out


def _is_int(v) -> bool:
    if isinstance(v, bool):
        return False
    try:
        operator.index(v)  # int or numpy integer
    except TypeError:
        return False
    return True


def validate_params(p: "CocoParams") -> "CocoParams":
    """``p`` if it describes a COCO evaluation; else a ValidationError naming the field.

    iou_thrs in (0, 1]; rec_thrs in [0, 1]; at least three max_dets (summarize reads maxDets[0..2]; one
    for keypoints),
    positive integers; at least one area range, each ``lo <= hi`` (inclusive, so never empty) with
    one distinct label per range.
    """
    iou = _numbers(p.iou_thrs, "iou_thrs")
    if not all(0 < t <= 1 for t in iou):
        raise ValidationError(f"IoU thresholds must be in (0, 1], got {list(p.iou_thrs)}", field="iou_thrs")
    rec = _numbers(p.rec_thrs, "rec_thrs")
    if not all(0 <= r <= 1 for r in rec):
        raise ValidationError(f"recall thresholds must be in [0, 1], got {list(p.rec_thrs)}", field="rec_thrs")
    md = list(p.max_dets)
    need = 1 if getattr(p, "iou_type", "bbox") == "keypoints" else 3  # keypoint summarize reads the last one
    if len(md) < need or not all(_is_int(m) and m > 0 for m in md):
        raise ValidationError(f"needs at least {need} positive integers (summarize reads "
                              f"{'the last' if need == 1 else 'the first three'}), got {md}", field="max_dets")
    rng = list(p.area_rng)
    if not rng:
        raise ValidationError("needs at least one (lo, hi) area range", field="area_rng")
    for i, r in enumerate(rng):
        try:
            lo, hi = (float(v) for v in r)
        except (TypeError, ValueError):
            raise ValidationError(f"range {i} must be a (lo, hi) pair of numbers, got {r!r:.60}",
                                  field="area_rng") from None
        if math.isnan(lo) or math.isnan(hi) or lo > hi or lo < 0:
            raise ValidationError(f"range {i} {tuple(r)!r} is empty or invalid (need 0 <= lo <= hi)",
                                  field="area_rng")
    lbl = list(p.area_lbl)
    if len(lbl) != len(rng) or not all(isinstance(s, str) and s for s in lbl) or len(set(lbl)) != len(lbl):
        raise ValidationError(f"needs one distinct, non-empty label per area range ({len(rng)}), got {lbl}",
                              field="area_lbl")
    return p
