"""YOLO txt import: denormalization, class names (classes.txt / data.yaml), predictions, errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engine.errors import ValidationError
from engine.io.yolo import parse_yaml_names

W, H = 200, 100


@pytest.fixture
def yolo(tmp_path: Path) -> Path:
    root = tmp_path / "y"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.new("RGB", (W, H)).save(root / "images" / "train" / f"{name}.jpg")
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.2 0.2 0.2\n")
    (root / "labels/train/b.txt").write_text("\n2 0.5 0.5 1.0 1.0\n")  # blank line, whole image
    (root / "classes.txt").write_text("person\ncar\ndog\n")
    return root


def test_yolo_boxes_in_pixels(ws, yolo):
    s = ws.import_yolo(yolo, "y")
    assert (s.items, s.annotations) == (3, 3)  # c has no label file: an item without boxes
    rows = {(r["reference_id"], r["annotation_id"]): r for r in ws.get_dataset("y").annotations().to_pylist()}
    p = rows[("train/a", "1")]
    assert (p["label"], p["x"], p["y"], p["width"], p["height"]) == ("person", 80, 30, 40, 40)
    car = rows[("train/a", "2")]
    assert car["label"] == "car" and car["x"] == pytest.approx(0) and car["y"] == pytest.approx(10)
    whole = rows[("train/b", "2")]  # line 2 (line 1 is blank)
    assert (whole["label"], whole["x"], whole["y"], whole["width"], whole["height"]) == ("dog", 0, 0, W, H)
    items = ws.get_dataset("y").items().to_pylist()
    assert [(i["reference_id"], i["width"], i["height"]) for i in items] == [("train/a", W, H), ("train/b", W, H),
                                                                             ("train/c", W, H)]


def test_yolo_predictions_with_confidence_become_a_run(ws, yolo, tmp_path):
    pred = tmp_path / "preds" / "train"
    pred.mkdir(parents=True)
    (pred / "a.txt").write_text("0 0.5 0.5 0.2 0.4 0.9\n2 0.5 0.5 0.1 0.1 0.25\n")
    s = ws.import_yolo(yolo, "y", predictions=tmp_path / "preds", run="det")
    assert (s.run, s.predictions) == ("det", 2)
    p = ws.get_run("det").predictions().to_pylist()
    assert [(r["label"], r["confidence"], r["width"]) for r in p] == [("person", 0.9, 40), ("dog", 0.25, 20)]
    (pred / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    with pytest.raises(ValidationError, match="expected 6 values"):
        ws.import_yolo(yolo, "y2", predictions=tmp_path / "preds", run="det2")


def test_yolo_names_from_data_yaml(ws, yolo):
    (yolo / "classes.txt").unlink()
    (yolo / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: person\n  1: car\n  2: 'hot dog'\n")
    ws.import_yolo(yolo, "y")
    assert ws.get_dataset("y").info()["labels"] == {"car": 1, "hot dog": 1, "person": 1}


def test_parse_yaml_names_forms():
    assert parse_yaml_names("nc: 2\nnames: ['a b', \"c\"]\n") == ["a b", "c"]
    assert parse_yaml_names("names:\n  - person\n  - car  # comment\ntrain: x\n") == ["person", "car"]
    assert parse_yaml_names("names:\n  1: car\n  0: person\n") == ["person", "car"]
    assert parse_yaml_names("names: {0: a, 1: b}\n") == ["a", "b"]
    assert parse_yaml_names("names: [a,\n  b, c]\n") == ["a", "b", "c"]
    assert parse_yaml_names("train: x\n") is None


def test_yolo_errors_name_the_line(ws, yolo):
    (yolo / "labels/train/b.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValidationError, match="class 7") as e:
        ws.import_yolo(yolo, "y")
    assert e.value.record == "reference_id 'train/b', annotation_id '1'" and e.value.field == "class"
    (yolo / "labels/train/b.txt").write_text("0 0.5 zero 0.1 0.1\n")
    with pytest.raises(ValidationError, match="not a number"):
        ws.import_yolo(yolo, "y")
    (yolo / "labels/train/b.txt").write_text("0 0.95 0.5 0.2 0.2\n")  # right edge at 1.05 * W
    with pytest.raises(ValidationError, match="outside the image"):
        ws.import_yolo(yolo, "y")
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 0
    (yolo / "labels/train/zzz.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValidationError, match="has no image"):
        ws.import_yolo(yolo, "y")


def test_yolo_rounding_overshoot_is_clamped(ws, yolo):
    (yolo / "labels/train/b.txt").write_text("0 0.9 0.5 0.200001 1.000001\n")  # 6-decimal rounding
    ws.import_yolo(yolo, "y")
    r = [r for r in ws.get_dataset("y").annotations().to_pylist() if r["reference_id"] == "train/b"][0]
    assert r["x"] + r["width"] == W and r["y"] == 0 and r["height"] == H
