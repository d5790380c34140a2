"""Crops and contact sheets: boxes drawn where they belong, in the legend colours, one decode per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, JpegImagePlugin

import engine
from analysis_data import compute_matches, insert_matches
from engine.analysis.crops import LEGEND, PAD
from engine.errors import ValidationError

SIZE = 128
CONTEXT = 0.15


def gradient(w: int, h: int) -> np.ndarray:
    """R follows x, G follows y, B is constant: any pixel tells where it came from."""
    x = np.arange(w)[None, :].repeat(h, 0)
    y = np.arange(h)[:, None].repeat(w, 1)
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], -1).astype(np.uint8)


def build(tmp: Path, images: dict[str, tuple[str, int, int]], gt: list, dt: list, relative: bool = False):
    """Workspace with the given images (name -> (file, w, h)), GT and predictions, and matches."""
    ws = engine.connect()
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(f if relative else str(tmp / f), ref, width=w, height=h)
               for ref, (f, w, h) in images.items()], check_images=False)
    ds.annotate([engine.BoxAnnotation(lab, ref, aid, x=x, y=y, width=w, height=h) for ref, aid, lab, x, y, w, h in gt])
    run = ws.add_model("m").create_run("r", ds, [
        engine.BoxPrediction(lab, ref, aid, x=x, y=y, width=w, height=h, confidence=c)
        for ref, aid, lab, x, y, w, h, c in dt])
    insert_matches(ws, run, compute_matches(ws, run))
    return ws, run


@pytest.fixture
def scene(tmp_path):
    Image.fromarray(gradient(400, 300)).save(tmp_path / "a.png")
    Image.fromarray(gradient(200, 150)).save(tmp_path / "b.png")
    gt = [("A", "g1", "person", 50, 60, 80, 120), ("A", "g2", "person", 300, 180, 50, 90),
          ("B", "g3", "car", 10, 10, 40, 30)]
    dt = [("A", "d1", "person", 60, 70, 80, 120, 0.9), ("A", "d2", "person", 250, 40, 60, 100, 0.8),
          ("B", "d3", "car", 12, 12, 40, 30, 0.7)]
    ws, run = build(tmp_path, {"A": ("a.png", 400, 300), "B": ("b.png", 200, 150)}, gt, dt)
    yield ws, run, tmp_path
    ws.close()


def expected_geometry(r: dict, size: int = SIZE) -> tuple[float, float, float]:
    """The crop region from the documented rule: object ∪ partner, context margin, squared; and its scale."""
    boxes = [(r["x"], r["y"], r["width"], r["height"])]
    if r["partner_x"] is not None:
        boxes.append((r["partner_x"], r["partner_y"], r["partner_width"], r["partner_height"]))
    x0 = min(b[0] for b in boxes); y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes); y1 = max(b[1] + b[3] for b in boxes)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * CONTEXT)
    return (x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2, size / side


def drawn_rect(arr: np.ndarray, colour) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(np.all(arr == np.array(colour, np.uint8), axis=-1))
    return None if len(xs) == 0 else (xs.min(), ys.min(), xs.max(), ys.max())


def expect_rect(box, rx0, ry0, s):
    x, y, w, h = box
    return (round((x - rx0) * s), round((y - ry0) * s), round((x + w - rx0) * s) - 1, round((y + h - ry0) * s) - 1)


def colour_of(source: str, status: str):
    if source == "gt":
        return LEGEND["fn"] if status == "fn" else LEGEND["gt"]
    return LEGEND["tp"] if status == "tp" else LEGEND["fp"]


def test_boxes_are_drawn_at_their_place_in_legend_colours(scene, tmp_path):
    ws, run, root = scene
    p = run.patches()
    assert sorted(p.column("status").to_pylist()) == ["fn", "fp", "tp", "tp"]
    out = engine.crops(p, tmp_path / "out", context=CONTEXT, size=SIZE)
    written = [r for r in out.to_pylist() if r["kind"] == "crop"]
    assert len(written) == 4 and all(r["error"] is None for r in written)
    for r, w in zip(p.to_pylist(), written):
        assert w["annotation_id"] == r["annotation_id"]
        arr = np.asarray(Image.open(w["path"]).convert("RGB"))
        assert arr.shape == (SIZE, SIZE, 3)
        rx0, ry0, s = expected_geometry(r)
        own = expect_rect((r["x"], r["y"], r["width"], r["height"]), rx0, ry0, s)
        got = drawn_rect(arr, colour_of(r["source"], r["status"]))
        assert got is not None and np.abs(np.subtract(got, own)).max() <= 1, (r["status"], got, own)
        left, top, right, bottom = own
        assert tuple(arr[(top + bottom) // 2, left]) == colour_of(r["source"], r["status"])   # left edge
        assert tuple(arr[(top + bottom) // 2, right]) == colour_of(r["source"], r["status"])  # right edge
        if r["partner_x"] is not None:
            psrc = "prediction" if r["source"] == "gt" else "gt"
            want = expect_rect((r["partner_x"], r["partner_y"], r["partner_width"], r["partner_height"]), rx0, ry0, s)
            got = drawn_rect(arr, colour_of(psrc, r["partner_status"]))
            assert got is not None and np.abs(np.subtract(got, want)).max() <= 1
        # image content: a pixel away from the boxes comes from the right place of the source image
        src_w, src_h = (400, 300) if r["reference_id"] == "A" else (200, 150)
        ox, oy = rx0 + 3.5 / s, ry0 + 3.5 / s
        if 0 <= ox < src_w and 0 <= oy < src_h:
            assert abs(int(arr[3, 3, 0]) - ox * 255 / (src_w - 1)) <= 5
            assert abs(int(arr[3, 3, 1]) - oy * 255 / (src_h - 1)) <= 5
        else:
            assert tuple(arr[3, 3]) == PAD  # outside the image: padding
    fp = [r for r in p.to_pylist() if r["status"] == "fp"][0]
    assert fp["partner_x"] is None  # nothing overlaps the FP: only its red box is drawn
    fp_arr = np.asarray(Image.open(written[[r["status"] for r in p.to_pylist()].index("fp")]["path"]))
    assert drawn_rect(fp_arr, LEGEND["gt"]) is None and drawn_rect(fp_arr, LEGEND["tp"]) is None


def test_each_image_is_opened_once(scene, tmp_path, monkeypatch):
    ws, run, root = scene
    opened = []
    real_open = Image.open

    def counting_open(fp, *a, **kw):
        opened.append(str(fp))
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(Image, "open", counting_open)
    p = run.patches(pairs=False)  # 3 GT + 3 predictions on 2 images
    assert p.num_rows == 6
    engine.crops(p, tmp_path / "once")
    assert sorted(Path(o).name for o in opened) == ["a.png", "b.png"]


def test_contact_sheet_pages_hold_every_crop(scene, tmp_path):
    ws, run, root = scene
    p = run.patches(pairs=False)
    out = engine.crops(p, tmp_path / "sheet", size=64, columns=2, per_sheet=4).to_pylist()
    sheets = [r["path"] for r in out if r["kind"] == "sheet"]
    assert [Path(s).name for s in sheets] == ["contact_sheet.png", "contact_sheet_2.png"]
    pages = [np.asarray(Image.open(s).convert("RGB")) for s in sheets]
    crops = [np.asarray(Image.open(r["path"]).convert("RGB")) for r in out if r["kind"] == "crop"]
    for i, c in enumerate(crops):
        assert contains(pages[i // 4], c), f"crop {i} not on its page"
    assert not contains(pages[1], crops[0])


def contains(sheet: np.ndarray, crop: np.ndarray) -> bool:
    """Is ``crop`` an exact sub-image of ``sheet``? (row-bytes search, then a full compare)"""
    first = crop[0].tobytes()
    h, w = crop.shape[:2]
    for y in range(sheet.shape[0] - h + 1):
        row = sheet[y].tobytes()
        start = row.find(first)
        while start >= 0:
            if start % 3 == 0:
                x = start // 3
                if np.array_equal(sheet[y:y + h, x:x + w], crop):
                    return True
            start = row.find(first, start + 1)
    return False


def test_large_jpeg_is_decoded_through_draft(tmp_path, monkeypatch):
    Image.new("RGB", (3000, 2000), (200, 200, 120)).save(tmp_path / "big.jpg", quality=90)
    ws, run = build(tmp_path, {"J": ("big.jpg", 3000, 2000)},
                    [("J", "g", "person", 500, 400, 1600, 1200)],
                    [("J", "d", "person", 560, 450, 1600, 1200, 0.9)])
    decoded = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size, *a, **kw):
        res = real_draft(self, mode, size, *a, **kw)
        decoded.append((size, self.size))
        return res

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    p = run.patches()
    out = engine.crops(p, tmp_path / "j", size=64, context=CONTEXT).to_pylist()
    assert len(decoded) == 1
    requested, got = decoded[0]
    assert got == (375, 250)  # 1/8 DCT scale: 64 crop pixels need ~ 1/30 of the image
    arr = np.asarray(Image.open(out[0]["path"]).convert("RGB"))
    r = p.to_pylist()[0]
    rx0, ry0, s = expected_geometry(r, size=64)
    want = expect_rect((r["x"], r["y"], r["width"], r["height"]), rx0, ry0, s)
    got_rect = drawn_rect(arr, LEGEND["tp"])
    assert got_rect is not None and np.abs(np.subtract(got_rect, want)).max() <= 1
    ws.close()


def test_missing_image_and_relative_paths(tmp_path):
    Image.fromarray(gradient(100, 100)).save(tmp_path / "here.png")
    ws, run = build(tmp_path, {"H": ("here.png", 100, 100), "M": ("missing.png", 100, 100)},
                    [("H", "g", "x", 10, 10, 30, 30), ("M", "g", "x", 10, 10, 30, 30)], [], relative=True)
    p = run.patches()
    out = {r["reference_id"]: r for r in engine.crops(p, tmp_path / "o", image_root=tmp_path).to_pylist()
           if r["kind"] == "crop"}
    assert out["H"]["error"] is None
    assert "missing.png" in out["M"]["error"]
    miss = np.asarray(Image.open(out["M"]["path"]).convert("RGB"))
    assert drawn_rect(miss, LEGEND["fn"]) is not None  # the box is still drawn, on the padding colour
    assert tuple(miss[2, 2]) == PAD
    ws.close()


def test_refuses_a_table_that_is_not_patches(tmp_path):
    with pytest.raises(ValidationError, match="patches"):
        engine.crops(pa.table({"x": [1.0]}), tmp_path)
