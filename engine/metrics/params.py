"""Public COCO evaluation parameters: build and validate a ``CocoParams`` from user values.

The single place where evaluation parameters are checked: ``coco_params`` for user values and
``validate_params`` for a ``CocoParams`` entering the kernel (``cocoeval.prepare``/``summarize``), so
pycocotools' failures deep inside numpy (or silent -1 / NaN) become a ValidationError naming the
field. Names follow the public API (``iou_thresholds``, ``recall_thresholds``, ``max_dets``,
``area_ranges``); each maps to the pycocotools ``Params`` field of the same meaning
(``iouThrs``, ``recThrs``, ``maxDets``, ``areaRng`` + ``areaRngLbl``).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ValidationError

if TYPE_CHECKING:  # cocoeval imports this module: CocoParams is imported where it is built
    from .cocoeval import CocoParams

__all__ = ["coco_params", "default_params", "params_json", "parse_area_ranges", "parse_floats", "parse_ints",
           "validate_params"]


def _floats(name: str, values: Sequence[float], lo: float, lo_open: bool) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValidationError(f"must be a list of numbers, got {values!r}", field=name) from None
    if not out:
        raise ValidationError("must not be empty", field=name)
    for v in out:
        if not math.isfinite(v) or v > 1 or v < lo or (lo_open and v == lo):
            rng = f"({lo:g}, 1]" if lo_open else f"[{lo:g}, 1]"
            raise ValidationError(f"{v:g} is outside {rng}", field=name)
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValidationError(f"must be strictly ascending, got {list(out)}", field=name)
    return out


def _max_dets(values: Sequence[int], need: int = 1) -> tuple[int, ...]:
    """Positive ascending integers, at least ``need`` of them (summarize reads the first three; the
    keypoint summary only the last)."""
    try:
        out = tuple(int(v) for v in values)
        exact = all(float(v) == int(v) and not isinstance(v, bool) for v in values)
    except (TypeError, ValueError):
        raise ValidationError(f"must be a list of integers, got {values!r}", field="max_dets") from None
    if not out:
        raise ValidationError("must not be empty", field="max_dets")
    if not exact or any(v < 1 for v in out):
        raise ValidationError(f"must be positive integers, got {list(values)}", field="max_dets")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValidationError(f"must be strictly ascending, got {list(out)}", field="max_dets")
    if len(out) < need:
        raise ValidationError(f"needs at least {need} values (summarize reads "
                              f"{'the first three' if need == 3 else 'the last'}), got {list(out)}", field="max_dets")
    return out


def _area_ranges(ranges: Mapping[str, Sequence[float]]) -> tuple[tuple[str, ...], tuple[tuple[float, float], ...]]:
    if not isinstance(ranges, Mapping):
        raise ValidationError(f"must map a name to (min, max), got {type(ranges).__name__}", field="area_ranges")
    if not ranges:
        raise ValidationError("must name at least one range", field="area_ranges")
    labels, rngs = [], []
    for name, rng in ranges.items():
        try:
            lo, hi = (float(v) for v in rng)
        except (TypeError, ValueError):
            raise ValidationError(f"range {name!r} must be (min, max), got {rng!r}", field="area_ranges") from None
        if not str(name):
            raise ValidationError("range names must not be empty", field="area_ranges")
        if math.isnan(lo) or math.isnan(hi) or lo < 0:
            raise ValidationError(f"range {name!r}: min must be >= 0, got ({lo:g}, {hi:g})", field="area_ranges")
        if hi < lo:
            raise ValidationError(f"range {name!r} is empty: max {hi:g} < min {lo:g}", field="area_ranges")
        labels.append(str(name))
        rngs.append((lo, hi))
    return tuple(labels), tuple(rngs)


def coco_params(
    iou_thresholds: Sequence[float] | None = None,
    recall_thresholds: Sequence[float] | None = None,
    max_dets: Sequence[int] | None = None,
    area_ranges: Mapping[str, Sequence[float]] | None = None,
    iou_type: str = "bbox",
    kpt_oks_sigmas: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
) -> "CocoParams | None":
    """A validated ``CocoParams`` (pycocotools' defaults where None); None when every value is None.

    Raises ValidationError naming the field: empty lists, thresholds outside (0, 1] (recall: [0, 1])
    or not strictly ascending, max_dets not positive ascending integers, an area range with
    max < min or min < 0. Area ranges are inclusive on both ends, as in pycocotools; the range named
    'all' is the one per-object matches and per-class AP use (the first one when none is).
    Unset values are the defaults of ``iou_type`` (keypoints: maxDets 20, areas all/medium/large).
    """
    if (iou_thresholds is None and recall_thresholds is None and max_dets is None and area_ranges is None
            and kpt_oks_sigmas is None):
        return None
    kw: dict[str, Any] = {}
    if iou_thresholds is not None:
        kw["iou_thrs"] = _floats("iou_thresholds", iou_thresholds, 0.0, True)
    if recall_thresholds is not None:
        kw["rec_thrs"] = _floats("recall_thresholds", recall_thresholds, 0.0, False)
    if max_dets is not None:
        kw["max_dets"] = _max_dets(max_dets)
    if area_ranges is not None:
        kw["area_lbl"], kw["area_rng"] = _area_ranges(area_ranges)
    if kpt_oks_sigmas is not None:
        kw["kpt_oks_sigmas"] = _sigmas(kpt_oks_sigmas)
    return validate_params(replace(default_params(iou_type), **kw))


def _sigmas(v: Sequence[float] | Mapping[str, Sequence[float]]) -> tuple:
    """One sigma list for every category, or {label: sigmas}: positive finite numbers."""
    def one(x: Any, where: str) -> tuple[float, ...]:
        try:
            out = tuple(float(s) for s in x)
        except (TypeError, ValueError):
            raise ValidationError(f"{where}must be a list of numbers, got {x!r:.60}", field="kpt_oks_sigmas") from None
        if not out or any(not math.isfinite(s) or s <= 0 for s in out):
            raise ValidationError(f"{where}must be non-empty and positive, got {list(out)}", field="kpt_oks_sigmas")
        return out

    if isinstance(v, Mapping):
        if not v:
            raise ValidationError("must name at least one label", field="kpt_oks_sigmas")
        return tuple((str(k), one(x, f"label {k!r}: ")) for k, x in v.items())
    return one(v, "")


def default_params(iou_type: str = "bbox") -> "CocoParams":
    """pycocotools' default ``Params`` for an IoU type."""
    if iou_type == "keypoints":
        from .oks import KEYPOINT_PARAMS

        return KEYPOINT_PARAMS
    from .cocoeval import CocoParams

    return CocoParams()


def validate_params(p: "CocoParams") -> "CocoParams":
    """``p`` if it describes a COCO evaluation (the rules of :func:`coco_params`, plus at least three
    max_dets for bbox/segm, one for keypoints); else a ValidationError naming the public field."""
    _floats("iou_thresholds", p.iou_thrs, 0.0, True)
    _floats("recall_thresholds", p.rec_thrs, 0.0, False)
    _max_dets(p.max_dets, need=1 if p.iou_type == "keypoints" else 3)
    lbl = list(p.area_lbl)
    if len(lbl) != len(p.area_rng) or len(set(lbl)) != len(lbl):
        raise ValidationError(f"needs one distinct name per area range ({len(p.area_rng)}), got {lbl}",
                              field="area_ranges")
    _area_ranges(dict(zip(lbl, p.area_rng)))
    return p


def params_json(p: "CocoParams | None") -> dict[str, Any] | None:
    """JSON-able form of non-default parameters (None for the defaults), stored with a commit."""
    if p is None or p == default_params(p.iou_type):
        return None
    return {"iou_thresholds": list(p.iou_thrs), "recall_thresholds": list(p.rec_thrs), "max_dets": list(p.max_dets),
            "area_ranges": {lbl: list(r) for lbl, r in zip(p.area_lbl, p.area_rng)}, "iou_type": p.iou_type,
            "kpt_oks_sigmas": _sigmas_json(p.kpt_oks_sigmas)}


def _sigmas_json(v: tuple | None) -> Any:
    if v is None or not v or not isinstance(v[0], tuple):
        return None if v is None else list(v)
    return {k: list(x) for k, x in v}


# --- CLI parsing (one-line errors name the flag) ---------------------------------------------------
def parse_floats(text: str | None, flag: str) -> list[float] | None:
    """'0.5,0.75' -> [0.5, 0.75]."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValidationError(f"expected comma-separated numbers, got {text!r}", field=flag) from None


def parse_ints(text: str | None, flag: str) -> list[int] | None:
    """'1,10,100' -> [1, 10, 100]."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValidationError(f"expected comma-separated integers, got {text!r}", field=flag) from None


def parse_area_ranges(text: str | None, flag: str = "--area-ranges") -> dict[str, tuple[float, float]] | None:
    """'all:0:1e10,small:0:1024' -> {'all': (0, 1e10), 'small': (0, 1024)}."""
    if text is None:
        return None
    out: dict[str, tuple[float, float]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        bits = part.split(":")
        try:
            if len(bits) != 3:
                raise ValueError
            out[bits[0]] = (float(bits[1]), float(bits[2]))
        except ValueError:
            raise ValidationError(f"expected name:min:max, got {part!r}", field=flag) from None
    return out
