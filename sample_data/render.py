"""Pixels: background, depth-ordered compositing with exact instance ids, and
capture effects (time of day, rain, camera blur, sensor grain).

Things are painted far-to-near into both the RGB canvas and an id canvas, so the
id canvas holds, per pixel, the nearest thing: each instance's pixels there are
exactly its *visible* pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import Scene
from .shapes import draw

_SKY = {  # (top, horizon) colours
    "day": ((95, 150, 215), (200, 222, 240)),
    "dusk": ((60, 55, 110), (245, 150, 95)),
    "night": ((8, 10, 28), (35, 38, 62)),
}
_BRIGHT = {"day": 1.0, "dusk": 0.72, "night": 0.42}
_TINT = {"day": (1.0, 1.0, 1.0), "dusk": (1.06, 0.95, 0.88), "night": (0.85, 0.9, 1.12)}
_FACADES = np.array([[150, 80, 60], [170, 160, 140], [120, 120, 125], [200, 190, 170],
                     [95, 70, 55], [180, 175, 160], [110, 130, 140]], dtype=np.float32)


@dataclass
class Rendered:
    """Output of :func:`render`."""

    rgb: np.ndarray  # (H, W, 3) uint8
    ids: np.ndarray  # (H, W) uint16, 0 = background, i + 1 = scene.things[i]
    amodal_in_image: np.ndarray  # (n_things,) silhouette pixels inside the image
    amodal_total: np.ndarray  # (n_things,) silhouette pixels including outside the image
    amodal_boxes: np.ndarray  # (n_things, 4) 0-based x, y, w, h of the in-image silhouette


def _gradient(top: tuple, bottom: tuple, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(n, 1), dtype=np.float32)[:, None]
    return (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)


def _background(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sky, building facades with windows, ground (sidewalk/road or plaza tiles).

    Returns float RGB and a boolean "emissive" mask (lit windows at night).
    """
    W, H, hz, base = scene.width, scene.height, scene.horizon, scene.base_y
    tod = scene.conditions.time_of_day
    img = np.empty((H, W, 3), np.float32)
    img[:] = _gradient(*_SKY[tod], H)[:, None, :]
    emissive = np.zeros((H, W), bool)
    yy = np.arange(H)[:, None]
    xx = np.arange(W)[None, :]
    # facades: a row of blocks standing on base_y
    x = -int(rng.integers(0, 40))
    while x < W:
        bw = int(rng.integers(50, 150))
        top = int(base - rng.uniform(0.35, 1.3) * (base + 10))
        top = max(top, -1)
        x0, x1 = max(x, 0), min(x + bw, W)
        if x1 > x0 and top + 1 < base:
            col = _FACADES[rng.integers(len(_FACADES))] * rng.uniform(0.8, 1.1)
            block = img[top + 1:base, x0:x1]
            block[:] = col
            # window grid via modular arithmetic on coordinates
            px, py = int(rng.integers(14, 26)), int(rng.integers(18, 30))
            wy = (yy[top + 1:base] - top - 6) % py < py * 0.55
            wx = (xx[:, x0:x1] - x - 5) % px < px * 0.55
            win = wy & wx & (yy[top + 1:base] < base - 12)
            glass = np.asarray((60, 75, 95), np.float32) if tod == "day" else np.asarray((30, 30, 40), np.float32)
            block[win] = glass
            if tod != "day":  # some windows lit
                cells = ((yy[top + 1:base] - top - 6) // py) * 7919 + (xx[:, x0:x1] - x - 5) // px
                lit = win & ((cells * 2654435761 + int(rng.integers(1 << 20))) % 100 < 35)
                block[lit] = (255, 215, 140)
                emissive[top + 1:base, x0:x1] |= lit
        x += bw + int(rng.integers(0, 12))
    ground = img[base:]
    gy = yy[base:]
    if scene.road is not None:
        ground[:] = (150, 148, 142)  # sidewalks
        r0, r1 = scene.road
        rows = lambda a, b: slice(min(max(a - base, 0), H - base), min(max(b - base, 0), H - base))  # noqa: E731
        ground[rows(r0, r1)] = (70, 70, 74)  # asphalt
        ground[rows(r0 - 3, r0)] = (190, 188, 180)  # curbs
        ground[rows(r1, r1 + 3)] = (190, 188, 180)
        mid = (r0 + r1) // 2
        dash = (np.abs(gy - mid) <= 1) & ((xx // 28) % 2 == 0)
        ground[dash] = (230, 225, 200)
        slabs = (gy < r0 - 3) | (gy >= r1 + 3)
        joints = slabs & (((gy - base) % 14 == 0) | ((xx + 3 * gy) % 40 == 0))
        ground[joints] *= 0.85
    else:  # plaza: perspective tile grid converging on a vanishing point
        ground[:] = (175, 165, 150)
        d = np.maximum(gy - scene.horizon, 1).astype(np.float32)
        u = (xx - W / 2.0) / d * 3.0
        v = 60.0 / d
        tiles = (np.abs(u - np.round(u)) < 0.06 * d / 20 + 0.03) | (np.abs(v - np.round(v * 4) / 4) < 0.015)
        ground[tiles] *= 0.8
    # low-frequency shading so crops are not flat
    lf = rng.normal(1.0, 0.07, size=(H // 24 + 2, W // 24 + 2)).astype(np.float32)
    lf = np.asarray(Image.fromarray(lf).resize((W, H), Image.BILINEAR))
    img *= lf[:, :, None]
    return img, emissive


def _rain(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Desaturate a little and add faint slanted streaks (not part of any mask)."""
    H, W, _ = rgb.shape
    grey = rgb.mean(axis=2, keepdims=True)
    out = 0.75 * rgb + 0.25 * grey
    layer = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(layer)
    n = int(W * H / 500)
    x = rng.uniform(0, W, n)
    y = rng.uniform(0, H, n)
    ln = rng.uniform(6, 14, n)
    for xi, yi, li in zip(x.tolist(), y.tolist(), ln.tolist()):
        d.line([(xi, yi), (xi - 0.25 * li, yi + li)], fill=90, width=1)
    a = np.asarray(layer, np.float32)[:, :, None] / 255.0
    return out * (1 - a) + 210.0 * a


def render(scene: Scene, rng: np.random.Generator) -> Rendered:
    """Render ``scene``; ``rng`` only drives textures and effects (not layout)."""
    W, H = scene.width, scene.height
    img, emissive = _background(scene, rng)
    ids = np.zeros((H, W), np.uint16)
    n = len(scene.things)
    in_img = np.zeros(n, np.int64)
    total = np.zeros(n, np.int64)
    amodal = np.tile(np.array([-1, -1, 0, 0], np.int64), (n, 1))
    for i, t in enumerate(scene.things):
        lay = draw(t)
        parts = lay.parts
        total[i] = int(np.count_nonzero(parts))
        ys0, xs0 = max(lay.y0, 0), max(lay.x0, 0)
        ys1, xs1 = min(lay.y0 + parts.shape[0], H), min(lay.x0 + parts.shape[1], W)
        if ys1 <= ys0 or xs1 <= xs0:
            continue
        crop = parts[ys0 - lay.y0:ys1 - lay.y0, xs0 - lay.x0:xs1 - lay.x0]
        r, c = np.nonzero(crop)
        in_img[i] = len(r)
        if len(r):
            amodal[i] = (xs0 + c.min(), ys0 + r.min(), c.max() - c.min() + 1, r.max() - r.min() + 1)
            # simple vertical shading: darker towards the feet
            shade = np.linspace(1.05, 0.85, crop.shape[0], dtype=np.float32)[r, None]
            img[ys0 + r, xs0 + c] = lay.palette[crop[r, c]] * shade
            ids[ys0 + r, xs0 + c] = i + 1
    emissive &= ids == 0
    tod = scene.conditions.time_of_day
    lit = img[emissive]
    img *= _BRIGHT[tod] * np.asarray(_TINT[tod], np.float32)
    img[emissive] = lit
    if scene.conditions.weather == "rain":
        img = _rain(img, rng)
    img += 2.5 * rng.standard_normal((H, W, 1), dtype=np.float32)  # luminance grain
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    if scene.conditions.camera == "rear":  # cheaper lens: slightly soft
        rgb = np.asarray(Image.fromarray(rgb).filter(ImageFilter.BoxBlur(1)))
    return Rendered(rgb, ids, in_img, total, amodal)
