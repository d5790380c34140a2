"""`loupe label-errors / compare / test / scenario / label-versions / undo` as a user runs them."""
from __future__ import annotations

import json

import pytest

import engine
from tests.e2e.cli_runner import loupe




@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Sample data (60 images) with two simulated runs, train/test slices, committed."""
    import sample_data
    from engine.cli.demo import build_demo
    from engine.io.predictions_json import read_predictions_json

    root = tmp_path_factory.mktemp("cli_errors")
    path = root / "loupe.duckdb"
    ws, ds, run = build_demo(root / "data", 60, str(path))
    sample_data.detect(root / "data", seed=7)
    ws.get_model("simulated-detector").create_run("other", ds, read_predictions_json(root / "data" / "predictions.json"))
    refs = ds.items().column("reference_id").to_pylist()
    ds.create_slice("test", reference_ids=refs[::3])
    ds.create_slice("train", reference_ids=[r for i, r in enumerate(refs) if i % 3])
    run.commit()
    ws.get_run("other").commit()
    ws.close()
    return path, root / "data"


def test_label_errors_ranked_like_the_api(db):
    path, _ = db
    r = loupe("label-errors", "--db", str(path), "--run", "simulated", "--limit", "15", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert 0 < len(rows) <= 15
    assert [x["score"] for x in rows] == sorted((x["score"] for x in rows), reverse=True)
    with engine.connect(path, read_only=True) as ws:
        api = ws.get_run("simulated").suggest_label_errors(limit=15)
    assert [(x["reason"], x["reference_id"], x["annotation_id"], x["prediction_id"]) for x in rows] == \
           [(x["reason"], x["reference_id"], x["annotation_id"], x["prediction_id"]) for x in api.to_pylist()]
    table = loupe("label-errors", "--db", str(path), "--run", "simulated", "--other-run", "other",
                  "--reason", "missing_annotation", "--limit", "5")
    assert table.returncode == 0, table.stderr
    assert "explanation" in table.stdout and "missing_annotation" in table.stdout
    assert "spurious_gt" not in table.stdout


def test_compare_two_runs_and_label_versions(db):
    path, data = db
    r = loupe("compare", "--db", str(path), "simulated", "other", "--limit", "5")
    assert r.returncode == 0, r.stderr
    for head in ("## simulated (a) vs other (b)", "## per class", "## per slice", "## objects where the runs differ"):
        assert head in r.stdout
    j = loupe("compare", "--db", str(path), "simulated", "other", "--slice", "test", "--format", "json")
    assert j.returncode == 0, j.stderr
    out = json.loads(j.stdout)
    assert set(out) == {"summary", "per_class", "per_slice", "objects", "items"}
    assert [s["slice"] for s in out["per_slice"]] == ["test"]
    with engine.connect(path, read_only=True) as ws:
        ap_test = ws.get_run("other").metrics(slice="test")["stats"]["AP"]
    assert {s["metric"]: s for s in out["summary"]}["AP"]["b"] == pytest.approx(ap_test)
    # corrected labels (the truth file, test items only) vs baseline, per slice
    with engine.connect(path) as ws:
        from engine.curation.corrections import apply_truth_corrections

        ds = ws.get_dataset("sample")
        v = apply_truth_corrections(ds, data / "truth.json", reference_ids=ds.get_slice("test").reference_ids())
    lv = loupe("compare", "--db", str(path), "simulated", "--label-version", "1", "--label-version",
               str(v["label_version"]), "--slice", "test", "--slice", "train", "--format", "json")
    assert lv.returncode == 0, lv.stderr
    rows = {(x["slice"], x["label_version"]): x for x in map(json.loads, lv.stdout.splitlines())}
    assert rows[("train", v["label_version"])]["delta_AP"] == 0  # only test items were corrected
    assert rows[("test", v["label_version"])]["gt"] == rows[("test", 1)]["gt"] + v["added"]
    bad = loupe("compare", "--db", str(path), "simulated", "nosuchrun")
    assert bad.returncode == 1 and "no run named 'nosuchrun'" in bad.stderr


def test_scenarios_gate_with_exit_status(db):
    path, _ = db
    add = loupe("scenario", "add", "--db", str(path), "--dataset", "sample", "easy", "--slice", "test",
                "--criteria", "bbox_recall(iou=0.5) > 0.05, bbox_map() >= 0.01")
    assert add.returncode == 0, add.stderr
    ok = loupe("test", "--db", str(path), "--run", "simulated")
    assert ok.returncode == 0, ok.stderr
    assert "passed: 1 scenario(s)" in ok.stdout
    hard = loupe("scenario", "add", "--db", str(path), "--dataset", "sample", "hard", "--criteria",
                 "bbox_precision(iou=0.5, confidence=0.3) > 0.99", "--baseline", "other")
    assert hard.returncode == 0, hard.stderr
    fail = loupe("test", "--db", str(path), "--run", "simulated", "--format", "json")
    assert fail.returncode == 1
    assert "FAILED: 1 of 2 scenario(s): hard" in fail.stderr
    rows = [json.loads(line) for line in fail.stdout.splitlines()]
    assert {r["scenario"]: r["scenario_passed"] for r in rows} == {"easy": True, "hard": False}
    assert all(r["baseline"] == "other" and r["baseline_value"] is not None for r in rows if r["scenario"] == "hard")
    hist = loupe("scenario", "history", "--db", str(path), "--dataset", "sample", "easy", "--format", "json")
    assert hist.returncode == 0 and len({json.loads(x)["evaluation_id"] for x in hist.stdout.splitlines()}) == 2
    typo = loupe("scenario", "add", "--db", str(path), "--dataset", "sample", "t", "--criteria", "bbox_recal() > 1")
    assert typo.returncode == 1 and "did you mean 'bbox_recall'" in typo.stderr and "Traceback" not in typo.stderr
    listed = loupe("scenario", "list", "--db", str(path), "--dataset", "sample")
    assert listed.returncode == 0 and "easy" in listed.stdout and "hard" in listed.stdout
    ro = loupe("test", "--db", str(path), "--run", "simulated", "--scenario", "easy", "--no-record")
    assert ro.returncode == 0, ro.stderr


def test_label_versions_and_undo(db):
    path, _ = db
    with engine.connect(path) as ws:
        ds = ws.get_dataset("sample")
        before = ds.label_version
        ds.correct("1", reference_id=ds.items().column("reference_id")[0].as_py(), label="cyclist", reason="cli test")
    r = loupe("label-versions", "--db", str(path), "--dataset", "sample", "--format", "json")
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.splitlines()[-1])
    assert (last["version"], last["reason"], last["changed"]) == (before + 1, "cli test", 1)
    ch = loupe("label-versions", "--db", str(path), "--dataset", "sample", "--changes", str(before + 1),
               "--format", "json")
    assert json.loads(ch.stdout)["new_label"] == "cyclist"
    u = loupe("undo", "--db", str(path), "--dataset", "sample")
    assert u.returncode == 0, u.stderr
    assert f"reverted label version {before + 1} as version {before + 2}" in u.stdout
    with engine.connect(path, read_only=True) as ws:
        ds = ws.get_dataset("sample")
        assert ds.annotations(label_version=before).num_rows == ds.annotations().num_rows
