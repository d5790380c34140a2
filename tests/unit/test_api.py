"""Python API: datasets, items, annotations with history, models and runs."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import engine
from engine.errors import AlreadyExistsError, LoupeWarning, NotFoundError, ValidationError


@pytest.fixture
def ds(ws):
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem(f"{r}.png", r, width=100, height=80, metadata={"cam": "rear", "n": i})
              for i, r in enumerate(["a", "b", "c"])], check_images=False)
    return d


def count(ws, table):
    return ws.sql(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_dataset_lifecycle(ws):
    ws.create_dataset("one")
    with pytest.raises(AlreadyExistsError):
        ws.create_dataset("one")
    assert ws.get_dataset("one").name == "one"
    with pytest.raises(NotFoundError, match="no dataset named 'two'; datasets: one"):
        ws.get_dataset("two")
    ws.delete_dataset("one")
    assert ws.list_datasets().num_rows == 0


def test_append_skips_existing_unless_update(ws, ds):
    r = ds.append([engine.DatasetItem("new.png", "a", width=5, height=5), engine.DatasetItem("d.png", "d", width=5, height=5)],
                  check_images=False)
    assert r == {"new": 1, "updated": 0, "ignored": 1}
    items = {row["reference_id"]: row for row in ds.items().to_pylist()}
    assert items["a"]["image_location"] == "a.png"
    r = ds.append([engine.DatasetItem("new.png", "a", width=5, height=5)], update=True, check_images=False)
    assert r == {"new": 0, "updated": 1, "ignored": 0}
    items = {row["reference_id"]: row for row in ds.items().to_pylist()}
    assert items["a"]["image_location"] == "new.png" and items["a"]["width"] == 5
    assert count(ws, "items") == 4


def test_append_reads_sizes_from_headers_and_checks_images(ws, tmp_path):
    ds = ws.create_dataset("imgs")
    Image.new("RGB", (37, 21)).save(tmp_path / "x.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    ds.append([engine.DatasetItem(str(tmp_path / "x.png"), "x")])
    row = ds.items().to_pylist()[0]
    assert (row["width"], row["height"]) == (37, 21)
    with pytest.raises(ValidationError, match=r"reference_id 'm'.*image_location.*not found"):
        ds.append([engine.DatasetItem(str(tmp_path / "missing.png"), "m")])
    with pytest.raises(ValidationError, match=r"reference_id 'b'.*unreadable"):
        ds.append([engine.DatasetItem(str(tmp_path / "x.png"), "ok"), engine.DatasetItem(str(tmp_path / "bad.png"), "b")])
    assert count(ws, "items") == 1  # the failed batch wrote nothing
    ds.append([engine.DatasetItem(str(tmp_path / "missing.png"), "m")], check_images=False)
    assert count(ws, "items") == 2


def test_append_accepts_arrow(ws):
    ds = ws.create_dataset("arrow")
    t = pa.table({"reference_id": ["p", "q"], "image_location": ["p.jpg", "q.jpg"], "width": [10, 20],
                  "height": [30, 40], "metadata": [json.dumps({"k": 1}), None]})
    assert ds.append(t, check_images=False)["new"] == 2
    assert ds.items().column("width").to_pylist() == [10, 20]


def test_update_item_metadata_merges(ds):
    ds.update_item_metadata({"a": {"weather": "rain", "n": 9}})
    meta = json.loads(ds.items().to_pylist()[0]["metadata"])
    assert meta == {"cam": "rear", "n": 9, "weather": "rain"}
    with pytest.raises(ValidationError, match="reference_id 'zz'"):
        ds.update_item_metadata({"zz": {"a": 1}})


def test_annotate_idempotent_and_update_keeps_history(ws, ds):
    boxes = [engine.BoxAnnotation("person", "a", "1", x=1, y=2, width=3, height=4),
             engine.BoxAnnotation("person", "b", "2", x=5, y=5, width=10, height=10)]
    assert ds.annotate(boxes)["new"] == 2
    again = ds.annotate(boxes)
    assert again["new"] == 0 and again["ignored"] == 2 and again["label_version"] == 1
    moved = [engine.BoxAnnotation("person", "a", "1", x=1, y=2, width=30, height=4)]
    assert ds.annotate(moved)["ignored"] == 1  # not replaced without update=True
    r = ds.annotate(moved, update=True, author="ann", reason="too narrow")
    assert r == {"new": 0, "updated": 1, "ignored": 0, "label_version": 2}
    assert sorted(ds.annotations().column("width").to_pylist()) == [10, 30]
    assert sorted(ds.annotations(label_version=1).column("width").to_pylist()) == [3, 10]
    versions = ds.label_versions().to_pylist()
    assert [(v["version"], v["added"], v["changed"]) for v in versions] == [(1, 2, 0), (2, 0, 1)]
    assert versions[1]["reason"] == "too narrow" and versions[1]["author"] == "ann"
    assert count(ws, "annotations") == 3  # the old version is kept


def test_annotations_without_ids_are_idempotent(ds):
    b = [engine.BoxAnnotation("person", "a", x=1, y=2, width=3, height=4)] * 2  # two identical boxes
    assert ds.annotate(b)["new"] == 2
    assert ds.annotate(b)["new"] == 0
    assert len(set(ds.annotations().column("annotation_id").to_pylist())) == 2


def test_delete_annotations_versions(ds):
    ds.annotate([engine.BoxAnnotation("person", "a", "1", x=1, y=2, width=3, height=4)])
    assert ds.delete_annotations(["1"], reason="spurious") == 1
    assert ds.annotations().num_rows == 0
    assert ds.annotations(label_version=1).num_rows == 1
    with pytest.raises(NotFoundError):
        ds.delete_annotations(["1"])


def test_all_kinds_roundtrip(ds):
    mask = np.zeros((80, 100), bool)
    mask[10:20, 30:35] = True
    ds.annotate([
        engine.BoxAnnotation("car", "a", "box", x=1, y=2, width=3, height=4),
        engine.PolygonAnnotation("car", "a", "poly", vertices=[(10, 10), (20, 10), (20, 30)]),
        engine.SegmentationAnnotation("car", "b", "seg", mask=mask),
        engine.CategoryAnnotation("night", "c", "cat"),
        engine.KeypointsAnnotation("person", "c", "kp", keypoints=[(1, 2, 2), (3, 4, 1)], names=["nose", "eye"]),
    ])
    rows = {r["annotation_id"]: r for r in ds.annotations().to_pylist()}
    assert rows["box"]["area"] == 12
    assert (rows["poly"]["x"], rows["poly"]["y"], rows["poly"]["width"], rows["poly"]["height"]) == (10, 10, 10, 20)
    assert rows["poly"]["polygon"] == [[10, 10, 20, 10, 20, 30]]
    seg = rows["seg"]
    assert (seg["x"], seg["y"], seg["width"], seg["height"], seg["area"]) == (30, 10, 5, 10, 50)
    assert sum(seg["mask"]) == 80 * 100
    assert rows["cat"]["kind"] == "category" and rows["cat"]["x"] is None
    assert rows["kp"]["keypoints"] == [1, 2, 2, 3, 4, 1] and rows["kp"]["keypoint_names"] == ["nose", "eye"]
    assert ds.info()["kinds"] == {"box": 1, "category": 1, "keypoints": 1, "polygon": 1, "segmentation": 1}


def test_clip_policy(ws, ds):
    with pytest.raises(ValidationError, match=r"reference_id 'a'.*field 'x'.*outside the image"):
        ds.annotate([engine.BoxAnnotation("p", "a", "o", x=90, y=70, width=20, height=20)])
    ds.annotate([engine.BoxAnnotation("p", "a", "o", x=90, y=70, width=20, height=20)], clip=True)
    r = ds.annotations().to_pylist()[0]
    assert (r["x"], r["y"], r["width"], r["height"], r["area"]) == (90, 70, 10, 10, 100)


def test_models_and_runs(ws, ds):
    m = ws.add_model("detector", "det-v1")
    with pytest.raises(AlreadyExistsError, match="named 'detector'"):
        ws.add_model("other", "det-v1")
    assert ws.add_model("detector", "det-v1").id == m.id  # the same model again: get-or-create
    run = m.create_run("r1", ds, [engine.BoxPrediction("person", "a", x=1, y=1, width=2, height=2, confidence=0.7,
                                                       class_pdf={"person": 0.7, "car": 0.3})])
    p = run.predictions().to_pylist()[0]
    assert p["confidence"] == 0.7 and dict(p["class_pdf"]) == {"person": 0.7, "car": 0.3} and p["area"] == 4
    assert ws.get_run("r1").dataset.name == "d"
    with pytest.raises(AlreadyExistsError, match="exist_ok=True returns it"):
        m.create_run("r1", ds, [])
    with pytest.warns(LoupeWarning, match="already exists with 1 predictions; the 0 given were not stored"):
        assert m.create_run("r1", ds, [], exist_ok=True).id == run.id  # get-or-create (issue 13, D15)
    with pytest.raises(AlreadyExistsError, match="another model"):
        ws.add_model("second").create_run("r1", ds, [], exist_ok=True)
    with pytest.raises(ValidationError, match="confidence is NaN"):
        m.create_run("r2", ds, [engine.BoxPrediction("person", "a", x=1, y=1, width=2, height=2, confidence=float("nan"))])
    assert ws.list_runs().column("name").to_pylist() == ["r1"]  # the failed run left nothing
    ws.delete_dataset("d")
    assert count(ws, "predictions") == 0 and count(ws, "runs") == 0 and count(ws, "items") == 0
