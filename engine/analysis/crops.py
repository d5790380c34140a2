"""Image crops of patches rows with their boxes drawn, and a contact sheet to look at them at once.

Colour legend (:data:`LEGEND`): a GT box is **green** when matched and **orange** when missed (FN);
a prediction box is **blue** when it is a TP and **red** when it is a FP; objects ignored by the
evaluation (crowd) are **grey**. Each crop shows the row's object and its partner (matched object,
or the nearest object of the other side for an unmatched one).

Every source image is opened once per call: rows are grouped by image, the image is decoded once
(JPEGs through ``Image.draft`` at the smallest DCT scale that still serves every crop of it) and all
its crops are cut from that one decoded image.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import ValidationError

LEGEND: dict[str, tuple[int, int, int]] = {
    "gt": (0, 200, 0),          # matched ground truth
    "fn": (255, 150, 0),        # missed ground truth
    "tp": (30, 110, 255),       # matched prediction
    "fp": (230, 30, 30),        # unmatched prediction
    "ignored": (160, 160, 160),  # crowd / ignored by the evaluation
}
PAD = (64, 64, 64)              # canvas outside the image
LINE = 2                        # box outline width in crop pixels
MIN_SIDE = 8.0                  # smallest crop region side, in image pixels

_NEEDED = ("source", "status", "x", "y", "width", "height", "partner_x", "partner_y", "partner_width",
           "partner_height", "partner_status", "image_location", "reference_id", "annotation_id")


def box_colour(source: str | None, status: str | None) -> tuple[int, int, int]:
    """The legend colour of a GT ('gt') or prediction ('prediction') box with this status."""
    if status == "ignored":
        return LEGEND["ignored"]
    if source == "gt":
        return LEGEND["fn"] if status == "fn" else LEGEND["gt"]
    return LEGEND["tp"] if status == "tp" else LEGEND["fp"]


def regions(t: pa.Table, context: float) -> np.ndarray:
    """Square crop regions (x0, y0, side) in image pixels: object ∪ partner box, plus ``context`` margin."""
    def col(name: str) -> np.ndarray:
        return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=float)

    ox, oy, ow, oh = (col(c) for c in ("x", "y", "width", "height"))
    px, py, pw, ph = (col(c) for c in ("partner_x", "partner_y", "partner_width", "partner_height"))
    has = ~np.isnan(px)
    x0 = np.where(has, np.fmin(ox, px), ox)
    y0 = np.where(has, np.fmin(oy, py), oy)
    x1 = np.where(has, np.fmax(ox + ow, px + pw), ox + ow)
    y1 = np.where(has, np.fmax(oy + oh, py + ph), oy + oh)
    side = np.maximum(np.maximum(x1 - x0, y1 - y0) * (1 + 2 * context), MIN_SIDE)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reg = np.stack([cx - side / 2, cy - side / 2, side], axis=1)
    nobox = np.isnan(reg).any(axis=1)  # e.g. image-level objects: show the whole image
    if nobox.any():
        iw = col("item_width") if "item_width" in t.column_names else np.full(len(reg), np.nan)
        ih = col("item_height") if "item_height" in t.column_names else np.full(len(reg), np.nan)
        whole = np.nan_to_num(np.fmax(iw, ih), nan=MIN_SIDE)
        reg[nobox] = np.stack([np.zeros(nobox.sum()), np.zeros(nobox.sum()), whole[nobox]], axis=1)
    return reg


def crops(
    patches: pa.Table,
    out_dir: str | Path,
    context: float = 0.15,
    size: int = 128,
    sheet: bool = True,
    columns: int = 8,
    image_root: str | Path | None = None,
    per_sheet: int = 96,
    sheet_max: int = 192,
) -> pa.Table:
    """Write one PNG crop per patches row, with the boxes drawn, and contact sheet(s).

    Args:
        patches: a table from :func:`engine.analysis.patches` (``run.patches(...)``).
        out_dir: created if needed; crops are ``NNNN_status_reference_annotation.png``.
        context: margin around the object (and partner) box, as a fraction of its size per side.
        size: crops are ``size`` x ``size`` pixels (the region is scaled to fit, up or down).
        sheet: also write ``contact_sheet.png`` (a grid of the crops with captions: status,
            label, IoU, confidence) and, beyond ``per_sheet`` crops, ``contact_sheet_2.png`` ...
        columns: crops per contact-sheet row.
        image_root: directory that relative ``image_location`` values are relative to.
        per_sheet: crops per contact-sheet page.
        sheet_max: only the first ``sheet_max`` rows go on contact sheets (bounds memory).

    Returns:
        One row per written file: ``kind`` ('crop' | 'sheet'), ``index`` (row of ``patches``),
        ``reference_id``, ``annotation_id``, ``status``, ``path`` and ``error`` (e.g. the image could
        not be read: the crop then shows the boxes on a grey canvas).
    """
    missing = [c for c in _NEEDED if c not in patches.column_names]
    if missing:
        raise ValidationError(f"not a patches table (missing columns {missing}); use run.patches(...)")
    if size < 16 or columns < 1 or per_sheet < 1 or context < 0:
        raise ValidationError("size must be >= 16, columns and per_sheet >= 1, context >= 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = patches.num_rows
    reg = regions(patches, context)
    scale = size / reg[:, 2]
    rows = patches.select(list(_NEEDED) + [c for c in ("label", "partner_label", "iou", "best_iou", "confidence")
                                           if c in patches.column_names]).to_pylist()
    locs = np.array([r["image_location"] or "" for r in rows], dtype=str)
    paths: list[str] = [""] * n
    errors: list[str | None] = [None] * n
    keep = min(n, sheet_max) if sheet else 0
    kept: dict[int, Any] = {}
    if n:
        uniq, inverse = np.unique(locs, return_inverse=True)  # group rows by image: one decode each
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        for group in np.split(order, bounds):
            loc = str(uniq[inverse[group[0]]])
            img, factor, err = _decode(loc, image_root, float(scale[group].max()))
            for i in group:
                crop = _crop(img, factor, reg[i], size)
                _draw_boxes(crop, rows[i], reg[i], scale[i])
                p = out / _file_name(int(i), rows[i])
                crop.save(p, compress_level=1)  # fast: encoding dominates the cost of a crop
                paths[i], errors[i] = str(p), err
                if i < keep:
                    kept[int(i)] = crop
            if img is not None:
                img.close()
    result = {
        "kind": ["crop"] * n, "index": list(range(n)),
        "reference_id": [r["reference_id"] for r in rows], "annotation_id": [r["annotation_id"] for r in rows],
        "status": [r["status"] for r in rows], "path": paths, "error": errors,
    }
    if sheet and n:
        for page, start in enumerate(range(0, keep, per_sheet), start=1):
            idx = list(range(start, min(start + per_sheet, keep)))
            name = "contact_sheet.png" if page == 1 else f"contact_sheet_{page}.png"
            contact_sheet([kept[i] for i in idx], [caption(rows[i]) for i in idx], size, columns).save(out / name)
            for k, v in (("kind", "sheet"), ("index", None), ("reference_id", None), ("annotation_id", None),
                         ("status", None), ("path", str(out / name)), ("error", None)):
                result[k].append(v)
    return pa.table(result, schema=pa.schema([
        ("kind", pa.string()), ("index", pa.int64()), ("reference_id", pa.string()), ("annotation_id", pa.string()),
        ("status", pa.string()), ("path", pa.string()), ("error", pa.string())]))


def _decode(loc: str, root: str | Path | None, max_scale: float) -> tuple[Any, float, str | None]:
    """Open and decode one image once: (RGB image or None, decoded/original size factor, error)."""
    from PIL import Image

    if not loc:
        return None, 1.0, "item has no image_location"
    if "://" in loc:
        return None, 1.0, f"remote image not fetched: {loc}"
    path = Path(loc)
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    try:
        im = Image.open(path)
        w0 = im.size[0]
        if im.format == "JPEG" and max_scale <= 0.5:  # DCT-domain downscale: decodes 2-8x fewer pixels
            im.draft("RGB", (math.ceil(im.size[0] * max_scale), math.ceil(im.size[1] * max_scale)))
        factor = im.size[0] / w0
        if im.mode == "RGB":
            im.load()
            return im, factor, None
        rgb = im.convert("RGB")
        im.close()
        return rgb, factor, None
    except (OSError, ValueError) as e:
        return None, 1.0, f"cannot read image {path}: {e}"


def _crop(img: Any, factor: float, region: np.ndarray, size: int) -> Any:
    """The square ``region`` (x0, y0, side; original pixels) of ``img`` scaled to ``size`` x ``size``."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), PAD)
    if img is None:
        return canvas
    x0, y0, side = (float(v) for v in region)
    w, h = img.size[0] / factor, img.size[1] / factor  # original image size
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x0 + side, w), min(y0 + side, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return canvas
    s = size / side
    tx0, ty0 = round((cx0 - x0) * s), round((cy0 - y0) * s)
    tx1, ty1 = max(round((cx1 - x0) * s), tx0 + 1), max(round((cy1 - y0) * s), ty0 + 1)
    box = (cx0 * factor, cy0 * factor, cx1 * factor, cy1 * factor)
    part = img.resize((tx1 - tx0, ty1 - ty0), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    canvas.paste(part, (tx0, ty0))
    return canvas


def box_in_crop(x: float, y: float, w: float, h: float, region: Sequence[float], scale: float) -> tuple[int, int, int, int]:
    """Pixel rectangle (left, top, right, bottom; inclusive) of a box inside its crop."""
    x0, y0 = region[0], region[1]
    left, top = round((x - x0) * scale), round((y - y0) * scale)
    right, bottom = round((x + w - x0) * scale) - 1, round((y + h - y0) * scale) - 1
    return left, top, max(right, left), max(bottom, top)


def _draw_boxes(crop: Any, row: dict, region: np.ndarray, scale: float) -> None:
    """Partner box first, then the row's own box on top."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(crop)
    partner_source = "prediction" if row["source"] == "gt" else "gt"
    boxes = []
    if row["partner_x"] is not None and row["partner_width"] is not None:
        boxes.append((row["partner_x"], row["partner_y"], row["partner_width"], row["partner_height"],
                      box_colour(partner_source, row["partner_status"])))
    if row["x"] is not None and row["width"] is not None:
        boxes.append((row["x"], row["y"], row["width"], row["height"], box_colour(row["source"], row["status"])))
    for x, y, w, h, colour in boxes:
        d.rectangle(box_in_crop(x, y, w, h, region, scale), outline=colour, width=LINE)


def caption(row: dict) -> tuple[str, str]:
    """Two short caption lines: status, label (``>partner label`` when they differ); IoU with the matched
    partner (else the best IoU with any object of the other side) and confidence."""
    label = row.get("label") or "?"
    partner = row.get("partner_label")
    first = f"{(row['status'] or '').upper()} {label}" + (f">{partner}" if partner and partner != label else "")
    if row.get("iou") is not None:
        second = f"IoU {row['iou']:.2f}"
    elif row.get("best_iou"):
        second = f"best IoU {row['best_iou']:.2f}"
    else:
        second = "no overlap"
    if row.get("confidence") is not None:
        second += f" c {row['confidence']:.2f}"
    return first, second


def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(images: list[Any], captions: list[tuple[str, str]], size: int, columns: int) -> Any:
    """A grid of crops with two caption lines under each and a colour legend on top."""
    from PIL import Image, ImageDraw

    font = _font(10)
    gap, line, legend_h = 4, 12, 18
    cols = max(1, min(columns, len(images)))
    nrows = math.ceil(len(images) / cols)
    cell_h = size + 2 * line + 2
    width = max(cols * (size + gap) + gap, 330)
    sheet = Image.new("RGB", (width, legend_h + nrows * (cell_h + gap) + gap), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    x = gap
    for key, text in (("gt", "GT"), ("fn", "FN (missed GT)"), ("tp", "TP"), ("fp", "FP"), ("ignored", "ignored")):
        d.rectangle([x, 4, x + 10, 14], outline=LEGEND[key], width=LINE)
        d.text((x + 14, 3), text, fill=(0, 0, 0), font=font)
        x += 14 + int(d.textlength(text, font=font)) + 12
    for k, (im, (l1, l2)) in enumerate(zip(images, captions)):
        cx = gap + (k % cols) * (size + gap)
        cy = legend_h + gap + (k // cols) * (cell_h + gap)
        sheet.paste(im, (cx, cy))
        d.text((cx, cy + size + 1), _fit(d, l1, font, size), fill=(0, 0, 0), font=font)
        d.text((cx, cy + size + 1 + line), _fit(d, l2, font, size), fill=(70, 70, 70), font=font)
    return sheet


def _fit(d: Any, text: str, font: Any, width: int) -> str:
    while text and d.textlength(text, font=font) > width:
        text = text[:-3] + ".." if len(text) > 3 else ""
    return text


def _file_name(i: int, row: dict) -> str:
    stem = f"{i:04d}_{row['status']}_{row['reference_id']}_{row['annotation_id']}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:150] + ".png"
