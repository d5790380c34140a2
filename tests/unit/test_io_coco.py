"""COCO import/export: field mapping, item order, results files, both JSON parsers, round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import engine
from engine.errors import LoupeError, ValidationError
from engine.io import coco
from udfs import rle

H, W = 30, 40


def _mask(seed: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    r = np.random.default_rng(seed)
    y, x = r.integers(0, H - 8), r.integers(0, W - 8)
    m[y:y + 6, x:x + 7] = True
    m[r.integers(0, H), r.integers(0, W)] = True
    return m


def coco_gt() -> dict:
    """A small instances dict with every geometry kind, unordered image ids and extra keys."""
    crowd = _mask(1)
    comp = _mask(2)
    images = [
        {"id": 7, "file_name": "x/seven.jpg", "width": W, "height": H, "license": 2, "coco_url": "http://h/seven.jpg"},
        {"id": 3, "file_name": "three.jpg", "width": W, "height": H},
        {"id": 5, "file_name": "five.png", "width": W, "height": H, "date_captured": "2013"},
    ]
    cats = [{"id": 1, "name": "cat", "supercategory": "animal"},
            {"id": 4, "name": "person", "supercategory": "person", "keypoints": ["nose", "eye"]}]
    anns = [
        {"id": 11, "image_id": 7, "category_id": 1, "bbox": [1.5, 2.0, 10.25, 8.0], "area": 55.5, "iscrowd": 0,
         "segmentation": [[1.5, 2.0, 11.75, 2.0, 11.75, 10.0], [20, 20, 25, 20, 25, 25, 20, 25]]},
        {"id": 12, "image_id": 3, "category_id": 4, "bbox": [0, 0, 12, 9], "area": float(crowd.sum()), "iscrowd": 1,
         "segmentation": {"size": [H, W], "counts": [int(c) for c in rle.encode(crowd)]}},
        {"id": 13, "image_id": 5, "category_id": 1, "bbox": [3, 4, 5, 6], "area": 30.0, "iscrowd": 0,
         "attributes": {"occluded": True}},
        {"id": 14, "image_id": 3, "category_id": 1, "bbox": [2, 2, 7, 6], "area": float(comp.sum()), "iscrowd": 0,
         "segmentation": {"size": [H, W], "counts": rle.compress(rle.encode(comp))}},
        {"id": 15, "image_id": 5, "category_id": 4, "bbox": [5, 5, 10, 10], "area": 80.0, "iscrowd": 0,
         "segmentation": [], "keypoints": [6, 7, 2, 9, 8, 1], "num_keypoints": 2},
        {"id": 9, "image_id": 7, "category_id": 4, "bbox": [30, 20, 9.5, 9.5], "area": 90.25, "iscrowd": 0},
    ]
    return {"info": {"description": "unit"}, "licenses": [{"id": 2, "name": "x"}], "images": images,
            "annotations": anns, "categories": cats}


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def gt_file(tmp_path: Path) -> Path:
    return write(tmp_path / "gt.json", coco_gt())


def test_items_in_ascending_coco_id_order_with_metadata(ws, gt_file):
    s = ws.import_coco(gt_file, "d")
    assert (s.items, s.annotations) == (3, 6)
    items = ws.get_dataset("d").items().to_pylist()
    assert [json.loads(i["metadata"])["coco_id"] for i in items] == [3, 5, 7]
    assert [i["reference_id"] for i in items] == ["three", "five", "seven"]
    seven = json.loads(items[2]["metadata"])
    assert seven["file_name"] == "x/seven.jpg" and seven["license"] == 2
    assert items[2]["image_location"] == "http://h/seven.jpg"  # no image dir: the coco_url
    assert items[0]["image_location"] == "three.jpg" and (items[0]["width"], items[0]["height"]) == (W, H)


def test_annotation_fields_kinds_and_file_order(ws, gt_file):
    ws.import_coco(gt_file, "d")
    rows = ws.get_dataset("d").annotations().to_pylist()
    assert [r["annotation_id"] for r in rows] == ["11", "12", "13", "14", "15", "9"]  # file order, not id order
    by = {r["annotation_id"]: r for r in rows}
    src = {a["id"]: a for a in coco_gt()["annotations"]}
    assert by["11"]["kind"] == "polygon" and by["11"]["polygon"] == [[1.5, 2.0, 11.75, 2.0, 11.75, 10.0],
                                                                      [20, 20, 25, 20, 25, 25, 20, 25]]
    assert [by["11"][k] for k in ("x", "y", "width", "height")] == [1.5, 2.0, 10.25, 8.0]  # bbox field, as given
    assert by["11"]["area"] == 55.5  # COCO's area field, not recomputed
    assert by["12"]["kind"] == "segmentation" and by["12"]["iscrowd"] is True
    assert np.array_equal(rle.decode(by["12"]["mask"], H, W), _mask(1))
    assert by["14"]["kind"] == "segmentation" and np.array_equal(rle.decode(by["14"]["mask"], H, W), _mask(2))
    assert by["13"]["kind"] == "box" and json.loads(by["13"]["metadata"]) == {"attributes": {"occluded": True}}
    assert by["15"]["kind"] == "box" and by["15"]["keypoints"] == [6, 7, 2, 9, 8, 1]
    assert by["15"]["keypoint_names"] == ["nose", "eye"]
    for aid, r in by.items():
        assert r["label"] == ("cat" if src[int(aid)]["category_id"] == 1 else "person")
        assert r["area"] == src[int(aid)]["area"]


def test_categories_kept_in_dataset_metadata(ws, gt_file):
    ws.import_coco(gt_file, "d")
    meta = json.loads(ws.sql("SELECT metadata::VARCHAR AS m FROM datasets").column("m")[0].as_py())
    assert meta["coco"]["categories"] == coco_gt()["categories"]
    assert meta["coco"]["info"] == {"description": "unit"}


def test_reference_id_falls_back_when_stems_collide(tmp_path, ws):
    d = coco_gt()
    d["images"][1]["file_name"] = "a/seven.jpg"  # same stem as x/seven.jpg
    ws.import_coco(write(tmp_path / "g.json", d), "d")
    refs = ws.get_dataset("d").items().column("reference_id").to_pylist()
    assert refs == ["a/seven.jpg", "five.png", "x/seven.jpg"]


def test_images_dir_reads_and_checks_images(tmp_path, ws):
    from PIL import Image

    d = coco_gt()
    (tmp_path / "img" / "x").mkdir(parents=True)
    for im in d["images"]:
        Image.new("RGB", (W, H)).save(tmp_path / "img" / im["file_name"])
    s = ws.import_coco(write(tmp_path / "g.json", d), "d", images_dir=tmp_path / "img")
    assert s.items == 3
    locs = ws.get_dataset("d").items().column("image_location").to_pylist()
    assert all(Path(p).is_file() for p in locs)
    (tmp_path / "img" / "five.png").unlink()
    with pytest.raises(ValidationError, match="image file not found") as e:
        ws.import_coco(tmp_path / "g.json", "d2", images_dir=tmp_path / "img")
    assert e.value.field == "image_location" and "five" in str(e.value)
    assert ws.sql("SELECT count(*) AS n FROM datasets WHERE name = 'd2'").column("n")[0].as_py() == 0


def _results(kind: str) -> list[dict]:
    if kind == "bbox":
        return [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
                {"image_id": 7, "category_id": 4, "bbox": [5.5, 6, 7, 8.25], "score": 0.25},
                {"image_id": 5, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5}]
    m = _mask(3)
    return [{"image_id": 3, "category_id": 1, "segmentation": {"size": [H, W], "counts": rle.compress(rle.encode(m))},
             "score": 0.75},
            {"image_id": 7, "category_id": 4, "segmentation": {"size": [H, W], "counts": rle.compress(rle.encode(_mask(4)))},
             "score": 0.5}]


def test_bbox_results_become_a_run_in_file_order(tmp_path, ws, gt_file):
    res = write(tmp_path / "dets.json", _results("bbox"))
    s = ws.import_coco(gt_file, "d", results=res)
    assert (s.run, s.predictions) == ("dets", 3)
    p = ws.get_run("dets").predictions().to_pylist()
    assert [r["confidence"] for r in p] == [0.9, 0.25, 0.5]
    assert [r["reference_id"] for r in p] == ["five", "seven", "five"]
    assert [r["label"] for r in p] == ["cat", "person", "cat"]
    assert [(r["x"], r["y"], r["width"], r["height"]) for r in p][1] == (5.5, 6, 7, 8.25)
    assert [r["area"] for r in p] == [12, 7 * 8.25, 4]  # loadRes: w * h


def test_segm_results_take_box_and_area_from_the_mask(tmp_path, ws, gt_file):
    ws.import_coco(gt_file, "d")
    s = ws.import_coco(write(tmp_path / "segm.json", _results("segm")), "d", run="segm")  # results file as PATH
    assert s.predictions == 2
    p = ws.get_run("segm").predictions().to_pylist()
    m = _mask(3)
    ys, xs = np.nonzero(m)
    assert p[0]["kind"] == "segmentation" and p[0]["area"] == m.sum()
    assert (p[0]["x"], p[0]["y"], p[0]["width"], p[0]["height"]) == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                                                     ys.max() - ys.min() + 1)


def test_results_with_unknown_ids_are_refused_and_write_nothing(tmp_path, ws, gt_file):
    ws.import_coco(gt_file, "d")
    for field, value in (("image_id", 99), ("category_id", 2)):
        bad = _results("bbox")
        bad[2][field] = value
        with pytest.raises(ValidationError) as e:
            ws.import_coco(write(tmp_path / "r.json", bad), "d", run="r")
        assert e.value.field == field and e.value.record == "results row 2"
        assert ws.sql("SELECT count(*) AS n FROM predictions").column("n")[0].as_py() == 0
        assert ws.sql("SELECT count(*) AS n FROM runs").column("n")[0].as_py() == 0


def test_bad_results_given_with_the_ground_truth_write_nothing(tmp_path, ws, gt_file):
    """The ground truth is stored while DuckDB still reads the results; a results error after that
    (unknown id, unreadable file) rolls the ground truth back too."""
    bad = _results("bbox")
    bad[1]["image_id"] = 99
    for res, err in ((write(tmp_path / "r.json", bad), ValidationError), (write(tmp_path / "x.json", "[{]"), LoupeError)):
        with pytest.raises(err):
            ws.import_coco(gt_file, "d", results=res, run="r")
        for table in ("datasets", "items", "annotations", "predictions", "runs"):
            assert ws.sql(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py() == 0, table


def test_duckdb_and_json_results_parsers_agree(tmp_path):
    rows = _results("bbox") + _results("segm") + [
        {"image_id": 5, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]], "score": 0.1},
        {"image_id": 3, "category_id": 4, "segmentation": {"size": [H, W], "counts": [5, 3, H * W - 8]}, "score": 0.2},
        {"image_id": 3, "category_id": 4, "keypoints": [1, 2, 2, 3, 4, 0], "score": 0.3},
    ]
    f = write(tmp_path / "r.json", rows)
    fast = coco.read_results_raw(f)
    slow = coco.raw_from_records(rows, str, gt=False)
    assert fast.num_rows == slow.num_rows == len(rows)
    for name in coco.RAW_SCHEMA.names:
        assert fast.column(name).to_pylist() == slow.column(name).to_pylist(), name


def test_round_trip_import_export_import_is_lossless(tmp_path, ws, gt_file):
    ws.import_coco(gt_file, "a", results=write(tmp_path / "dets.json", _results("segm")), run="segm")
    a = ws.get_dataset("a")
    out = tmp_path / "out.json"
    a.export_coco(out)
    a.export_coco(tmp_path / "res.json", run="segm")
    ws.import_coco(out, "b", results=tmp_path / "res.json", run="segm_b")
    b = ws.get_dataset("b")
    ta, tb = a.annotations(), b.annotations()
    assert ta.num_rows == 6
    for name in ta.column_names:  # field by field, masks and polygons included
        assert ta.column(name).to_pylist() == tb.column(name).to_pylist(), name
    assert a.items().to_pylist() == b.items().to_pylist()
    pa_, pb = ws.get_run("segm").predictions(), ws.get_run("segm_b").predictions()
    for name in ("reference_id", "kind", "label", "x", "y", "width", "height", "mask", "confidence", "area"):
        assert pa_.column(name).to_pylist() == pb.column(name).to_pylist(), name
    exported = json.loads(out.read_text())
    assert [c["id"] for c in exported["categories"]] == [1, 4]
    assert sorted(im["id"] for im in exported["images"]) == [3, 5, 7]
    assert [x["id"] for x in exported["annotations"]] == [11, 12, 13, 14, 15, 9]


def test_export_of_a_dataset_built_in_python_loads_in_pycocotools(tmp_path, ws):
    coco_api = pytest.importorskip("pycocotools.coco")
    ds = ws.create_dataset("py")
    ds.append([engine.DatasetItem(reference_id="img.1", width=W, height=H),
               engine.DatasetItem(reference_id="b", width=W, height=H)], check_images=False)
    ds.annotate([engine.BoxAnnotation("car", "img.1", x=1, y=2, width=3, height=4, annotation_id="c1"),
                 engine.PolygonAnnotation("dog", "b", vertices=[(1, 1), (9, 1), (9, 9)], annotation_id="p"),
                 engine.SegmentationAnnotation("dog", "b", mask=_mask(5), annotation_id="m")])
    out = tmp_path / "py.json"
    ds.export_coco(out)
    g = coco_api.COCO(str(out))
    assert len(g.getImgIds()) == 2 and len(g.getAnnIds()) == 3
    assert sorted(c["name"] for c in g.loadCats(g.getCatIds())) == ["car", "dog"]
    m = [a for a in g.loadAnns(g.getAnnIds()) if "counts" in str(a.get("segmentation"))][0]
    assert np.array_equal(g.annToMask(m).astype(bool), _mask(5))
    ws.import_coco(out, "again")  # reference_ids survive (img.1 is not a file stem)
    assert ws.get_dataset("again").items().column("reference_id").to_pylist() == ["img.1", "b"]
    assert ws.get_dataset("again").annotations().column("area").to_pylist() == ds.annotations().column("area").to_pylist()


def test_not_json_is_a_clear_error(tmp_path, ws):
    f = tmp_path / "bad.json"
    f.write_text('{"images": [')
    with pytest.raises(LoupeError, match="not valid JSON.*line 1"):
        ws.import_coco(f, "d")
