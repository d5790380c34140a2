"""item_match_counts: the per-item tp / fp / fn behind ``predictions.*`` queries stay exactly the matches rows.

After every write of a run's matches rows (commit at any threshold or option, re-commit, a second run,
dataset deletion, raw SQL) the table must equal a fresh GROUP BY of the matches rows joined to the
objects they point at, the catalog must trust it exactly when it is current, and every query answered
from it must return what the same query answered from ``matches`` returns.
"""
from __future__ import annotations

import json

import pytest

import engine
from engine.store import match_counts
from engine.execution.catalog import DuckDBCatalog
from engine.execution.runner import compile_for, execute
from queries import compile_query
from tests.oracle.coco_random import import_pair, random_pair

LABELS = ["class1", "class2", "class3", "class4", "class5"]  # random_pair's categories (class5 has no GT)
STATS = ("tp", "fp", "fn")


def queries(labels=LABELS, other_run=None):
    qs = [f"predictions.{s} = {k}" for s in STATS for k in range(4)]  # every item's exact value, 0 to 3
    qs += [f"predictions.{s} >= 4" for s in STATS]
    qs += [f"predictions.{lab}.{s} = {k}" for lab in labels for s in STATS for k in range(3)]
    qs += ["predictions.fp > predictions.tp AND predictions.fn > 0",
           f"predictions.{labels[0]}.fn + predictions.{labels[1]}.fn >= 2 OR predictions.fp = 1",
           "predictions.fp >= 1 AND max_iou > 0.7 AND predictions.count > 2",  # counts next to a matches aggregate
           f"predictions.tp > 0 ORDER BY predictions.fp DESC, predictions.{labels[0]}.fn LIMIT 7"]
    if other_run:
        qs += [f'predictions("{other_run}").fp > predictions.fp', f'predictions("{other_run}").{labels[0]}.tp = 1']
    return qs


OBJECT_QUERIES = ['status = "fp" AND item.predictions.fp >= 2', f'item.predictions.{LABELS[1]}.fn > 0 AND source = "gt"']


def fresh(ws, run_id):
    """The counts the table must hold, from the matches rows and the objects they point at."""
    return sorted(ws.store.con.execute(
        """WITH l AS (SELECT m.iou_threshold, m.item_id, m.source, m.status,
                             coalesce(a.label, p.label) AS label
                      FROM matches m
                      LEFT JOIN annotations a ON m.source = 'gt' AND a.ann_key = m.ann_key
                      LEFT JOIN predictions p ON m.source = 'prediction' AND p.pred_key = m.pred_key
                      WHERE m.run_id = $run AND ((m.source = 'prediction' AND m.status IN ('tp', 'fp'))
                                                 OR (m.source = 'gt' AND m.status = 'fn')))
           SELECT iou_threshold, item_id, source, status, label, count(*) FROM l WHERE label IS NOT NULL GROUP BY ALL
           UNION ALL
           SELECT iou_threshold, item_id, source, status, NULL, count(*) FROM l GROUP BY ALL""",
        {"run": run_id}).fetchall(), key=repr)


def kept(ws, run_id):
    return sorted(ws.store.con.execute(
        "SELECT iou_threshold, item_id, source, status, label, n FROM item_match_counts WHERE run_id = ?",
        [run_id]).fetchall(), key=repr)


def run_info(ws, ds, run):
    return DuckDBCatalog(ws.store, ds.id).runs()[run]


def same_answers(ws, ds, run, counts=True, labels=LABELS, other_run=None):
    """Every query reads item_match_counts (or, ``counts=False``, matches) and answers as the base-table path."""
    base = DuckDBCatalog(ws.store, ds.id, derived=False)  # what explain(dialect != "duckdb") compiles against
    cases = [(q, "items") for q in queries(labels, other_run)] + [(q, "objects") for q in OBJECT_QUERIES]
    for q, target in cases:
        fast = compile_for(ds, q, target, run=run, strict=False)
        assert ("item_match_counts" in fast.sql()) == counts, q
        slow = compile_query(q, base, target=target, run=run, strict=False)
        assert "item_match_counts" not in slow.sql() and "FROM matches" in slow.sql()
        assert execute(ds, fast).to_pylist() == execute(ds, slow).to_pylist(), q


