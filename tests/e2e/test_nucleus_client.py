"""The walk-through written against Scale's Nucleus client runs offline through ``engine.nucleus`` and
gives the native API's results (items, labels, slices, run, commit, metrics, per-object matches)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine
import sample_data
from engine import nucleus
from engine.io.predictions_json import read_predictions_json


@pytest.fixture(scope="module")
def street(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nucleus") / "street"
    sample_data.generate(str(root), n_images=16)
    sample_data.detect(str(root))
    return root


def mask_boxes(root: Path) -> list[tuple[str, str, int, int, int, int]]:
    """(reference_id, instance, x, y, width, height) of every PedMasks instance, as the tutorial derives them."""
    out = []
    for p in sorted((root / "PNGImages").glob("*.png")):
        mask = np.asarray(Image.open(root / "PedMasks" / f"{p.stem}_mask.png"))
        for k in [int(v) for v in np.unique(mask) if v != 0]:
            ys, xs = np.nonzero(mask == k)
            out.append((p.stem, str(k), int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()),
                        int(ys.max() + 1 - ys.min())))
    return out


def nucleus_walkthrough(root: Path, db: Path):
    """The upload → slices → model run → commit flow, as a Nucleus notebook writes it."""
    client = nucleus.NucleusClient("YOUR_SCALE_API_KEY", path=str(db))
    dataset = client.create_dataset("PennFudan")
    pngs = sorted((root / "PNGImages").glob("*.png"))
    items = [nucleus.DatasetItem(image_location=str(p), reference_id=p.stem, metadata={"source": "street"})
             for p in pngs]
    response = dataset.append(items, update=True)
    annotations = [nucleus.BoxAnnotation("pedestrian", x, y, w, h, ref, k) for ref, k, x, y, w, h in mask_boxes(root)]
    dataset.annotate(annotations, update=True)
    refs = [p.stem for p in pngs]
    dataset.create_slice("train", reference_ids=refs[: len(refs) // 2])
    dataset.create_slice("test", reference_ids=refs[len(refs) // 2:])
    model = client.add_model(name="simulated detector", reference_id="sim-v1")
    preds = json.loads((root / "predictions.json").read_text())
    predictions = [nucleus.BoxPrediction(d["label"], *d["bbox"], d["reference_id"], confidence=d["score"],
                                         annotation_id=f"p{i}") for i, d in enumerate(preds)]
    model_run = model.create_run(name="sim-v1", dataset=dataset, predictions=predictions)
    result = model_run.commit()
    return client, dataset, model_run, response, result


def native(root: Path):
    """The same data through Loupe's own API."""
    ws = engine.connect()
    ds = ws.create_dataset("PennFudan")
    ds.append([engine.DatasetItem(image_location=str(p), reference_id=p.stem, metadata={"source": "street"})
               for p in sorted((root / "PNGImages").glob("*.png"))])
    ds.annotate([engine.BoxAnnotation(label="pedestrian", reference_id=ref, annotation_id=k, x=x, y=y, width=w,
                                      height=h) for ref, k, x, y, w, h in mask_boxes(root)])
    run = ws.add_model("simulated detector", "sim-v1").create_run(
        "sim-v1", ds, read_predictions_json(str(root / "predictions.json")))
    return ws, ds, run


def _objects(run) -> list[tuple]:
    t = run.patches(sort="iou").select(["reference_id", "source", "status", "iou", "label", "annotation_id", "partner_annotation_id"])
    return sorted(tuple(r.values()) for r in t.to_pylist())


def test_walkthrough_equals_native_api(street, tmp_path):
    client, dataset, model_run, response, result = nucleus_walkthrough(street, tmp_path / "n.duckdb")
    ws, ds, run = native(street)
    assert response.new_items == 16 and response.json()["ignored_items"] == 0
    # Nucleus commits class-agnostic by default (payload key class_agnostic, documented default True)
    expected = run.commit(class_agnostic=True)
    assert result["model_run_id"] == model_run.id
    assert result["stats"] == expected["stats"]
    assert _objects(model_run.loupe) == _objects(run)
    boxes = lambda d: sorted((r["reference_id"], r["x"], r["y"], r["width"], r["height"])  # noqa: E731
                             for r in d.annotations().to_pylist())
    assert boxes(dataset.loupe) == boxes(ds)
    imported = engine.connect()  # the tutorial's boxes are the ones Loupe's PennFudan importer derives
    imported.import_pennfudan(str(street), dataset="p")
    assert boxes(imported.get_dataset("p")) == boxes(ds)
    imported.close()
    # per-slice metrics through the slice the Nucleus code made
    assert model_run.loupe.metrics(slice="test", class_agnostic=True)["stats"] == \
        run.metrics(slice=ds.create_slice("test", reference_ids=dataset.get_slices("test")[0].loupe.reference_ids()),
                    class_agnostic=True)["stats"]
    again = model_run.commit({"class_agnostic": False})
    assert again["stats"] == run.commit()["stats"]
    client.close()
    ws.close()


