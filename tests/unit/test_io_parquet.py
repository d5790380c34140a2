"""Parquet export (items, annotations, a run) and import back."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

import engine
from engine.ingest.schema import ANNOTATION_COLUMNS, ITEM_COLUMNS
from engine.io import coco, parquet


def _dataset(ws):
    ds = ws.create_dataset("d", metadata={"source": "unit"})
    ds.append([engine.DatasetItem(reference_id=r, width=20, height=10, metadata={"k": i})
               for i, r in enumerate(["a", "b"])], check_images=False)
    m = np.zeros((10, 20), bool)
    m[2:5, 3:9] = True
    ds.annotate([engine.BoxAnnotation("car", "a", x=1, y=2, width=3, height=4, annotation_id="1",
                                      metadata={"occluded": True}),
                 engine.PolygonAnnotation("dog", "b", vertices=[(1, 1), (9, 1), (9, 8)], annotation_id="2"),
                 engine.SegmentationAnnotation("dog", "b", mask=m, annotation_id="3", iscrowd=True),
                 engine.KeypointsAnnotation("person", "a", keypoints=[(1, 2, 2), (3, 4, 1)], names=["l", "r"],
                                            annotation_id="4")])
    model = ws.add_model("det")
    model.create_run("r1", ds, [engine.BoxPrediction("car", "a", x=1, y=2, width=3, height=4, confidence=0.5,
                                                     class_pdf={"car": 0.5, "dog": 0.25}),
                                engine.SegmentationPrediction("dog", "b", mask=m, confidence=0.75)])
    return ds


def test_parquet_files_use_the_ingest_schema(tmp_path, ws):
    ds = _dataset(ws)
    manifest = ds.export_parquet(tmp_path / "out", run="r1")
    assert manifest["files"] == {"items.parquet": 2, "annotations.parquet": 4, "predictions.parquet": 2}
    assert manifest["run"] == "r1" and manifest["model"] == "det"
    assert set(pq.read_schema(tmp_path / "out/items.parquet").names) <= set(ITEM_COLUMNS)
    ann = pq.read_table(tmp_path / "out/annotations.parquet")
    assert set(ann.column_names) <= set(ANNOTATION_COLUMNS)
    seg = [r for r in ann.to_pylist() if r["kind"] == "segmentation"][0]
    assert (seg["mask_height"], seg["mask_width"]) == (10, 20) and sum(seg["mask"]) == 200
    assert json.loads((tmp_path / "out/manifest.json").read_text())["dataset"] == "d"


def test_parquet_round_trip(tmp_path, ws):
    ds = _dataset(ws)
    ds.export_parquet(tmp_path / "out", run="r1")
    s = ws.import_parquet(tmp_path / "out", "copy", run="r1_copy")
    assert (s.items, s.annotations, s.predictions) == (2, 4, 2)
    copy = ws.get_dataset("copy")
    assert copy.items().equals(ds.items())
    assert copy.annotations().equals(ds.annotations())
    a, b = ws.get_run("r1").predictions(), ws.get_run("r1_copy").predictions()
    assert a.equals(b)
    meta = ws.sql("SELECT metadata::VARCHAR AS m FROM datasets WHERE name = 'copy'").column("m")[0].as_py()
    assert json.loads(meta) == {"source": "unit"}


def test_export_restricted_to_items(tmp_path, ws):
    ds = _dataset(ws)
    only_b = f"SELECT item_id FROM items WHERE dataset_id = {ds.id} AND reference_id = 'b'"
    m = parquet.export_slice(ds, tmp_path / "b", only_b, run="r1")
    assert m["files"] == {"items.parquet": 1, "annotations.parquet": 2, "predictions.parquet": 1}
    counts = coco.export_slice(ds, tmp_path / "b.json", only_b)
    assert counts == {"images": 1, "annotations": 2, "categories": 1}