def check(ws, ds, run="r", **kw):
    """The table equals a fresh count, the catalog trusts it, and the queries agree with the base path."""
    rid = run_info(ws, ds, run).run_id
    assert kept(ws, rid) == fresh(ws, rid)
    assert run_info(ws, ds, run).match_counts
    same_answers(ws, ds, run, **kw)


@pytest.fixture
def pair(tmp_path):
    gt, dets = random_pair(5, n_images=30, n_cats=4)
    ws, run = import_pair(tmp_path, gt, dets)
    yield ws, ws.get_dataset("d"), run
    ws.close()


def test_counts_follow_every_commit(pair):
    ws, ds, run = pair
    run.commit()
    assert any(n > 1 for *_, n in kept(ws, run.id))  # items with several objects of a kind exist
    check(ws, ds)
    for kw in ({"iou_threshold": 0.3}, {"class_agnostic": True}, {"method": "hungarian"},
               {"allowed_label_matches": [("class1", "class2")]}, {"iou_threshold": 0.75}):
        run.commit(**kw)
        thr = kw.get("iou_threshold", 0.5)
        assert {r[0] for r in kept(ws, run.id)} == {thr}  # the old threshold's rows are gone
        check(ws, ds)


def test_chunked_commit_writes_the_same_counts(pair):
    from engine.runs.commit import commit_run

    ws, ds, run = pair
    run.commit()
    one = kept(ws, run.id)
    commit_run(ws.store, run.id, run.dataset_id, chunk_dets=7)
    assert kept(ws, run.id) == one
    check(ws, ds)


def test_runs_are_counted_apart(pair):
    ws, ds, run = pair
    run.commit()
    preds = ws.sql("SELECT * FROM predictions WHERE run_id = ?", [run.id]).to_pylist()
    half = [engine.BoxPrediction(p["label"], ref, annotation_id=p["annotation_id"], x=p["x"], y=p["y"],
                                 width=p["width"], height=p["height"], confidence=p["confidence"])
            for p, ref in zip(preds[::2], _refs(ws, preds[::2]))]
    r2 = ws.add_model("m2").create_run("r2", ds, half, clip="keep")
    assert not run_info(ws, ds, "r2").match_counts
    r2.commit(iou_threshold=0.3)
    check(ws, ds, "r2", other_run="r")
    check(ws, ds, "r", other_run="r2")
    run.commit(iou_threshold=0.75)  # re-committing one run leaves the other's counts alone
    check(ws, ds, "r2", other_run="r")
    check(ws, ds, "r", other_run="r2")


def _refs(ws, preds):
    ids = {r["item_id"]: r["reference_id"] for r in ws.sql("SELECT item_id, reference_id FROM items").to_pylist()}
    return [ids[p["item_id"]] for p in preds]


def test_deleting_a_dataset_deletes_its_counts(tmp_path):
    gt, dets = random_pair(8, n_images=12)
    ws, run = import_pair(tmp_path, gt, dets)
    try:
        run.commit()
        other = ws.create_dataset("other")
        other.append([engine.DatasetItem("x.png", "x", width=100, height=100)], check_images=False)
        other.annotate([engine.BoxAnnotation("cat", "x", "1", x=0, y=0, width=20, height=20)])
        o_run = ws.add_model("m2").create_run("o", other, [
            engine.BoxPrediction("cat", "x", annotation_id="p", x=1, y=0, width=20, height=20, confidence=0.9),
            engine.BoxPrediction("cat", "x", annotation_id="q", x=60, y=60, width=20, height=20, confidence=0.8)])
        o_run.commit()
        check(ws, other, "o", labels=["cat", "dog"])
        ws.delete_dataset("d")
        for t in ("item_match_counts", "match_count_state"):
            assert ws.sql(f"SELECT count(*) n FROM {t} WHERE run_id = {run.id}").column("n")[0].as_py() == 0
        check(ws, other, "o", labels=["cat", "dog"])
        assert other.query("predictions.fp = 1 AND predictions.tp = 1", run="o").num_rows == 1
    finally:
        ws.close()


