"""Pascal VOC XML import: the 1-based corner convention, flags, splits and errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import ValidationError


def _xml(name: str, w: int, h: int, objects: list[tuple[str, tuple, dict]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>{f.get('pose', 'Unspecified')}</pose>"
        f"<truncated>{f.get('truncated', 0)}</truncated><difficult>{f.get('difficult', 0)}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, f in objects)
    return (f"<annotation><folder>VOC</folder><filename>{name}.jpg</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>")


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    files = {
        "000001": (50, 40, [("dog", (1, 1, 50, 40), {"difficult": 1}), ("cat", (10, 5, 19, 14), {"pose": "Left"})]),
        "000002": (30, 20, [("dog", (3.5, 2, 10, 12), {"truncated": 1})]),
        "000003": (30, 20, []),
    }
    for name, (w, h, objs) in files.items():
        (root / "Annotations" / f"{name}.xml").write_text(_xml(name, w, h, objs))
        Image.new("RGB", (w, h)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets/Main/val.txt").write_text("000002\n000003\n")
    return root


def test_voc_boxes_are_zero_based_and_flags_kept(ws, voc):
    s = ws.import_voc(voc, "v")
    assert (s.items, s.annotations) == (3, 3)
    assert s.labels == {"dog": 2, "cat": 1}
    rows = {(r["reference_id"], r["annotation_id"]): r for r in ws.get_dataset("v").annotations().to_pylist()}
    whole = rows[("000001", "1")]
    assert (whole["x"], whole["y"], whole["width"], whole["height"]) == (0, 0, 50, 40)  # the full 50x40 image
    cat = rows[("000001", "2")]
    assert (cat["x"], cat["y"], cat["width"], cat["height"]) == (9, 4, 10, 10)
    assert json.loads(whole["metadata"]) == {"difficult": True, "truncated": False}
    assert json.loads(cat["metadata"]) == {"difficult": False, "truncated": False, "pose": "Left"}
    dog2 = rows[("000002", "1")]
    assert (dog2["x"], dog2["width"]) == (2.5, 7.5) and json.loads(dog2["metadata"])["truncated"] is True
    items = ws.get_dataset("v").items().to_pylist()
    assert [(i["reference_id"], i["width"], i["height"]) for i in items] == [("000001", 50, 40), ("000002", 30, 20),
                                                                             ("000003", 30, 20)]


def test_voc_split_selects_images(ws, voc):
    s = ws.import_voc(voc, "v", split="val")
    assert (s.items, s.annotations) == (2, 1)


def test_voc_box_outside_image_is_refused_unless_clip(ws, voc):
    (voc / "Annotations" / "000003.xml").write_text(_xml("000003", 30, 20, [("dog", (20, 10, 35, 20), {})]))
    with pytest.raises(ValidationError, match="outside the image") as e:
        ws.import_voc(voc, "v")
    assert "000003" in str(e.value) and e.value.field == "x"
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 0
    ws.import_voc(voc, "v", clip=True)
    r = [r for r in ws.get_dataset("v").annotations().to_pylist() if r["reference_id"] == "000003"][0]
    assert (r["x"], r["width"]) == (19, 11)
    ws.import_voc(voc, "kept", clip="keep")  # stored as given, as pycocotools would
    r = [r for r in ws.get_dataset("kept").annotations().to_pylist() if r["reference_id"] == "000003"][0]
    assert (r["x"], r["width"]) == (19, 16)


def test_voc_missing_bndbox_and_missing_image(ws, voc):
    (voc / "Annotations" / "000003.xml").write_text(
        "<annotation><filename>000003.jpg</filename><object><name>dog</name></object></annotation>")
    with pytest.raises(ValidationError, match="bndbox") as e:
        ws.import_voc(voc, "v")
    assert e.value.record == "reference_id '000003', annotation_id '1'"
    (voc / "Annotations" / "000003.xml").unlink()
    (voc / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(ValidationError, match="image file not found"):
        ws.import_voc(voc, "v")
    assert ws.import_voc(voc, "v", check_images=False).items == 2
