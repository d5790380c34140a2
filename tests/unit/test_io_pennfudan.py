"""PennFudan import on the generated sample data, checked against the files and truth.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine
from engine.errors import ValidationError
from engine.io.masks import instances
from engine.io.pennfudan import label_of, parse_annotation
from udfs import rle

N_IMAGES, SEED = 24, 0  # this seed/size has loose text boxes, cyclists and a swapped label


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from sample_data.generate import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, n_images=N_IMAGES, seed=SEED)
    return out


@pytest.fixture(scope="module")
def imported(sample):
    ws = engine.connect()
    summary = ws.import_pennfudan(sample, "synth")
    rows = ws.get_dataset("synth").annotations().to_pylist()
    yield ws, summary, rows
    ws.close()


def test_counts_match_truth(sample, imported):
    ws, s, rows = imported
    truth = json.loads((sample / "truth.json").read_text())
    assert s.items == N_IMAGES
    assert s.annotations == len(rows) == truth["summary"]["annotated"]
    assert all(r["kind"] == "box" for r in rows)


def test_boxes_areas_and_masks_equal_the_instance_masks(sample, imported):
    _, _, rows = imported
    for r in rows:
        ids = np.asarray(Image.open(sample / "PedMasks" / f"{r['reference_id']}_mask.png"))
        m = ids == int(r["annotation_id"])
        ys, xs = np.nonzero(m)
        assert [r["x"], r["y"], r["width"], r["height"]] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                                             ys.max() - ys.min() + 1]
        assert r["area"] == m.sum()
        assert np.array_equal(rle.decode(r["mask"], *m.shape).astype(bool), m)


def test_labels_text_boxes_and_loose_boxes_match_truth(sample, imported):
    _, _, rows = imported
    truth = json.loads((sample / "truth.json").read_text())
    want = {}
    for ref, im in truth["images"].items():
        for o in im["objects"]:
            if o["status"] == "annotated":
                want[(ref, o["mask_index"])] = (o["annotated_label"], o["text_box"])
    got = {(r["reference_id"], int(r["annotation_id"])): (r["label"], json.loads(r["metadata"])["txt_box"])
           for r in rows}
    assert got == want
    loose = {(r["reference_id"], int(r["annotation_id"])) for r in rows
             if json.loads(r["metadata"])["txt_box"] != [r["x"], r["y"], r["width"], r["height"]]}
    assert loose == {(b["reference_id"], b["mask_index"]) for b in truth["loose_boxes"]}


def test_item_metadata_comes_from_metadata_json(sample, imported):
    ws, _, _ = imported
    meta = json.loads((sample / "metadata.json").read_text())
    for it in ws.get_dataset("synth").items().to_pylist():
        assert json.loads(it["metadata"]) == meta[it["reference_id"]]
        assert Path(it["image_location"]).is_file()


def test_label_mapping():
    assert label_of("PASpersonWalking") == label_of("PASpersonStanding") == "pedestrian"
    assert label_of("PAScyclist") == "cyclist"
    assert label_of("PASbicycleSide") == "bicycleside"
    assert label_of("Dog") == "dog"


def test_parse_annotation_converts_one_based_corners():
    text = ('Image size (X x Y x C) : 559 x 536 x 3\n'
            'Bounding box for object 1 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (160, 182) - (302, 431)\n'
            'Bounding box for object 2 "PAScyclist" (Xmin, Ymin) - (Xmax, Ymax) : (1, 1) - (1, 1)\n')
    size, objs = parse_annotation(text, "x")
    assert size == (559, 536)
    assert objs == {1: ("PASpersonWalking", [159, 181, 143, 250]), 2: ("PAScyclist", [0, 0, 1, 1])}


def test_instances_match_per_instance_encoding():
    r = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(v) for v in r.integers(1, 14, 2))
        lab = r.integers(0, 4, (h, w)).astype(np.uint8)
        ids, boxes, areas, counts = instances(lab)
        assert list(ids) == sorted(set(np.unique(lab)) - {0})
        for k, b, a, c in zip(ids, boxes, areas, counts):
            m = lab == k
            ys, xs = np.nonzero(m)
            assert list(b) == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert a == m.sum()
            assert np.array_equal(c, rle.encode(m))
    ids, boxes, areas, counts = instances(np.zeros((3, 4), np.uint8))
    assert len(ids) == len(counts) == 0


def test_missing_annotation_file_is_refused_and_nothing_written(sample, tmp_path):
    import shutil

    root = tmp_path / "pf"
    shutil.copytree(sample, root)
    victim = sorted((root / "Annotation").glob("*.txt"))[3]
    victim.unlink()
    ws = engine.connect()
    with pytest.raises(ValidationError) as e:
        ws.import_pennfudan(root, "x")
    assert victim.stem in str(e.value) and e.value.field == "annotation"
    assert ws.sql("SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM annotations) AS n").column("n")[0].as_py() == 0