def test_raw_sql_writes_are_recounted_before_the_next_query(pair):
    ws, ds, run = pair
    run.commit()
    item = ws.sql("""SELECT item_id FROM matches WHERE status = 'fp' GROUP BY item_id ORDER BY count(*) DESC, item_id
                     LIMIT 1""").column("item_id")[0].as_py()
    ws.sql("UPDATE matches SET status = 'tp' WHERE status = 'fp' AND item_id = ?", [item])  # same row count
    assert ws.store.derived_stale and kept(ws, run.id) != fresh(ws, run.id)
    same_answers(ws, ds, "r")  # the first compile rebuilds the counts
    assert not ws.store.derived_stale
    check(ws, ds)
    ws.sql("DELETE FROM matches WHERE status = 'fn' AND item_id = (SELECT min(item_id) FROM matches WHERE status = 'fn')")
    assert ws.store.derived_stale and kept(ws, run.id) != fresh(ws, run.id)
    same_answers(ws, ds, "r")
    check(ws, ds)


def test_stale_counts_are_not_read(pair, monkeypatch):
    ws, ds, run = pair
    run.commit()

    def cannot(*a, **k):
        raise RuntimeError("the rebuild fails")

    monkeypatch.setattr(match_counts, "rebuild", cannot)  # e.g. a lock: the derived tables stay stale
    ws.sql("UPDATE matches SET status = 'fp' WHERE source = 'prediction' AND status = 'tp'")
    same_answers(ws, ds, "r", counts=False)
    assert ws.store.derived_stale
    assert ds.query("predictions.tp > 0", run="r").num_rows == 0
    assert ds.query("predictions.fp > 0", run="r").num_rows == ws.sql(
        "SELECT count(DISTINCT item_id) n FROM matches WHERE source = 'prediction' AND status = 'fp'").column("n")[0].as_py()
    monkeypatch.undo()
    same_answers(ws, ds, "r")  # rebuilt once it can be
    check(ws, ds)


def test_rows_written_by_hand_are_not_trusted(pair):
    ws, ds, run = pair
    run.commit()
    with ws.store.transaction() as con:  # e.g. a tool writing matches rows itself
        con.execute("""INSERT INTO matches SELECT * REPLACE ('fp' AS status) FROM matches
                       WHERE source = 'prediction' AND status = 'tp'""")
        con.execute("""INSERT INTO matches SELECT * REPLACE (ann_key + 10000 AS ann_key) FROM matches
                       WHERE source = 'gt' AND status = 'fn'""")  # rows pointing at no annotation: no label
    assert not run_info(ws, ds, "r").match_counts
    same_answers(ws, ds, "r", counts=False)
    with ws.store.transaction():
        match_counts.rebuild(ws.store, ds.id)
    check(ws, ds)


def test_failed_commit_keeps_the_previous_counts(pair, monkeypatch):
    import engine.runs.commit as cm

    ws, ds, run = pair
    run.commit()
    before = kept(ws, run.id), ws.sql("SELECT * FROM match_count_state").to_pylist()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cm, "_per_class", boom)  # fails after the counts are written, in the same transaction
    with pytest.raises(RuntimeError):
        run.commit(iou_threshold=0.3)
    assert (kept(ws, run.id), ws.sql("SELECT * FROM match_count_state").to_pylist()) == before
    monkeypatch.undo()
    matches = ws.sql("SELECT * FROM matches ORDER BY ALL").to_pylist()
    monkeypatch.setattr(match_counts, "_set_state", boom)  # fails while writing the counts
    with pytest.raises(RuntimeError):
        run.commit(iou_threshold=0.3)
    assert ws.sql("SELECT * FROM matches ORDER BY ALL").to_pylist() == matches
    assert (kept(ws, run.id), ws.sql("SELECT * FROM match_count_state").to_pylist()) == before
    check(ws, ds)


def answer(ds, q, run="r"):
    return execute(ds, compile_for(ds, q, run=run, strict=False)).to_pylist()


