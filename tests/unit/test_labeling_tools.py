"""Round trip to labeling tools: a slice exported as a CVAT task / Label Studio tasks, the tool's export
(written the way those tools write it) imported back as ONE label version with ids and history kept."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

import engine


@pytest.fixture()
def ds(tmp_path):
    ws = engine.connect()
    d = ws.create_dataset("street")
    for ref in ("a", "b", "c"):
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / f"{ref}.png")
    d.append([engine.DatasetItem(image_location=str(tmp_path / f"{r}.png"), reference_id=r) for r in "abc"])
    mask = np.zeros((48, 64), bool)
    mask[5:10, 5:10] = True
    d.annotate([
        engine.BoxAnnotation(label="pedestrian", reference_id="a", annotation_id="a1", x=1.123, y=2, width=10.5, height=20),
        engine.BoxAnnotation(label="pedestrian", reference_id="a", annotation_id="a2", x=30, y=5, width=8, height=16),
        engine.PolygonAnnotation(label="car", reference_id="a", annotation_id="a3",
                                 vertices=[(40, 30), (60, 30), (60, 45)]),
        engine.CategoryAnnotation(label="day", reference_id="a", annotation_id="a4"),
        engine.SegmentationAnnotation(label="pedestrian", reference_id="a", annotation_id="a5", mask=mask),
        engine.BoxAnnotation(label="pedestrian", reference_id="b", annotation_id="b1", x=3, y=3, width=9, height=9),
        engine.BoxAnnotation(label="pedestrian", reference_id="c", annotation_id="c1", x=4, y=4, width=9, height=9),
    ])
    d.create_slice("errors", reference_ids=["a", "b"])
    yield d
    ws.close()


def current(d) -> dict[tuple[str, str], tuple]:
    return {(r["reference_id"], r["annotation_id"]): (r["kind"], r["label"], r["x"], r["y"], r["width"], r["height"],
                                                      r["polygon"]) for r in d.annotations().to_pylist()}


def cvat_edit(src, dst):
    """What a CVAT user produces: coordinates rewritten with 2 decimals, one box moved, one relabelled,
    one deleted, one new box (empty loupe_id), the task meta CVAT adds on export."""
    tree = ET.parse(src)
    root = tree.getroot()
    task = root.find("meta/task")
    for tag, text in (("id", "17"), ("created", "2026-12-01 09:00:00.000000+00:00"), ("overlap", "0")):
        ET.SubElement(task, tag).text = text
    ET.SubElement(root.find("meta"), "dumped").text = "2026-12-01 10:00:00.000000+00:00"
    for el in root.iter():
        for k in ("xtl", "ytl", "xbr", "ybr"):
            if k in el.attrib:
                el.set(k, f"{float(el.get(k)):.2f}")
        if "points" in el.attrib:
            el.set("points", ";".join(",".join(f"{float(c):.2f}" for c in p.split(",")) for p in el.get("points").split(";")))
    img_a = next(i for i in root.iter("image") if i.get("name") == "a.png")
    img_b = next(i for i in root.iter("image") if i.get("name") == "b.png")
    shapes = {s.find("attribute").text: s for s in img_a}
    shapes["a1"].set("xbr", "15.00")               # resize
    shapes["a2"].set("label", "cyclist")           # relabel
    img_a.remove(shapes["a3"])                     # delete the polygon
    new = ET.SubElement(img_b, "box", label="pedestrian", source="manual", occluded="0", xtl="20.00", ytl="20.00",
                        xbr="30.00", ybr="40.00", z_order="0")
    ET.SubElement(new, "attribute", name="loupe_id")  # CVAT writes the text attribute's empty default
    tree.write(dst, encoding="utf-8", xml_declaration=True)


def test_cvat_round_trip(ds, tmp_path):
    before = current(ds)
    out = ds.export_labels("cvat", tmp_path / "task.xml", slice="errors")
    assert out == {"images": 2, "shapes": 5, "path": str(tmp_path / "task.xml"), "label_version": ds.label_version}
    root = ET.parse(tmp_path / "task.xml").getroot()
    assert [i.get("name") for i in root.iter("image")] == ["a.png", "b.png"]
    assert {l.find("name").text for l in root.iter("label")} == {"pedestrian", "car", "day"}
    # unchanged export re-imported: nothing changes (no version)
    same = ds.import_labels("cvat", tmp_path / "task.xml")
    assert (same["added"], same["changed"], same["deleted"], same["unchanged"]) == (0, 0, 0, 5)
    assert current(ds) == before
    cvat_edit(tmp_path / "task.xml", tmp_path / "edited.xml")
    v0 = ds.label_version
    r = ds.import_labels("cvat", tmp_path / "edited.xml", reason="fixed in CVAT", author="ana")
    assert (r["added"], r["changed"], r["deleted"], r["unchanged"]) == (1, 2, 1, 2)
    assert r["label_version"] == v0 + 1
    after = current(ds)
    assert after[("a", "a1")][:6] == ("box", "pedestrian", 1.12, 2.0, pytest.approx(13.88), 20.0)
    assert after[("a", "a2")][1] == "cyclist"
    assert ("a", "a3") not in after
    assert after[("a", "a5")] == before[("a", "a5")] and after[("c", "c1")] == before[("c", "c1")]  # kept
    new = [k for k in after if k[0] == "b" and k[1] != "b1"]
    assert len(new) == 1 and after[new[0]][:6] == ("box", "pedestrian", 20.0, 20.0, 10.0, 20.0)
    assert sorted((c["action"], c["annotation_id"]) for c in r["changes"].to_pylist()) == \
        sorted([("change", "a1"), ("change", "a2"), ("delete", "a3"), ("add", new[0][1])])
    log = ds.label_versions().to_pylist()[-1]
    assert log["author"] == "ana" and log["reason"] == "fixed in CVAT"
    ds.undo()
    assert current(ds) == before


def ls_export(src, dst):
    """A Label Studio JSON export: the annotator accepted the pre-annotations (region ids kept), moved one
    box, relabelled the category, deleted a box and drew a new one; task c was never annotated."""
    tasks = json.loads(src.read_text())
    out = []
    for n, t in enumerate(tasks, 1):
        result = [dict(r, origin="prediction") for r in t["predictions"][0]["result"]]
        if t["data"]["reference_id"] == "a":
            for r in result:
                if r["id"] == "a1":
                    r["value"] = dict(r["value"], x=r["value"]["x"] + 5 * 100 / 64)
                if r["id"] == "a4":
                    r["value"] = {"choices": ["night"]}
            result = [r for r in result if r["id"] != "a2"]
            result.append({"id": "Xk3fJ2aB9c", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                           "original_width": 64, "original_height": 48, "image_rotation": 0, "origin": "manual",
                           "value": {"x": 50.0, "y": 50.0, "width": 25.0, "height": 25.0, "rotation": 0,
                                     "rectanglelabels": ["pedestrian"]}})
        annotations = [] if t["data"]["reference_id"] == "c" else [
            {"id": n, "completed_by": 1, "result": [], "was_cancelled": True, "created_at": "2026-12-01T09:00:00Z"},
            {"id": 100 + n, "completed_by": 1, "result": result, "was_cancelled": False, "ground_truth": False,
             "created_at": "2026-12-01T10:00:00.000000Z", "updated_at": "2026-12-01T10:05:00.000000Z",
             "lead_time": 31.5, "task": n, "parent_prediction": n}]
        out.append({"id": n, "data": t["data"], "annotations": annotations, "predictions": t["predictions"],
                    "meta": {}, "inner_id": n, "total_annotations": len(annotations)})
    dst.write_text(json.dumps(out))


def test_label_studio_round_trip(ds, tmp_path):
    before = current(ds)
    out = ds.export_labels("label-studio", tmp_path / "tasks.json", image_url="http://localhost:8081/img")
    assert out["tasks"] == 3 and out["regions"] == 6
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert tasks[0]["data"]["image"] == "http://localhost:8081/img/a.png"
    box = next(r for r in tasks[0]["predictions"][0]["result"] if r["id"] == "a1")
    assert box["value"]["x"] == pytest.approx(100 * 1.123 / 64) and box["value"]["rectanglelabels"] == ["pedestrian"]
    assert "<RectangleLabels" in (tmp_path / "tasks.json.config.xml").read_text()
    ls_export(tmp_path / "tasks.json", tmp_path / "export.json")
    r = ds.import_labels("label-studio", tmp_path / "export.json", author="bo")
    assert (r["added"], r["changed"], r["deleted"]) == (1, 2, 1)
    after = current(ds)
    assert after[("a", "a1")][2] == pytest.approx(6.123) and ("a", "a2") not in after
    assert after[("a", "a4")][1] == "night"
    assert after[("c", "c1")] == before[("c", "c1")]  # never annotated: untouched
    assert after[("a", "a3")] == before[("a", "a3")]  # polygon accepted as it was
    new = [v for k, v in after.items() if k not in before]
    assert new == [("box", "pedestrian", 32.0, 24.0, 16.0, 12.0, None)]


@pytest.mark.parametrize("bad, message", [
    ('<annotations><image name="zzz.png"><box label="p" xtl="0" ytl="0" xbr="1" ybr="1"/></image></annotations>',
     "image name 'zzz.png' matches no item"),
    ('<annotations><image name="a.png"><box label="p" xtl="x" ytl="0" xbr="1" ybr="1"/></image></annotations>',
     "xtl='x' is not a number"),
    ('<annotations><image name="a.png"><box label="p" xtl="0" ytl="0" xbr="1" ybr="1">'
     '<attribute name="loupe_id">a1</attribute></box><box label="p" xtl="0" ytl="0" xbr="1" ybr="1">'
     '<attribute name="loupe_id">a1</attribute></box></image></annotations>', "id 'a1' appears 2 times"),
    ("<annotations><image", "not a CVAT XML file"),
])
def test_bad_cvat_files_write_nothing(ds, tmp_path, bad, message):
    before, version = current(ds), ds.label_version
    (tmp_path / "bad.xml").write_text(bad)
    with pytest.raises(engine.ValidationError, match=message):
        ds.import_labels("cvat", tmp_path / "bad.xml")
    assert current(ds) == before and ds.label_version == version
