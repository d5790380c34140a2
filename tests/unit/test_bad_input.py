"""Bad-input corpus: every invalid record is refused with an error naming the record and the field,
and the refused batch writes nothing (row counts of items, annotations, predictions and runs unchanged).

Covers issue point 6 through every entry: ``ds.append`` / ``ds.annotate`` / ``create_run`` with Arrow
tables and with objects, and the COCO / VOC / YOLO / PennFudan importers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import engine
from engine.errors import ValidationError
from udfs import rle

W, H = 100, 50


@pytest.fixture
def ctx(tmp_path: Path):
    ws = engine.connect()
    ds = ws.create_dataset("d")
    img = tmp_path / "a.png"
    Image.new("RGB", (W, H)).save(img)
    ds.append([engine.DatasetItem(str(img), "a"), engine.DatasetItem(reference_id="b", width=W, height=H)],
              check_images=False)
    ds.annotate([engine.BoxAnnotation("car", "a", x=1, y=1, width=5, height=5, annotation_id="first")])
    ws.add_model("m").create_run("r0", ds, [engine.BoxPrediction("car", "a", x=1, y=1, width=5, height=5,
                                                                  confidence=0.5)])
    yield SimpleNamespace(ws=ws, ds=ds, tmp=tmp_path, img=img)
    ws.close()


def counts(ws) -> tuple:
    return tuple(ws.sql(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM annotations), (SELECT count(*) FROM predictions),"
        " (SELECT count(*) FROM runs), (SELECT count(*) FROM datasets), (SELECT count(*) FROM label_versions)"
    ).to_pylist()[0].values())


def boxes(**cols) -> pa.Table:
    """A two-row box batch on items a and b; keyword columns override."""
    base = {"reference_id": ["a", "b"], "annotation_id": ["x1", "x2"], "label": ["car", "car"],
            "x": [1.0, 2.0], "y": [1.0, 2.0], "width": [3.0, 4.0], "height": [3.0, 4.0]}
    base.update(cols)
    return pa.table(base)


def one_mask(counts_, h=H, w=W, **extra) -> pa.Table:
    return pa.table({"reference_id": ["b"], "annotation_id": ["m"], "label": ["car"], "kind": ["segmentation"],
                     "mask": pa.array([counts_], pa.list_(pa.uint32())), "mask_height": [h], "mask_width": [w], **extra})


def one_polygon(rings) -> pa.Table:
    return pa.table({"reference_id": ["b"], "annotation_id": ["p"], "label": ["car"], "kind": ["polygon"],
                     "polygon": pa.array([rings], pa.list_(pa.list_(pa.float64())))})


def write_json(c, name: str, obj) -> Path:
    p = c.tmp / name
    p.write_text(json.dumps(obj))
    return p


def coco_doc(**over) -> dict:
    d = {"images": [{"id": 1, "file_name": "one.jpg", "width": W, "height": H},
                    {"id": 2, "file_name": "two.jpg", "width": W, "height": H}],
         "categories": [{"id": 1, "name": "car"}],
         "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
                         {"id": 11, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}]}
    d.update(over)
    return d


def coco_ann(**over) -> dict:
    """coco_doc with the second annotation changed."""
    d = coco_doc()
    d["annotations"][1].update(over)
    return d


def import_coco(c, doc, name="g.json"):
    return c.ws.import_coco(write_json(c, name, doc), "imported")


def voc_with_width(c, width: str):
    """A one-image VOC folder whose <size><width> is ``width``, imported."""
    voc = c.tmp / f"voc_{abs(hash(width))}"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "Annotations" / "v1.xml").write_text(
        f"<annotation><filename>v1.jpg</filename><size><width>{width}</width><height>50</height></size>"
        "<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>")
    return c.ws.import_voc(voc, "voc", check_images=False)


def pennfudan_with_metadata(c, text: str):
    """A one-image PennFudan folder with ``metadata.json`` holding ``text``, imported."""
    root = c.tmp / "pf"
    (root / "PNGImages").mkdir(parents=True)
    Image.new("RGB", (W, H)).save(root / "PNGImages" / "P1.png")
    (root / "metadata.json").write_text(text)
    return c.ws.import_pennfudan(root, "pf", check_images=False)


def yolo_line(c, line: str):
    root = c.tmp / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (W, H)).save(root / "images" / "y1.png")
    (root / "labels" / "y1.txt").write_text(line + "\n")
    return c.ws.import_yolo(root, "yolo")


def new_run(name, preds=None):
    return lambda c: c.ws.get_model("m").create_run(name, c.ds, preds or [
        engine.BoxPrediction("car", "a", x=1, y=1, width=2, height=2, confidence=0.5)])


# (case id, action(ctx), field, words the message must contain to name the record)
CASES = [
    # ---- items ------------------------------------------------------------------------------------
    ("item duplicate reference_id", lambda c: c.ds.append(pa.table({"reference_id": ["n", "n"], "width": [1, 1],
                                                                      "height": [1, 1]}), check_images=False),
     "reference_id", ["'n'", "duplicate"]),
    ("item empty reference_id", lambda c: c.ds.append(pa.table({"reference_id": ["ok", " "], "width": [1, 1],
                                                                  "height": [1, 1]}), check_images=False),
     "reference_id", ["row 1"]),
    ("item missing image file", lambda c: c.ds.append([engine.DatasetItem(str(c.img), "n1"),
                                                       engine.DatasetItem(str(c.tmp / "nope.png"), "n2")]),
     "image_location", ["'n2'", "not found"]),
    ("item unreadable image", lambda c: (c.tmp.joinpath("bad.png").write_bytes(b"not a png"),
                                         c.ds.append([engine.DatasetItem(str(c.tmp / "bad.png"), "n3")])),
     "image_location", ["'n3'", "unreadable"]),
    ("item zero width", lambda c: c.ds.append(pa.table({"reference_id": ["n"], "width": [0], "height": [5]}),
                                              check_images=False), "width", ["'n'"]),
    ("item wrong type width", lambda c: c.ds.append(pa.table({"reference_id": ["n", "m"], "width": ["5", "wide"],
                                                              "height": [5, 5]}), check_images=False),
     "width", ["row 1"]),
    ("item metadata not an object", lambda c: c.ds.append(pa.table({"reference_id": ["n"], "width": [5], "height": [5],
                                                                     "metadata": ["[1, 2]"]}), check_images=False),
     "metadata", ["'n'"]),
    # ---- annotations: boxes -------------------------------------------------------------------------
    ("box NaN x", lambda c: c.ds.annotate(boxes(x=[1.0, math.nan])), "x", ["'x2'"]),
    ("box inf width", lambda c: c.ds.annotate(boxes(width=[math.inf, 3.0])), "width", ["'x1'"]),
    ("box negative width", lambda c: c.ds.annotate(boxes(width=[3.0, -1.0])), "width", ["'x2'"]),
    ("box negative height", lambda c: c.ds.annotate([engine.BoxAnnotation("car", "b", x=1, y=1, width=2, height=-2,
                                                                          annotation_id="neg")]),
     "height", ["'neg'"]),
    ("box outside image", lambda c: c.ds.annotate(boxes(x=[1.0, W - 2.0])), "x", ["'x2'", "outside"]),
    ("box left of image", lambda c: c.ds.annotate(boxes(x=[-0.5, 1.0])), "x", ["'x1'", "clip=True"]),
    ("unknown reference_id", lambda c: c.ds.annotate(boxes(reference_id=["a", "zz"])), "reference_id", ["'zz'"]),
    ("duplicate annotation_id", lambda c: c.ds.annotate(boxes(reference_id=["a", "a"], annotation_id=["k", "k"])),
     "annotation_id", ["'k'"]),
    ("wrong type x column", lambda c: c.ds.annotate(boxes(x=["1", "2"])), "x", ["row 0"]),
    ("wrong type x object", lambda c: c.ds.annotate([engine.BoxAnnotation("car", "a", x="abc", y=1, width=2, height=2,
                                                                          annotation_id="t")]), "x", ["'t'"]),
    ("wrong type iscrowd", lambda c: c.ds.annotate(boxes(iscrowd=["no", "yes"])), "iscrowd", ["row 0"]),
    ("empty label", lambda c: c.ds.annotate(boxes(label=["car", ""])), "label", ["'x2'"]),
    ("blank label", lambda c: c.ds.annotate(boxes(label=["  ", "car"])), "label", ["'x1'"]),
    ("missing label", lambda c: c.ds.annotate(boxes(label=[None, "car"])), "label", ["'x1'"]),
    ("empty annotation_id", lambda c: c.ds.annotate(boxes(annotation_id=["ok", ""])), "annotation_id", ["row 1"]),
    ("unknown kind", lambda c: c.ds.annotate(boxes(kind=["box", "circle"])), "kind", ["'x2'"]),
    ("negative area", lambda c: c.ds.annotate(boxes(area=[-1.0, 2.0])), "area", ["'x1'"]),
    ("confidence on ground truth", lambda c: c.ds.annotate(boxes(confidence=[None, 0.5])), "confidence", ["'x2'"]),
    ("metadata invalid JSON", lambda c: c.ds.annotate(boxes(metadata=["{}", "{oops"])), "metadata", ["'x2'"]),
    ("keypoints not triples", lambda c: c.ds.annotate(pa.table({
        "reference_id": ["a"], "annotation_id": ["kp"], "label": ["person"], "kind": ["keypoints"],
        "keypoints": [[1.0, 2.0, 2.0, 3.0]]})), "keypoints", ["'kp'"]),
    # ---- annotations: masks and polygons --------------------------------------------------------------
    ("RLE counts do not sum to h*w", lambda c: c.ds.annotate(one_mask([10, 5, 3])), "mask", ["'m'", "malformed RLE"]),
    ("RLE size differs from image", lambda c: c.ds.annotate(one_mask([H * W // 4], h=H // 2, w=W // 2)),
     "mask", ["'m'"]),
    ("RLE without size", lambda c: c.ds.annotate(pa.table({
        "reference_id": ["b"], "annotation_id": ["m"], "label": ["car"], "mask": pa.array([[H * W]], pa.list_(pa.uint32()))})),
     "mask", ["'m'"]),
    ("polygon odd coordinates", lambda c: c.ds.annotate(one_polygon([[1, 1, 5, 1, 5]])), "polygon", ["'p'"]),
    ("polygon two points", lambda c: c.ds.annotate(one_polygon([[1, 1, 5, 1]])), "polygon", ["'p'"]),
    ("polygon NaN", lambda c: c.ds.annotate(one_polygon([[1, 1, 5, math.nan, 5, 5]])), "polygon", ["'p'"]),
    ("polygon without rings", lambda c: c.ds.annotate(one_polygon([])), "polygon", ["'p'"]),
    # ---- predictions -------------------------------------------------------------------------------
    ("prediction NaN confidence", lambda c: c.ws.get_model("m").create_run("r1", c.ds, boxes(
        confidence=[0.5, math.nan])), "confidence", ["'x2'"]),
    ("prediction unknown reference_id", lambda c: c.ws.get_model("m").create_run("r1", c.ds, boxes(
        reference_id=["nope", "a"], confidence=[0.5, 0.5])), "reference_id", ["'nope'"]),
    ("prediction outside image", lambda c: c.ws.get_model("m").create_run("r1", c.ds, boxes(
        y=[1.0, H - 1.0], confidence=[0.5, 0.5])), "x", ["'x2'"]),
    ("prediction duplicate annotation_id", lambda c: c.ws.get_model("m").create_run("r1", c.ds, boxes(
        reference_id=["b", "b"], annotation_id=["d", "d"], confidence=[0.5, 0.5])), "annotation_id", ["'d'"]),
    ("prediction negative class_pdf", lambda c: c.ws.get_model("m").create_run("r1", c.ds, [
        engine.BoxPrediction("car", "a", x=1, y=1, width=2, height=2, confidence=0.5, class_pdf={"car": -0.1},
                             annotation_id="cp")]), "class_pdf", ["'cp'"]),
    # ---- COCO files ----------------------------------------------------------------------------------
    ("coco unknown image_id", lambda c: import_coco(c, coco_ann(image_id=9)), "image_id", ["annotation id 11"]),
    ("coco unknown category_id", lambda c: import_coco(c, coco_ann(category_id=3)), "category_id", ["annotation id 11"]),
    ("coco duplicate image id", lambda c: import_coco(c, coco_doc(images=[
        {"id": 1, "file_name": "a.jpg", "width": W, "height": H}, {"id": 1, "file_name": "b.jpg", "width": W, "height": H}])),
     "id", ["image id 1", "images[1]"]),
    ("coco duplicate annotation id", lambda c: import_coco(c, coco_ann(id=10)), "id", ["annotation id 10"]),
    ("coco wrong type image_id", lambda c: import_coco(c, coco_ann(image_id="two")), "image_id", ["annotations[1]"]),
    ("coco wrong type bbox", lambda c: import_coco(c, coco_ann(bbox=[1, "x", 3, 4])), "bbox", ["annotation id 11"]),
    ("coco bbox of three values", lambda c: import_coco(c, coco_ann(bbox=[1, 2, 3])), "bbox", ["annotation id 11"]),
    ("coco NaN bbox", lambda c: import_coco(c, coco_ann(bbox=[1, float("nan"), 3, 4])), "y", ["'11'"]),
    ("coco negative bbox width", lambda c: import_coco(c, coco_ann(bbox=[1, 1, -3, 4])), "width", ["'11'"]),
    ("coco bbox outside image", lambda c: import_coco(c, coco_ann(bbox=[90, 1, 30, 4])), "x", ["'11'"]),
    ("coco empty category name", lambda c: import_coco(c, coco_doc(categories=[{"id": 1, "name": " "}])),
     "name", ["category id 1"]),
    ("coco malformed compressed RLE", lambda c: import_coco(c, coco_ann(segmentation={"size": [H, W], "counts": "\x01"})),
     "segmentation", ["annotation id 11"]),
    ("coco RLE counts wrong sum", lambda c: import_coco(c, coco_ann(segmentation={"size": [H, W], "counts": [5, 5]})),
     "mask", ["'11'"]),
    ("coco RLE negative counts", lambda c: import_coco(c, coco_ann(segmentation={"size": [H, W], "counts": [-5, 5]})),
     "segmentation", ["annotation id 11"]),
    ("coco polygon odd coordinates", lambda c: import_coco(c, coco_ann(segmentation=[[1, 1, 5, 1, 5]])),
     "polygon", ["'11'"]),
    ("coco polygon not a list of lists", lambda c: import_coco(c, coco_ann(segmentation=[1, 1, 5, 1, 5, 5])),
     "segmentation", ["annotation id 11"]),
    ("coco iscrowd not 0/1", lambda c: import_coco(c, coco_ann(iscrowd=2)), "iscrowd", ["annotation id 11"]),
    ("coco results missing score", lambda c: (import_coco(c, coco_doc()), c.ws.import_coco(write_json(c, "r.json", [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5},
        {"image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}]), "imported", run="r"))[-1],
     "score", ["results row 1"]),
    ("coco results wrong type", lambda c: (import_coco(c, coco_doc()), c.ws.import_coco(write_json(c, "r.json", [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5},
        {"image_id": "one", "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}]), "imported", run="r"))[-1],
     "image_id", ["results row 1"]),
]

# ---- issue 13 B5: these raised internal exceptions (OverflowError, ArrowInvalid, ConstraintException...)
CASES += [
    ("item width 2^31 (table)", lambda c: c.ds.append(pa.table({"reference_id": ["n"], "width": [2**31], "height": [5]}),
                                                      check_images=False), "width", ["'n'", "2^31"]),
    ("item width 2^31 (object)", lambda c: c.ds.append([engine.DatasetItem(reference_id="n", width=2**31, height=5)],
                                                       check_images=False), "width", ["'n'"]),
    ("item width 2^70 (object)", lambda c: c.ds.append([engine.DatasetItem(reference_id="n", width=2**70, height=5)],
                                                       check_images=False), "width", ["'n'"]),
    ("item width string (object)", lambda c: c.ds.append([engine.DatasetItem(reference_id="n", width="5", height=5)],
                                                         check_images=False), "width", ["'n'"]),
    ("coco image width 2^31", lambda c: import_coco(c, coco_doc(images=[
        {"id": 1, "file_name": "one.jpg", "width": 2**31, "height": H}], annotations=[])), "width", ["'one'"]),
    ("polygon string vertex", lambda c: c.ds.annotate([engine.PolygonAnnotation(
        "car", "b", vertices=[(1, 1), (5, "x"), (5, 5)], annotation_id="p")]), "polygon", ["'p'"]),
    ("run name None", new_run(None), "name", ["run"]),
    ("coco image id 2^70", lambda c: import_coco(c, coco_doc(images=[
        {"id": 2**70, "file_name": "one.jpg", "width": W, "height": H}], annotations=[])), "id", ["images[0]"]),
    ("coco annotation id 2^70", lambda c: import_coco(c, coco_ann(id=2**70)), "id", ["annotations[1]"]),
    ("voc width abc", lambda c: voc_with_width(c, "abc"), "width", ["'v1'"]),
    ("voc width inf", lambda c: voc_with_width(c, "inf"), "width", ["'v1'"]),
    ("pennfudan metadata.json malformed", lambda c: pennfudan_with_metadata(c, "{oops"), "metadata", ["metadata.json"]),
    ("pennfudan metadata.json a list", lambda c: pennfudan_with_metadata(c, "[1]"), "metadata", ["metadata.json"]),
]
# ---- issue 13 B6: these were accepted silently
CASES += [
    ("run name empty", new_run(""), "name", ["run"]),
    ("model name empty", lambda c: c.ws.add_model(""), "name", ["model"]),
    ("model name blank", lambda c: c.ws.add_model(" \t\n"), "name", ["model"]),
    ("item reference_id tab", lambda c: c.ds.append(pa.table({"reference_id": ["ok", "\t"], "width": [1, 1],
                                                               "height": [1, 1]}), check_images=False),
     "reference_id", ["row 1"]),
    ("item reference_id zero-width", lambda c: c.ds.append(pa.table({"reference_id": ["\u200b\u00a0"], "width": [1],
                                                                      "height": [1]}), check_images=False),
     "reference_id", ["row 0"]),
    ("annotation reference_id newline", lambda c: c.ds.annotate(boxes(reference_id=["a", "\n"])), "reference_id",
     ["'x2'"]),
    ("label tab and newline", lambda c: c.ds.annotate(boxes(label=["car", "\t\n"])), "label", ["'x2'"]),
    ("prediction label blank", new_run("r1", [engine.BoxPrediction("\u3000", "a", x=1, y=1, width=2, height=2,
                                                                  confidence=0.5, annotation_id="bl")]),
     "label", ["'bl'"]),
    ("item metadata NaN (object)", lambda c: c.ds.append([engine.DatasetItem(reference_id="n", width=5, height=5,
                                                                             metadata={"v": math.nan})],
                                                         check_images=False), "metadata", ["'n'", "NaN"]),
    ("item metadata NaN (table)", lambda c: c.ds.append(pa.table({"reference_id": ["n"], "width": [5], "height": [5],
                                                                   "metadata": ['{"v": NaN}']}), check_images=False),
     "metadata", ["'n'"]),
    ("annotation metadata Infinity", lambda c: c.ds.annotate(boxes(metadata=['{"s": "NaN"}', '{"v": -Infinity}'])),
     "metadata", ["'x2'"]),
    ("keypoints not triples (object)", lambda c: c.ds.annotate([engine.KeypointsAnnotation(
        "person", "a", keypoints=[1, 2, 2, 3], annotation_id="kp")]), "keypoints", ["'kp'"]),
    ("keypoints ragged tuples (object)", lambda c: c.ds.annotate([engine.KeypointsAnnotation(
        "person", "a", keypoints=[(1, 2, 2), (3, 4)], annotation_id="kp")]), "keypoints", ["'kp'"]),
    ("keypoints on a box, not triples", lambda c: c.ds.annotate(boxes(keypoints=[[1.0, 2.0, 2.0], [1.0, 2.0]])),
     "keypoints", ["'x2'"]),
    ("yolo class 1e30", lambda c: yolo_line(c, "1e30 0.5 0.5 0.1 0.1"), "class", ["'y1'"]),
]

XFAIL: dict[str, str] = {}  # known engine gaps, by case name (none at present)


def _case_params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[case[0]])] if case[0] in XFAIL else []
        yield pytest.param(*case[1:], id=case[0], marks=marks)


@pytest.mark.parametrize("action,field,names", list(_case_params()))
def test_bad_record_is_refused_by_name_and_writes_nothing(ctx, action, field, names):
    before = counts(ctx.ws)
    with pytest.raises(ValidationError) as e:
        action(ctx)
    err = e.value
    msg = str(err)
    assert err.field == field, msg
    assert f"field '{field}'" in msg, msg
    assert err.record is not None, msg
    for w in names:
        assert w in msg, msg
    after = counts(ctx.ws)
    if names and names[0].startswith("results row"):
        assert after[2:4] == before[2:4], msg  # the GT import before it succeeded; no prediction/run written
    else:
        assert after == before, msg


def test_clip_accepts_and_clips_outside_boxes(ctx):
    ctx.ds.annotate(boxes(x=[-2.0, W - 2.0]), clip=True)
    rows = {r["annotation_id"]: r for r in ctx.ds.annotations().to_pylist()}
    assert (rows["x1"]["x"], rows["x1"]["width"]) == (0, 1)
    assert (rows["x2"]["x"], rows["x2"]["width"]) == (W - 2.0, 2)


def test_check_images_false_accepts_missing_files(ctx):
    ctx.ds.append([engine.DatasetItem(str(ctx.tmp / "nope.png"), "n", width=5, height=5)], check_images=False)
    assert ctx.ds.info()["items"] == 3


def test_a_bad_record_anywhere_in_an_import_leaves_no_dataset(ctx):
    """The whole COCO import (dataset, items, annotations, metadata) is one transaction."""
    d = coco_ann(bbox=[1, 1, -3, 4])
    with pytest.raises(ValidationError):
        import_coco(ctx, d)
    assert "imported" not in ctx.ws.list_datasets().column("name").to_pylist()


def test_voc_and_yolo_bad_records(ctx):
    voc = ctx.tmp / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    Image.new("RGB", (W, H)).save(voc / "JPEGImages" / "v1.jpg")
    (voc / "Annotations" / "v1.xml").write_text(
        "<annotation><filename>v1.jpg</filename><size><width>100</width><height>50</height></size>"
        "<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>")
    before = counts(ctx.ws)
    with pytest.raises(ValidationError) as e:
        ctx.ws.import_voc(voc, "voc")
    assert e.value.field == "xmax" and "'v1'" in str(e.value)
    yolo = ctx.tmp / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    Image.new("RGB", (W, H)).save(yolo / "images" / "y1.png")
    (yolo / "labels" / "y1.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n")
    with pytest.raises(ValidationError) as e:
        ctx.ws.import_yolo(yolo, "yolo")
    assert e.value.field == "line" and "annotation_id '2'" in str(e.value)
    assert counts(ctx.ws) == before


def test_mask_with_bad_counts_via_objects_names_it(ctx):
    m = np.zeros((H, W), bool)
    m[1:4, 1:4] = True
    good = rle.encode(m)
    before = counts(ctx.ws)
    with pytest.raises(ValidationError) as e:
        ctx.ds.annotate([engine.SegmentationAnnotation("car", "b", mask=m, annotation_id="ok"),
                         engine.SegmentationAnnotation("car", "b", mask={"size": [H, W], "counts": list(good[:-1])},
                                                       annotation_id="short")])
    assert e.value.field == "mask" and "'short'" in str(e.value)
    assert counts(ctx.ws) == before


def test_valid_rle_dict_via_objects_is_accepted(ctx):
    m = np.zeros((H, W), bool)
    m[1:4, 1:4] = True
    ctx.ds.annotate([engine.SegmentationAnnotation("car", "b", mask={"size": [H, W], "counts": rle.encode(m).tolist()},
                                                   annotation_id="ok")])
    assert ctx.ds.info()["kinds"]["segmentation"] == 1


# ---- issue 13 B3/B5: failures that are not about one record still come as Loupe errors -------------------

def test_deep_json_is_a_loupe_error(ctx):
    p = ctx.tmp / "deep.json"
    p.write_text('{"images": ' + "[" * 200_000 + "]" * 200_000 + "}")
    before = counts(ctx.ws)
    with pytest.raises(engine.errors.LoupeError, match="nested too deeply"):
        ctx.ws.import_coco(p, "deep")
    assert counts(ctx.ws) == before


def test_a_duckdb_failure_inside_an_import_surfaces_the_real_error(ctx, monkeypatch):
    """DuckDB refuses every statement after a failed one ("Current transaction is aborted"); cleanup
    code then raised that and hid the real error."""
    from engine.store import item_values

    def failing_refresh(store, *a, **k):
        store.con.execute("SELECT 'not a number'::INTEGER")

    monkeypatch.setattr(item_values, "refresh", failing_refresh)
    before = counts(ctx.ws)
    with pytest.raises(engine.errors.LoupeError) as e:
        import_coco(ctx, coco_doc())
    assert "Conversion Error" in str(e.value) and "aborted" not in str(e.value), str(e.value)
    assert counts(ctx.ws) == before
    monkeypatch.undo()
    import_coco(ctx, coco_doc())  # the workspace still works
    assert "imported" in ctx.ws.list_datasets().column("name").to_pylist()


def _workspace_file(tmp: Path) -> Path:
    p = tmp / "w.duckdb"
    with engine.connect(p) as ws:
        ws.create_dataset("x").append(pa.table({"reference_id": [str(i) for i in range(2000)], "width": [5] * 2000,
                                                "height": [5] * 2000}), check_images=False)
    return p


@pytest.mark.parametrize("value", ["'abc'", "NULL", "'1.5'"])
def test_a_bad_schema_version_is_refused(tmp_path, value):
    import duckdb

    p = _workspace_file(tmp_path)
    con = duckdb.connect(str(p))
    con.execute(f"UPDATE loupe_meta SET value = {value} WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(engine.errors.SchemaVersionError, match="invalid schema version"):
        engine.connect(p)


def test_a_sqlite_file_is_refused_before_duckdb_reads_it(tmp_path):
    import sqlite3

    p = tmp_path / "s.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(engine.errors.LoupeError) as e:
        engine.connect(p)
    assert "SQLite" in str(e.value) and "extension" not in str(e.value), str(e.value)
    for text in (b"x" * 5, b"hello world, not a database" * 100):
        (tmp_path / "t.txt").write_bytes(text)
        with pytest.raises(engine.errors.LoupeError, match="not a Loupe workspace"):
            engine.connect(tmp_path / "t.txt")
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    engine.connect(empty).close()  # an empty file is a new workspace


@pytest.mark.parametrize("cut", [100, -1])
def test_a_truncated_workspace_is_a_loupe_error(tmp_path, cut):
    p = _workspace_file(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[:cut])
    with pytest.raises(engine.errors.LoupeError, match="cannot open workspace"):
        engine.connect(p)
