"""Every COCO parameter through the public API (run.commit / run.metrics / loupe eval) against live
pycocotools with the same ``Params``; and the validation of those parameters."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pycocotools")

from engine.cli import _load_commands, cli  # noqa: E402
from engine.errors import ValidationError  # noqa: E402
from engine.metrics.cocoeval import CocoParams, evaluate  # noqa: E402
from engine.metrics.params import coco_params, validate_params  # noqa: E402
from tests.oracle.coco_random import import_pair, random_pair  # noqa: E402
from tests.oracle.pycoco_oracle import assert_same_eval, run_pycocotools  # noqa: E402

_load_commands()

# Non-default values of every parameter (custom area names: pycocotools' summarize scores missing ones -1).
CASES = [
    dict(iou_thresholds=[0.3, 0.5, 0.75], recall_thresholds=[0.0, 0.25, 0.5, 0.75, 1.0], max_dets=[1, 5, 20],
         area_ranges={"all": (0, 1e10), "small": (0, 1024), "medium": (1024, 4096), "large": (4096, 1e10)}),
    dict(iou_thresholds=[0.1, 0.5, 0.9, 1.0], max_dets=[2, 10, 100],
         area_ranges={"tiny": (0, 200), "all": (0, 1e5), "big": (200, 1e10)}),
    dict(recall_thresholds=list(np.linspace(0, 1, 11)), area_ranges={"all": (0, 1e10), "small": (0, 0)}),
]


def _pyco_params(kw: dict) -> dict:
    out = {}
    if "iou_thresholds" in kw:
        out["iouThrs"] = np.array(kw["iou_thresholds"])
    if "recall_thresholds" in kw:
        out["recThrs"] = np.array(kw["recall_thresholds"])
    if "max_dets" in kw:
        out["maxDets"] = list(kw["max_dets"])
    if "area_ranges" in kw:
        out["areaRng"] = [list(v) for v in kw["area_ranges"].values()]
        out["areaRngLbl"] = list(kw["area_ranges"])
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    gt, dets = random_pair(11, n_images=16)
    ws, run = import_pair(tmp_path_factory.mktemp("p"), gt, dets)
    yield ws, run, gt, dets
    ws.close()


@pytest.mark.parametrize("case", range(len(CASES)))
def test_commit_and_metrics_equal_pycocotools_with_same_params(pair, case):
    ws, run, gt, dets = pair
    kw = CASES[case]
    ref = run_pycocotools(gt, dets, params=_pyco_params(kw))
    c = run.commit(**kw)
    np.testing.assert_allclose(list(c["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    m = run.metrics(**kw)  # cached from the commit (same params)
    np.testing.assert_allclose(list(m["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    sub = run.metrics(slice=ws.sql("SELECT reference_id FROM items").column(0).to_pylist(), **kw)  # fresh
    np.testing.assert_allclose(list(sub["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    default = run.metrics()  # not the cached custom stats
    np.testing.assert_allclose(list(default["stats"].values()), run_pycocotools(gt, dets).stats, rtol=0, atol=1e-12)


def test_cli_eval_takes_every_param(tmp_path):
    gt, dets = random_pair(5, n_images=14)
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(dets))
    args = ["eval", str(tmp_path / "g.json"), str(tmp_path / "r.json"), "--json",
            "--iou-thresholds", "0.5,0.75", "--recall-thresholds", "0,0.5,1", "--max-dets", "1,10,50",
            "--area-ranges", "all:0:1e10,small:0:1024,large:1024:1e10"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    ref = run_pycocotools(gt, dets, params=_pyco_params(dict(
        iou_thresholds=[0.5, 0.75], recall_thresholds=[0, 0.5, 1], max_dets=[1, 10, 50],
        area_ranges={"all": (0, 1e10), "small": (0, 1024), "large": (1024, 1e10)})))
    np.testing.assert_allclose(json.loads(r.output.strip().splitlines()[-1])["stats"], ref.stats, rtol=0, atol=1e-12)
    r = CliRunner().invoke(cli, args[:3] + ["--max-dets", "1,10,50"])  # table output: summary lines
    assert r.exit_code == 0 and "maxDets= 50" in r.output, r.output


@pytest.mark.parametrize("flag,value,message", [
    ("--iou-thresholds", "0.75,0.5", "strictly ascending"),
    ("--iou-thresholds", "0,0.5", "outside (0, 1]"),
    ("--iou-thresholds", "0.5,1.5", "outside (0, 1]"),
    ("--iou-thresholds", "a,b", "comma-separated numbers"),
    ("--recall-thresholds", "0,1.01", "outside [0, 1]"),
    ("--max-dets", "10,1", "strictly ascending"),
    ("--max-dets", "0,10", "positive"),
    ("--area-ranges", "all:0:1e10,bad:50:10", "range 'bad' is empty"),
    ("--area-ranges", "all:0", "name:min:max"),
    ("--iou-thresholds", ",", "must not be empty"),
])
def test_cli_rejects_bad_params_with_one_line(tmp_path, flag, value, message):
    (tmp_path / "g.json").write_text("{}")
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "g.json"), str(tmp_path / "g.json"), flag, value])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_api_validation_names_the_field(pair):
    _, run, _, _ = pair
    with pytest.raises(ValidationError, match="area_ranges.*empty"):
        run.metrics(area_ranges={"all": (10, 5)})
    with pytest.raises(ValidationError, match="area_ranges.*at least one"):
        run.commit(area_ranges={})
    with pytest.raises(ValidationError, match="iou_thresholds.*ascending"):
        run.commit(iou_thresholds=[0.9, 0.5])
    with pytest.raises(ValidationError, match="max_dets.*integers"):
        run.metrics(max_dets=[1.5, 10])
    assert coco_params() is None
    assert validate_params(CocoParams()) == CocoParams()
    with pytest.raises(ValidationError, match="recall_thresholds"):
        validate_params(CocoParams(rec_thrs=(0.5, 0.2)))


@pytest.mark.parametrize("seed", range(6))
def test_kernel_random_params_equal_pycocotools(seed):
    """Random recall thresholds and area ranges (labels included) straight through the kernel."""
    from engine.metrics.coco_arrays import arrays_from_coco

    rng = np.random.default_rng(seed)
    gt, dets = random_pair(100 + seed, n_images=10)
    rec = np.unique(np.round(rng.random(int(rng.integers(1, 30))), 3))
    cuts = np.sort(rng.uniform(0, 15000, 3))
    areas = {"all": (0.0, 1e10), "small": (0.0, float(cuts[0])), "medium": (float(cuts[0]), float(cuts[1])),
             "large": (float(cuts[1]), 1e10), "band": (float(cuts[0]), float(cuts[2]))}
    kw = dict(iou_thresholds=sorted(set(np.round(rng.uniform(0.05, 1.0, 3), 2))), recall_thresholds=list(rec),
              max_dets=[1, int(rng.integers(2, 8)), int(rng.integers(8, 150))], area_ranges=areas)
    ga, da, pairs = arrays_from_coco(gt, dets)
    res = evaluate(ga, da, pairs, coco_params(**kw))
    ev = run_pycocotools(gt, dets, params=_pyco_params(kw))
    assert_same_eval(res, ev)
