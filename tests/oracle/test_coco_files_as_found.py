"""COCO files as people have them: integer text ids, duplicate annotation ids, results files in the
dataset layout; stats compared with pycocotools on the same data with integer ids."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pycocotools")

from engine.cli import _load_commands, cli  # noqa: E402
from tests.oracle.coco_random import random_pair  # noqa: E402
from tests.oracle.pycoco_oracle import run_pycocotools  # noqa: E402

_load_commands()


def _eval(tmp_path, gt, res) -> tuple[int, str]:
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(res))
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "g.json"), str(tmp_path / "r.json"), "--json"])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def pair():
    gt, dets = random_pair(21, n_images=12)
    return gt, dets, run_pycocotools(gt, dets).stats


def test_integer_text_ids_are_cast(tmp_path, pair):
    gt, dets, ref = pair
    g = json.loads(json.dumps(gt))
    for im in g["images"]:
        im["id"] = str(im["id"])
    for i, a in enumerate(g["annotations"]):
        a["image_id"] = str(a["image_id"]) if i % 2 else f" {a['image_id']}"
        a["id"] = str(a["id"])
        a["category_id"] = str(a["category_id"])
    r = [dict(d, image_id=str(d["image_id"])) if i % 3 else d for i, d in enumerate(dets)]
    code, out = _eval(tmp_path, g, r)
    assert code == 0, out
    np.testing.assert_allclose(json.loads(out.splitlines()[-1])["stats"], ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", ["12a", "1.5", ""])
def test_non_integer_text_ids_are_refused(tmp_path, pair, bad):
    gt, dets, _ = pair
    g = json.loads(json.dumps(gt))
    g["images"][1]["id"] = bad
    code, out = _eval(tmp_path, g, dets)
    assert code == 1 and "images[1]" in out and "must be an integer" in out, out


def test_duplicate_annotation_ids_are_refused(tmp_path, pair):
    gt, dets, _ = pair
    g = json.loads(json.dumps(gt))
    g["annotations"][4]["id"] = g["annotations"][2]["id"]
    code, out = _eval(tmp_path, g, dets)
    assert code == 1 and "duplicate annotation id" in out and f"annotation id {g['annotations'][2]['id']}" in out, out


def test_results_in_dataset_layout_are_results(tmp_path, pair):
    gt, dets, ref = pair
    layout = {"images": gt["images"], "categories": gt["categories"],
              "annotations": [dict(d, id=i + 1) for i, d in enumerate(dets)]}
    code, out = _eval(tmp_path, gt, layout)
    assert code == 0, out
    np.testing.assert_allclose(json.loads(out.splitlines()[-1])["stats"], ref, rtol=0, atol=1e-12)
    code, out = _eval(tmp_path, gt, {"images": gt["images"]})  # no annotations list: still an error
    assert code == 1 and "annotations" in out, out