def test_older_workspace_gets_the_table_and_read_only_ones_fall_back(tmp_path):
    gt, dets = random_pair(9, n_images=16)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(dets))
    path = tmp_path / "old.duckdb"
    ws = engine.connect(path)
    ws.import_coco(tmp_path / "gt.json", dataset="d", results=tmp_path / "res.json", run="r", check_images=False,
                   clip="keep")
    ws.get_run("r").commit()
    expected = {q: answer(ws.get_dataset("d"), q) for q in queries()}
    ws.store.con.execute("DROP TABLE item_match_counts")
    ws.store.con.execute("DROP TABLE match_count_state")
    ws.close()
    ro = engine.connect(path, read_only=True)  # cannot add tables: queries count matches
    try:
        assert not match_counts.present(ro.store)
        d = ro.get_dataset("d")
        assert not run_info(ro, d, "r").match_counts
        for q in queries():
            assert "item_match_counts" not in compile_for(d, q, run="r", strict=False).sql()
            assert answer(d, q) == expected[q], q
    finally:
        ro.close()
    ws = engine.connect(path)  # writable: created and filled on open
    try:
        assert match_counts.present(ws.store)
        check(ws, ws.get_dataset("d"))
    finally:
        ws.close()


def test_explain_for_other_engines_counts_matches(pair):
    ws, ds, run = pair
    run.commit()
    q = "predictions.fp > 1 AND predictions.class1.fn > 0"
    assert "item_match_counts" in ds.explain(q, run="r")
    for dialect in ("postgres", "spark", "trino"):
        sql = ds.explain(q, run="r", dialect=dialect)
        assert "item_match_counts" not in sql and "matches" in sql, dialect
    assert "item_match_counts" not in engine.explain(q, run="r")  # no workspace: nothing known about the run


def test_dsl_world_answers_from_the_counts():
    """The DSL world's run-level cases (checked against plain Python) hold when read from the counts."""
    from dsl_world import build
    from test_dsl_queries import RUN_CASES

    w = build()
    try:
        assert not run_info(w.ws, w.ds, "r1").match_counts  # its matches rows were written by hand
        with w.ws.store.transaction():
            match_counts.rebuild(w.ws.store, w.ds.id)
        assert run_info(w.ws, w.ds, "r1").match_counts
        for dsl, expected in RUN_CASES:
            if any(f".{s}" in dsl for s in STATS):
                assert "item_match_counts" in compile_for(w.ds, dsl, run="r1").sql(), dsl
            assert w.ds.query(dsl, run="r1").column("reference_id").to_pylist() == w.refs(expected), dsl
    finally:
        w.ws.close()


def _grouped_totals(ws, run_id):
    return {(s, t): n for s, t, n in ws.store.con.execute(
        "SELECT source, status, count(*) FROM matches WHERE run_id = $run GROUP BY ALL", {"run": run_id}).fetchall()
        if (s, t) in {("prediction", "tp"), ("prediction", "fp"), ("gt", "fn")}}


def test_metrics_counts_come_from_current_counts_only(pair):
    """run.metrics() reads its tp / fp / fn totals from the per-item counts when they are current, else
    it groups the matches rows: either way they are the matches rows' totals."""
    ws, ds, run = pair
    run.commit()
    totals = _grouped_totals(ws, run.id)
    assert match_counts.run_totals(ws.store, run.id) == totals
    got = run.metrics()["counts"]
    assert got == {"tp": totals[("prediction", "tp")], "fp": totals[("prediction", "fp")],
                   "fn": totals[("gt", "fn")]} and got["tp"] > 0
    with ws.store.transaction() as con:  # rows written by hand: the counts lag them
        con.execute("""INSERT INTO matches SELECT * REPLACE ('fp' AS status) FROM matches
                       WHERE source = 'prediction' AND status = 'tp'""")
    assert match_counts.run_totals(ws.store, run.id) is None
    totals = _grouped_totals(ws, run.id)
    assert run.metrics()["counts"]["fp"] == totals[("prediction", "fp")] > got["fp"]
