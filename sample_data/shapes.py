"""Silhouettes drawn as small part-index layers.

Each drawer returns a :class:`Layer`: a uint8 array of part indices (0 = empty),
a palette mapping part index -> RGB, and the layer's top-left corner in image
coordinates. Compositing (render.py) turns parts into colours and instance ids
with numpy, so the same layer yields both the pixels and the exact mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .scene import PROP_HEIGHT, Thing

# Part indices shared by person-like layers.
SKIN, HAIR, SHIRT, PANTS, SHOES, ACCENT, TYRE, FRAME = range(1, 9)


@dataclass(frozen=True)
class Layer:
    """Part-index raster of one thing, placed at (x0, y0) in the image."""

    parts: np.ndarray  # (h, w) uint8
    palette: np.ndarray  # (P, 3) uint8, row 0 unused
    x0: int
    y0: int


def _w(v: float) -> int:
    """Line width: at least one pixel."""
    return max(1, int(round(v)))


def _canvas(w: float, h: float) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", (int(math.ceil(w)) + 4, int(math.ceil(h)) + 3), 0)
    return img, ImageDraw.Draw(img)


def _person_palette(p: dict) -> np.ndarray:
    rows = [(0, 0, 0), p["skin"], p["hair"], p["shirt"], p["pants"], p["shoes"], p["accent"],
            (22, 22, 24), p["frame"]]
    return np.asarray(rows, dtype=np.uint8)


def _head(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, f: int, hat: bool) -> None:
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=HAIR)
    d.ellipse([cx - 0.8 * r + 0.25 * r * f, cy - 0.55 * r, cx + 0.8 * r + 0.25 * r * f, cy + r], fill=SKIN)
    if hat:
        d.pieslice([cx - 1.05 * r, cy - 1.15 * r, cx + 1.05 * r, cy + 0.5 * r], 180, 360, fill=ACCENT)


def draw_pedestrian(t: Thing) -> Layer:
    """A walking figure: head, torso (or coat), two arms, two legs, shoes, optional bag/hat."""
    h, p = t.height, t.params
    f, b = p["facing"], p["build"]
    img, d = _canvas(0.62 * h, h)
    cx, top = img.width / 2.0, 1.0
    y = lambda v: top + v * h  # noqa: E731 - fraction of height -> row
    hip_y, foot_y = y(0.5), y(0.985)
    spread = 0.15 * h * p["phase"]
    legw, armw = _w(0.075 * h * b), _w(0.055 * h * b)
    sh = 0.115 * h * b
    # back limbs first, then torso, then front limbs, then head
    d.line([(cx - 0.035 * h, hip_y), (cx - spread, foot_y - 0.02 * h)], fill=PANTS, width=legw)
    d.line([(cx - sh * 0.9, y(0.19)), (cx - sh - 0.1 * h * p["swing"], y(0.47))], fill=SHIRT, width=armw)
    bottom = y(0.7) if p["coat"] else hip_y + 0.02 * h
    d.polygon([(cx - sh, y(0.165)), (cx + sh, y(0.165)), (cx + 0.095 * h * b, bottom),
               (cx - 0.095 * h * b, bottom)], fill=SHIRT)
    d.rectangle([cx - 0.03 * h, y(0.12), cx + 0.03 * h, y(0.17)], fill=SKIN)
    d.line([(cx + 0.035 * h, hip_y), (cx + spread, foot_y - 0.02 * h)], fill=PANTS, width=legw)
    for sx in (-spread, spread):
        fx = cx + sx + 0.02 * h * f
        d.ellipse([fx - 0.045 * h, foot_y - 0.035 * h, fx + 0.045 * h, foot_y], fill=SHOES)
    hand = (cx + sh + 0.1 * h * p["swing"], y(0.47))
    d.line([(cx + sh * 0.9, y(0.19)), hand], fill=SHIRT, width=armw)
    r = 0.028 * h
    d.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=SKIN)
    if p["bag"]:
        bx = cx - f * 0.13 * h
        d.rectangle([bx - 0.05 * h, y(0.42), bx + 0.05 * h, y(0.55)], fill=ACCENT)
    _head(d, cx, y(0.068), 0.066 * h, f, p["hat"])
    return Layer(np.asarray(img), _person_palette(p),
                 int(round(t.x - img.width / 2.0)), int(round(t.ground_y - h - top)))


def draw_cyclist(t: Thing) -> Layer:
    """A rider on a side-view bicycle; the instance covers rider and bike."""
    h, p = t.height, t.params
    f = p["facing"]
    img, d = _canvas(0.95 * h, h)
    cx, top = img.width / 2.0, 1.0
    ground = top + h
    R = 0.19 * h
    hub_y = ground - R
    rear, front = (cx - f * 0.29 * h, hub_y), (cx + f * 0.29 * h, hub_y)
    tyre, bar = _w(0.035 * h), _w(0.025 * h)
    for hx, hy in (rear, front):
        d.ellipse([hx - R, hy - R, hx + R, hy + R], outline=TYRE, width=tyre)
    seat = (cx - f * 0.08 * h, ground - 0.5 * h)
    bb = (cx, hub_y)
    head_tube = (cx + f * 0.2 * h, ground - 0.5 * h)
    d.line([rear, seat, bb, rear], fill=FRAME, width=bar)
    d.line([seat, head_tube, front], fill=FRAME, width=bar)
    d.line([bb, head_tube], fill=FRAME, width=bar)
    # rider: leg to pedal, leaning torso, arm to handlebar, head
    legw = _w(0.07 * h)
    knee = (cx + f * 0.1 * h, ground - 0.42 * h)
    pedal = (cx + f * 0.06 * h * p["phase"], hub_y + 0.05 * h)
    d.line([seat, knee, pedal], fill=PANTS, width=legw, joint="curve")
    shoulder = (cx + f * 0.06 * h, ground - 0.8 * h)
    d.line([seat, shoulder], fill=SHIRT, width=_w(0.12 * h))
    d.line([shoulder, (head_tube[0] + f * 0.02 * h, head_tube[1] - 0.04 * h)], fill=SHIRT,
           width=_w(0.05 * h))
    _head(d, cx + f * 0.1 * h, ground - 0.92 * h, 0.066 * h, f, p["hat"])
    return Layer(np.asarray(img), _person_palette(p),
                 int(round(t.x - img.width / 2.0)), int(round(t.ground_y - h - top)))


def draw_car(t: Thing) -> Layer:
    """Side view of a parked car (body, cabin, glass, wheels, lights)."""
    h, p = t.height, t.params
    f = p["facing"]
    L = 2.7 * h
    img, d = _canvas(L, h)
    x0, top = 2.0, 1.0
    pal = np.asarray([(0, 0, 0), p["body"], (40, 55, 70), (18, 18, 20), (250, 230, 160),
                      (150, 150, 155)], dtype=np.uint8)
    d.rounded_rectangle([x0, top + 0.38 * h, x0 + L, top + 0.86 * h], radius=_w(0.12 * h), fill=1)
    c0, c1 = (x0 + 0.15 * L, x0 + 0.7 * L) if f > 0 else (x0 + 0.3 * L, x0 + 0.85 * L)
    d.polygon([(c0, top + 0.4 * h), (c0 + 0.12 * L, top), (c1 - 0.08 * L, top), (c1 + 0.04 * L, top + 0.4 * h)],
              fill=1)
    d.polygon([(c0 + 0.05 * L, top + 0.36 * h), (c0 + 0.14 * L, top + 0.07 * h),
               (c1 - 0.1 * L, top + 0.07 * h), (c1 - 0.02 * L, top + 0.36 * h)], fill=2)
    d.line([(x0 + 0.5 * L, top + 0.07 * h), (x0 + 0.5 * L, top + 0.38 * h)], fill=1, width=_w(0.04 * h))
    r = 0.17 * h
    for wx in (x0 + 0.2 * L, x0 + 0.8 * L):
        d.ellipse([wx - r, top + h - 2 * r, wx + r, top + h], fill=3)
        d.ellipse([wx - 0.45 * r, top + h - 1.45 * r, wx + 0.45 * r, top + h - 0.55 * r], fill=5)
    lx = x0 + (L - 0.05 * L if f > 0 else 0.0)
    d.rectangle([lx, top + 0.45 * h, lx + 0.05 * L, top + 0.55 * h], fill=4)
    return Layer(np.asarray(img), pal, int(round(t.x - img.width / 2.0)), int(round(t.ground_y - h - top)))


def draw_prop(t: Thing) -> Layer:
    """Street furniture: pole with lamp, bin, bollard or planter with greenery."""
    h, p = t.height, t.params
    per = h / PROP_HEIGHT[t.kind]  # person height at this depth
    width = {"pole": max(2.0, 0.06 * per), "bin": 0.3 * per, "bollard": 0.1 * per, "planter": 0.6 * per}[t.kind]
    img, d = _canvas(max(width, 0.3 * per if t.kind == "pole" else width), h)
    cx, top = img.width / 2.0, 1.0
    pal = np.asarray([(0, 0, 0), p["colour"], p["green"], (255, 240, 190)], dtype=np.uint8)
    if t.kind == "pole":
        d.rectangle([cx - width / 2, top + 0.02 * h, cx + width / 2, top + h], fill=1)
        d.rectangle([cx - 0.14 * per, top, cx + 0.14 * per, top + 0.03 * h], fill=1)
        d.rectangle([cx - 0.1 * per, top + 0.03 * h, cx + 0.1 * per, top + 0.045 * h], fill=3)
    elif t.kind == "planter":
        d.rectangle([cx - width / 2, top + 0.45 * h, cx + width / 2, top + h], fill=1)
        d.ellipse([cx - width / 2, top, cx + width / 2, top + 0.7 * h], fill=2)
    else:
        d.rounded_rectangle([cx - width / 2, top, cx + width / 2, top + h], radius=_w(0.15 * width), fill=1)
    return Layer(np.asarray(img), pal, int(round(t.x - img.width / 2.0)), int(round(t.ground_y - h - top)))


def draw(t: Thing) -> Layer:
    """Dispatch on ``t.kind``."""
    if t.kind == "pedestrian":
        return draw_pedestrian(t)
    if t.kind == "cyclist":
        return draw_cyclist(t)
    if t.kind == "car":
        return draw_car(t)
    return draw_prop(t)
