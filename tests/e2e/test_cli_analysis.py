"""`loupe patches` and `loupe insights` as a user runs them: a real process on a workspace file."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import engine
from analysis_data import has_commit, sample_workspace
from engine.api.dataset import Dataset
from tests.e2e.cli_runner import loupe as run_loupe



def loupe(*args: str) -> subprocess.CompletedProcess:
    return run_loupe(*args, timeout=120)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    path = root / "loupe.duckdb"
    with engine.connect(path) as ws:
        sample_workspace(ws, root / "data", n_images=30, commit=has_commit())
    return path


def test_patches_prints_sorted_rows_like_the_api(db):
    r = loupe("patches", "--db", str(db), "--run", "det", "--status", "fp", "--sort", "confidence", "--desc",
              "--limit", "5", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 5 and {x["status"] for x in rows} == {"fp"}
    conf = [x["confidence"] for x in rows]
    assert conf == sorted(conf, reverse=True)
    with engine.connect(db, read_only=True) as ws:
        all_fp = ws.get_run("det").patches(status="fp").column("confidence").to_pylist()
    assert conf == sorted(all_fp, reverse=True)[:5]
    table = loupe("patches", "--db", str(db), "--run", "det", "--sort", "iou", "--limit", "3")
    assert table.returncode == 0 and "(3 rows)" in table.stdout and "partner_label" in table.stdout


def test_patches_out_writes_crops_and_contact_sheet(db, tmp_path):
    out = tmp_path / "crops"
    r = loupe("patches", "--db", str(db), "--run", "det", "--status", "fn", "--limit", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote 6 crops to {out}" in r.stdout and "contact_sheet.png" in r.stdout
    crops = sorted(out.glob("0*.png"))
    assert len(crops) == 6 and all("_fn_" in p.name for p in crops)
    for p in crops:  # every FN crop shows an orange (missed GT) box
        arr = np.asarray(Image.open(p).convert("RGB"))
        assert np.all(arr == (255, 150, 0), axis=-1).sum() > 20
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[0] >= 6 * 128


def test_insights_json_and_plots(db, tmp_path):
    r = loupe("insights", "--db", str(db), "--dataset", "sample", "--run", "det", "--format", "json",
              "--plots", str(tmp_path / "charts"))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    with engine.connect(db, read_only=True) as ws:
        labels = Counter(ws.get_dataset("sample").annotations().column("label").to_pylist())
    assert {x["label"]: x["annotations"] for x in data["labels"]} == dict(labels)
    total = [x for x in data["per_class"] if x["label"] == "(all)"][0]
    assert total["tp"] + total["fn"] == sum(labels.values())
    charts = {p.stem for p in (tmp_path / "charts").glob("*.png")}
    assert {"labels", "per_class", "scores", "ious", "box_sizes"} <= charts
    assert "wrote 9 charts" in r.stderr
    text = loupe("insights", "--db", str(db), "--dataset", "sample")
    assert text.returncode == 0 and "## size_buckets" in text.stdout and "## per_class" not in text.stdout


def test_errors_are_one_clear_line(db):
    r = loupe("patches", "--db", str(db), "--run", "nope")
    assert r.returncode == 1 and r.stderr.strip() == "error: no run named 'nope'; runs: det"
    r = loupe("insights", "--db", str(db), "--dataset", "sample", "--slice", "nope")
    assert r.returncode == 1 and "no slice named 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_patches_query(db):
    if not hasattr(Dataset, "query_objects"):
        r = loupe("patches", "--db", str(db), "--run", "det", "--query", 'label = "cyclist"')
        assert r.returncode == 1 and "query language" in r.stderr
        return
    r = loupe("patches", "--db", str(db), "--run", "det", "--query", 'status = "fp" AND confidence > 0.5',
              "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    with engine.connect(db, read_only=True) as ws:
        want = [x for x in ws.get_run("det").patches(status="fp").to_pylist() if x["confidence"] > 0.5]
    assert rows and sorted(x["annotation_id"] for x in rows) == sorted(x["annotation_id"] for x in want)
