"""`loupe slice create|list|delete` and `loupe correct FILE` (issue 13, D13): slices and label fixes
without Python, so the walk-through's `loupe metrics --slice test` works from the shell alone."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import engine
from engine.cli import _load_commands, cli
from engine.report.tutorial import split_train_test

_load_commands()
REFS = [f"img{i:02d}" for i in range(12)]


def loupe(*args, code: int = 0):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == code, (r.output, r.exception)
    return r


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cur") / "w.duckdb"
    with engine.connect(path) as ws:
        ds = ws.create_dataset("d")
        ds.append([engine.DatasetItem(f"{r}.png", r, width=100, height=100) for r in REFS], check_images=False)
        ds.annotate([engine.BoxAnnotation("cat", r, str(k), x=10 + 30 * k, y=10, width=20, height=20 + i)
                     for i, r in enumerate(REFS) for k in range(1 + i % 3)])
        preds = [engine.BoxPrediction("cat", r, f"p{k}", x=11 + 30 * k, y=10, width=20, height=20,
                                      confidence=0.5 + 0.04 * i) for i, r in enumerate(REFS) for k in range(2)]
        ws.add_model("m").create_run("r", ds, preds).commit()
    return path


def test_slices_from_sample_ids_and_query_then_metrics(db, tmp_path):
    r = loupe("slice", "create", "test", "--db", db, "--dataset", "d", "--sample", 0.3, "--seed", 0, "--rest", "train")
    train, test = split_train_test(REFS, seed=0, test_fraction=0.3)  # the tutorial's split
    assert f"'test' in dataset 'd': {len(test)} items; slice 'train': {len(train)} items" in r.output
    # the walk-through's own command now works from the shell alone
    m = json.loads(loupe("metrics", "--db", db, "--run", "r", "--slice", "test", "--format", "json").stdout)
    with engine.connect(db, read_only=True) as ws:
        assert sorted(ws.get_dataset("d").get_slice("test").reference_ids()) == test
        assert m["stats"] == list(ws.get_run("r").metrics(slice="test")["stats"].values())
    # ids from a file: plain lines with a comment, or `loupe query --format csv` output
    (tmp_path / "ids.txt").write_text("# two images\nimg01\n\nimg03\n")
    loupe("slice", "create", "two", "--db", db, "--dataset", "d", "--ids", tmp_path / "ids.txt")
    q = loupe("query", "--db", db, "--dataset", "d", "--format", "csv", "annotations.cat >= 3").stdout
    (tmp_path / "q.csv").write_text(q)
    loupe("slice", "create", "three", "--db", db, "--dataset", "d", "--ids", tmp_path / "q.csv")
    loupe("slice", "create", "dyn", "--db", db, "--dataset", "d", "--query", "annotations.cat >= 3")
    rows = {r["name"]: r for r in map(json.loads, loupe("slice", "list", "--db", db, "--dataset", "d",
                                                        "--format", "json").stdout.splitlines())}
    assert rows["two"]["size"] == 2 and rows["three"]["size"] == 4 and rows["dyn"]["query"] == "annotations.cat >= 3"
    # the same definition again is get-or-create (re-runnable scripts); a taken name with other members,
    # or a bad query, exit 1 with one line; a usage error exits 2
    loupe("slice", "create", "two", "--db", db, "--dataset", "d", "--ids", tmp_path / "ids.txt")
    (tmp_path / "ids2.txt").write_text("img01\n")
    assert "already exists" in loupe("slice", "create", "two", "--db", db, "--dataset", "d", "--ids",
                                     tmp_path / "ids2.txt", code=1).output
    assert "unknown label 'dgo'" in loupe("slice", "create", "x", "--db", db, "--dataset", "d", "--query",
                                           "annotations.dgo > 0", code=1).output
    loupe("slice", "create", "x", "--db", db, "--dataset", "d", code=2)
    loupe("slice", "delete", "two", "--db", db, "--dataset", "d")
    assert "two" not in loupe("slice", "list", "--db", db, "--format", "csv").stdout


def test_corrections_file_is_one_label_version(db, tmp_path):
    with engine.connect(db, read_only=True) as ws:
        v0 = ws.get_dataset("d").label_version
    (tmp_path / "fix.csv").write_text(
        "action,reference_id,annotation_id,label,x,y,width,height,reason\n"
        "change,img02,0,dog,,,,,looks like a dog\n"
        "change,img02,1,,40,10,25,25,\n"
        "add,img05,new-1,cat,70,60,20,20,missed\n"
        "delete,img04,1,,,,,,\n")
    r = loupe("correct", tmp_path / "fix.csv", "--db", db, "--dataset", "d", "--reason", "review 1", "--author", "ana")
    assert f"label version {v0 + 1}: 1 added, 2 changed, 1 deleted" in r.stdout
    with engine.connect(db, read_only=True) as ws:
        ds = ws.get_dataset("d")
        assert ds.label_version == v0 + 1
        log = {(c["reference_id"], c["annotation_id"]): c for c in ds.label_changes(version=v0 + 1).to_pylist()}
        cur = {(a["reference_id"], a["annotation_id"]): a for a in ds.annotations().to_pylist()}
    assert set(log) == {("img02", "0"), ("img02", "1"), ("img05", "new-1"), ("img04", "1")}
    assert log[("img02", "0")]["reason"] == "looks like a dog" and log[("img02", "1")]["reason"] == "review 1"
    assert log[("img02", "0")]["author"] == "ana"
    assert cur[("img02", "0")]["label"] == "dog" and cur[("img02", "1")]["width"] == 25
    assert ("img04", "1") not in cur and cur[("img05", "new-1")]["label"] == "cat"
    # JSON, with a change equal to the current labels: said on stderr, counted as unchanged
    (tmp_path / "fix.json").write_text(json.dumps([
        {"action": "change", "reference_id": "img02", "annotation_id": "0", "label": "dog"},
        {"action": "change", "reference_id": "img03", "annotation_id": "0", "box": [10, 10, 20, 24]}]))
    r = loupe("correct", tmp_path / "fix.json", "--db", db, "--dataset", "d", "--reason", "review 2", "--format", "json")
    assert json.loads(r.stdout)["changed"] == 1 and json.loads(r.stdout)["unchanged"] == 1
    assert "warning: 1 change(s) left the labels as they were" in r.stderr and "'img02'" in r.stderr
    # a bad row: one line naming it, exit 1, nothing written
    (tmp_path / "bad.csv").write_text("action,reference_id,annotation_id,label\nchange,img01,0,dog\nrename,img01,0,x\n")
    r = loupe("correct", tmp_path / "bad.csv", "--db", db, "--dataset", "d", "--reason", "x", code=1)
    assert "row 2, field 'action'" in r.output
    (tmp_path / "bad.json").write_text(json.dumps([{"action": "change", "reference_id": "img01",
                                                    "annotation_id": "0", "colour": "red"}]))
    assert "unknown column 'colour'" in loupe("correct", tmp_path / "bad.json", "--db", db, "--dataset", "d",
                                             "--reason", "x", code=1).output
    with engine.connect(db, read_only=True) as ws:
        assert ws.get_dataset("d").label_version == v0 + 2
