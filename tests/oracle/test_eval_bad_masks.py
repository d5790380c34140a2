"""A GT file whose masks do not fit the image (issue 13, C11; mmdetection's dummy test file has a 10x10
RLE on a 640x640 image): bbox evaluation never reads masks, so it runs (with a warning) and equals
pycocotools; segm evaluation needs the masks and refuses the file."""
from __future__ import annotations

import json

import numpy as np
import pytest

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402

import engine  # noqa: E402
from engine.errors import LoupeWarning, ValidationError  # noqa: E402
from tests.e2e.cli_runner import loupe  # noqa: E402
from tests.oracle.test_eval_full_path import coco_eval  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    m = np.zeros((10, 10), np.uint8, order="F")
    m[2:5, 2:6] = 1
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode()
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 640}],
          "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 60, 100, 120], "area": 12000, "iscrowd": 0,
               "segmentation": rle},
              {"id": 2, "image_id": 1, "category_id": 2, "bbox": [300, 300, 50, 50], "area": 2500, "iscrowd": 0,
               "segmentation": [[300, 300, 350, 300, 350, 350, 300, 350]]}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [52, 60, 100, 120], "score": 0.9},
            {"image_id": 1, "category_id": 2, "bbox": [310, 300, 50, 50], "score": 0.8}]
    d = tmp_path_factory.mktemp("badmask")
    (d / "gt.json").write_text(json.dumps(gt))
    (d / "res.json").write_text(json.dumps(dets))
    return d / "gt.json", d / "res.json", gt, dets


def test_bbox_eval_accepts_with_warning(files):
    g, r, gt, dets = files
    p = loupe("eval", g, r, "--json")
    assert p.returncode == 0, p.stderr
    assert "warning: 1 annotation mask(s) do not fit their image" in p.stderr and "annotation id 1" in p.stderr
    ours = json.loads(p.stdout.strip().splitlines()[-1])
    assert ours["stats"] == coco_eval(gt, dets).stats.tolist()


def test_segm_eval_refuses(files):
    g, r, _, _ = files
    p = loupe("eval", g, r, "--iou-type", "segm")
    assert p.returncode == 1
    assert "annotation_id '1'" in p.stderr and "mask size differs from the image size" in p.stderr


def test_import_option(files):
    g, _, _, _ = files
    with engine.connect() as ws:
        with pytest.raises(ValidationError, match="mask size differs"):
            ws.import_coco(g, dataset="d")  # default: refused, nothing written
        assert ws.sql("SELECT count(*) AS n FROM annotations").column("n")[0].as_py() == 0
        with pytest.warns(LoupeWarning, match="kept as boxes"):
            ws.import_coco(g, dataset="d", bad_masks="drop")
        rows = ws.sql("SELECT annotation_id, kind, x, y, width, height, area, mask IS NULL AS no_mask "
                      "FROM annotations ORDER BY seq").to_pylist()
    assert rows[0] == {"annotation_id": "1", "kind": "box", "x": 50.0, "y": 60.0, "width": 100.0,
                       "height": 120.0, "area": 12000.0, "no_mask": True}
    assert rows[1]["kind"] == "polygon"
    with engine.connect() as ws, pytest.raises(engine.LoupeError, match="bad_masks must be"):
        ws.import_coco(g, dataset="d", bad_masks="ignore")
