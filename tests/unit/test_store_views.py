"""Views that avoid the raw tables' traps (issue 13, D17): `matches` has a GT row and a prediction row per
match, `annotations` holds every label version."""
from __future__ import annotations

import duckdb
import pytest

import engine
from engine.cli.console import HELP


@pytest.fixture
def world(tmp_path):
    path = tmp_path / "w.duckdb"
    ws = engine.connect(path)
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(f"{r}.png", r, width=100, height=100) for r in "abc"], check_images=False)
    ds.annotate([engine.BoxAnnotation("cat", r, str(k + 1), x=10 + 40 * k, y=10, width=20, height=20)
                 for r in "abc" for k in range(2)])
    run = ws.add_model("m").create_run("r", ds, [
        engine.BoxPrediction("cat", r, f"{r}-p{k}", x=11 + 40 * k, y=10, width=20, height=20, confidence=0.9)
        for r in "abc" for k in range(2 if r != "c" else 1)] + [
        engine.BoxPrediction("dog", "a", "bg", x=70, y=70, width=10, height=10, confidence=0.5)])
    run.commit()
    yield ws, ds, run, path
    ws.close()


def n(ws, sql):
    return ws.sql(sql).column(0)[0].as_py()


def test_matched_pairs_one_row_per_match(world):
    ws, ds, run, _ = world
    tp = run.metrics()["counts"]["tp"]
    assert tp == 5
    assert n(ws, "SELECT count(*) FROM matches WHERE status = 'tp'") == 2 * tp  # the trap
    assert n(ws, "SELECT count(*) FROM matched_pairs WHERE status = 'tp'") == tp
    rows = ws.sql("SELECT pred_label, gt_label, iou, confidence FROM matched_pairs").to_pylist()
    assert all(r["pred_label"] == r["gt_label"] == "cat" and r["iou"] >= 0.5 and r["confidence"] == 0.9 for r in rows)


def test_current_annotations_follow_label_versions(world):
    ws, ds, _, _ = world
    ds.correct("1", reference_id="a", label="dog", reason="r")
    assert n(ws, "SELECT count(*) FROM annotations") == 7  # the trap: the replaced row is still there
    assert n(ws, "SELECT count(*) FROM current_annotations") == 6
    assert n(ws, "SELECT count(*) FROM current_annotations WHERE label = 'dog'") == 1


def test_older_workspace_gets_the_views_on_a_writable_open(world):
    ws, _, _, path = world
    ws.close()
    con = duckdb.connect(str(path))  # as written by a Loupe without the views
    con.execute("DROP VIEW matched_pairs")
    con.execute("DROP VIEW current_annotations")
    con.close()
    with engine.connect(path, read_only=True) as ro:  # read-only cannot create them: the base tables still work
        assert not ro.store.has_tables(["matched_pairs"])
    with engine.connect(path) as w:
        assert n(w, "SELECT count(*) FROM matched_pairs") == 5 and n(w, "SELECT count(*) FROM current_annotations") == 6


def test_console_help_lists_the_views():
    assert "current_annotations" in HELP and "matched_pairs" in HELP and "twice the TPs" in HELP