def test_client_surface_and_persistence(street, tmp_path):
    db = tmp_path / "n.duckdb"
    client, dataset, model_run, _, _ = nucleus_walkthrough(street, db)
    info = dataset.info()
    assert info.length == 16 and info["name"] == "PennFudan" and info.model_run_ids == [model_run.id]
    assert sorted(s.name for s in dataset.slices) == ["test", "train"]
    assert len(dataset.items) == 16 and isinstance(dataset.items[0], nucleus.DatasetItem)
    assert dataset.items[0].metadata == {"source": "street"}
    crowded = list(dataset.query_items("annotations.pedestrian >= 3"))
    n_crowded = dataset.loupe.query("annotations.pedestrian >= 3").num_rows
    assert len(crowded) == n_crowded and all(isinstance(i, nucleus.DatasetItem) for i in crowded)
    assert client.get_dataset(dataset.id) == dataset == client.get_dataset("PennFudan")
    assert client.list_datasets() == {"dataset_names": ["PennFudan"], "dataset_ids": [dataset.id]}
    rows = dataset.items_and_annotations()
    assert sum(len(r["annotations"]["box"]) for r in rows) == dataset.loupe.annotations().num_rows
    assert isinstance(rows[0]["annotations"]["box"][0], nucleus.BoxAnnotation)
    test = dataset.get_slices("test")[0]
    assert client.get_slice(test.id).name == "test" and len(test.items) == 8
    # add_model again returns the registered model (a notebook re-run does not fail)
    assert client.add_model(name="simulated detector", reference_id="sim-v1") == model_run.model
    client.close()
    reopened = nucleus.NucleusClient(path=str(db))
    assert reopened.get_model_run(model_run.id).name == "sim-v1"
    assert reopened.get_dataset(dataset.id).info().length == 16
    reopened.close()


def test_service_only_calls_say_not_available_offline(tmp_path):
    client = nucleus.NucleusClient(path=str(tmp_path / "x.duckdb"))
    ds = client.create_dataset("d")
    with pytest.raises(nucleus.NotAvailableOffline, match="Dataset.autotag_items .*not available offline"):
        ds.autotag_items("crowded")
    with pytest.raises(nucleus.NotAvailableOffline, match="NucleusClient.create_launch_model"):
        client.create_launch_model("m", "r", {})
    with pytest.raises(nucleus.NotAvailableOffline, match="remote mask_url"):
        ds.annotate([nucleus.SegmentationAnnotation("s3://bucket/m.png", [nucleus.Segment("car", 1)], "r1")])
    with pytest.raises(AttributeError):
        ds.no_such_method
    assert isinstance(nucleus.NotAvailableOffline("x"), engine.LoupeError)
    client.close()


def test_positional_argument_order_follows_the_client():
    box = nucleus.BoxPrediction("car", 1, 2, 3, 4, "img", 0.9, "a1", {"k": 1}, {"car": 0.9, "bus": 0.1})
    assert (box.x, box.y, box.width, box.height, box.reference_id, box.confidence, box.annotation_id) == \
        (1, 2, 3, 4, "img", 0.9, "a1")
    [rec] = nucleus.records.to_loupe([box], predictions=True)
    assert (rec.label, rec.x, rec.height, rec.confidence, rec.class_pdf) == ("car", 1, 4, 0.9, {"car": 0.9, "bus": 0.1})
    item = nucleus.DatasetItem("a.png", "a", {"m": 1})
    assert (item.image_location, item.reference_id, item.metadata) == ("a.png", "a", {"m": 1})
    cat = nucleus.CategoryAnnotation("day", "a", "time_of_day")
    assert cat.taxonomy_name == "time_of_day"


def test_segmentation_and_keypoints_from_local_files(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(img)
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 3:9] = 1
    mask[10:15, 10:20] = 2
    Image.fromarray(mask).save(tmp_path / "m.png")
    client = nucleus.NucleusClient(path=str(tmp_path / "s.duckdb"))
    ds = client.create_dataset("seg")
    ds.append([nucleus.DatasetItem(str(img), "a")])
    ds.annotate([nucleus.SegmentationAnnotation(str(tmp_path / "m.png"),
                                                [nucleus.Segment("car", 1), nucleus.Segment("road", 2)], "a", "m1"),
                 nucleus.KeypointsAnnotation("person", [nucleus.Keypoint(1, 2), nucleus.Keypoint(visible=False)],
                                             ["nose", "eye"], "a", annotation_id="k1")])
    t = ds.loupe.annotations().to_pylist()
    segs = {r["annotation_id"]: r for r in t if r["kind"] == "segmentation"}
    assert set(segs) == {"m1:1", "m1:2"} and segs["m1:1"]["label"] == "car" and segs["m1:1"]["area"] == 24
    kp = [r for r in t if r["kind"] == "keypoints"][0]
    assert list(kp["keypoints"]) == [1.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    client.close()


def test_upload_predictions_makes_a_run(street, tmp_path):
    client, dataset, model_run, _, _ = nucleus_walkthrough(street, tmp_path / "u.duckdb")
    model = client.add_model(name="second", reference_id="second-v1")
    preds = [nucleus.BoxPrediction("pedestrian", 10, 10, 30, 80, "SynthPed00001", 0.5, "x1",
                                   class_pdf={"pedestrian": 0.5, "car": 0.5})]
    r = dataset.upload_predictions(model, preds)
    run = client.get_model_run(r["model_run_id"])
    assert run.name == "second-v1@PennFudan" and run.model == model
    row = run.loupe.predictions().to_pylist()[0]
    assert (row["x"], row["confidence"], dict(row["class_pdf"])) == (10.0, 0.5, {"pedestrian": 0.5, "car": 0.5})
    assert r["model_run_id"] in dataset.model_runs
    client.close()
