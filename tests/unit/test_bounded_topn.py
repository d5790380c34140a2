"""Object top-n queries run in DuckDB with a bounded phase 1 (queries/sqlbuild.py ``Side.bound``) return
exactly what the plain SQL returns: the bounded answer is taken only when it finds the n rows, else the
plain query runs. Checked with tiny candidate counts so that boundaries fall inside the data (ties,
NULL keys, sparse filters that force the fallback)."""
from __future__ import annotations

import math

import pytest

from dsl_world import build
from engine.execution import object_cache
from engine.execution import runner
from engine.execution.runner import compile_for, execute
from queries import sqlbuild

W = build(seed=11, n_items=60)


@pytest.fixture(scope="module", autouse=True)
def _close_world():
    yield
    W.ws.close()


QUERIES = [  # (text, run): one side each, first sort key a number column of the object's table
    ('status = "fp" AND confidence > 0 ORDER BY confidence DESC', "r1"),
    ('status = "fp" AND confidence > 0.3 ORDER BY confidence DESC, x', "r1"),
    ('source = "prediction" AND status = "tp" ORDER BY confidence, iou DESC', "r1"),
    ('status = "fp" ORDER BY confidence DESC', "r1"),  # both sides: not bounded
    ('source = "prediction" ORDER BY x DESC', "r1"),
    ('source = "gt" AND status = "fn" ORDER BY area', "r1"),
    ('source = "gt" ORDER BY area DESC, label', "r1"),
    ('source = "gt" AND label = "car" ORDER BY width DESC', "r1"),
    ('source = "prediction" AND item.metadata.camera = "rear" ORDER BY height', "r1"),
    ('source = "prediction" AND iou > 0.6 ORDER BY y DESC', "r1"),
    ('source = "gt" ORDER BY x * 0 DESC', "r1"),  # a computed key: not bounded
    ('source = "prediction" ORDER BY confidence DESC', "r2"),  # uncommitted run: no matches rows
    ("ORDER BY area DESC", None),  # ground truth only
]
LIMITS = [(1, None), (3, None), (5, 2), (20, None), (7, 10_000)]


def rows(t):
    return [{k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in t.to_pylist()]


def bounded_answers(monkeypatch, per_row: int) -> list[int]:
    """Every object query in DuckDB, tiny candidate counts; returns the list the bounded SQL's row counts
    are appended to as queries run."""
    monkeypatch.setattr(object_cache.COPIES, "max_bytes", 0)  # everything in DuckDB
    monkeypatch.setattr(sqlbuild, "MIN_CANDIDATES", 1)
    monkeypatch.setattr(sqlbuild, "CANDIDATES_PER_ROW", per_row)
    answered: list[int] = []
    real = runner._run_sql

    def spy(ds, sql):
        out = real(ds, sql)
        answered.append(out.num_rows)
        return out
    monkeypatch.setattr(runner, "_run_sql", spy)
    return answered


@pytest.mark.parametrize("per_row", [1, 2, 20])
def test_bounded_top_n_equals_plain_sql(monkeypatch, per_row):
    answered = bounded_answers(monkeypatch, per_row)
    bounded = taken = 0
    for text, run in QUERIES:
        for limit, offset in LIMITS:
            answered.clear()
            compiled = compile_for(W.ds, text, "objects", run, None, limit, offset)
            if compiled.bounded is not None:
                assert "__bound" in compiled.bounded_sql()
            got = W.ds.query_objects(text, run=run, limit=limit, offset=offset)
            want = execute(W.ds, compiled)
            assert got.schema == want.schema
            assert rows(got) == rows(want), (text, limit, offset, per_row)
            bounded += compiled.bounded is not None
            taken += bool(answered) and answered[0] == limit
    assert bounded >= 30  # the corpus exercises the bounded plan...
    if per_row == 1:
        assert 0 < taken < bounded  # ... both its answers and its fallbacks
    else:
        assert taken > 0


def test_which_queries_are_bounded():
    def has(text, run="r1", limit=5, offset=None):
        return compile_for(W.ds, text, "objects", run, None, limit, offset).bounded is not None
    assert has('status = "fp" AND confidence > 0.5 ORDER BY confidence DESC')
    assert has('source = "prediction" AND status = "fp" ORDER BY confidence DESC, x')
    assert has('source = "gt" ORDER BY area')
    assert not has('status = "fp" ORDER BY confidence DESC', limit=None)  # no LIMIT
    assert not has('status = "fp" ORDER BY confidence DESC')  # both sides (a GT row could be "fp")
    assert not has('status = "tp" ORDER BY iou')  # a matches column (matches written in IoU order)
    assert not has('source = "gt" ORDER BY x * 2')  # computed
    assert not has('source = "gt" ORDER BY label')  # a string
    assert not has('source = "gt" ORDER BY area', limit=sqlbuild.MAX_BOUNDED + 1)


def test_nan_and_null_keys(tmp_path, monkeypatch):
    """DuckDB orders NaN above every number (first descending, last before NULLs ascending): the boundary
    and the filter on it compare the same way, and NULL keys come from the plain query."""
    import engine

    answered = bounded_answers(monkeypatch, 1)
    ws = engine.connect(tmp_path / "w.duckdb")
    try:
        ds = ws.create_dataset("d")
        ds.append([engine.DatasetItem(f"/{k}.png", f"i{k}", width=200, height=200) for k in range(6)],
                  check_images=False)
        preds = [engine.BoxPrediction("car", f"i{k}", x=10 + j, y=10, width=30, height=30,
                                      confidence=round(0.1 * ((k + 3 * j) % 9), 2), annotation_id=f"p{k}{j}")
                 for k in range(6) for j in range(3)]
        run = ws.add_model("m").create_run("r", ds, preds)
        run.commit(iou_threshold=0.5)
        ws.sql("UPDATE predictions SET confidence = 'NaN'::DOUBLE WHERE annotation_id IN ('p10', 'p41')")
        ws.sql("UPDATE predictions SET confidence = NULL WHERE annotation_id IN ('p20', 'p52')")
        for text in ['source = "prediction" ORDER BY confidence DESC', 'source = "prediction" ORDER BY confidence',
                     'source = "prediction" AND confidence > 0.3 ORDER BY confidence DESC, x']:
            for limit, offset in [(1, None), (2, None), (3, 1), (16, None), (17, None), (18, 1)]:
                compiled = compile_for(ds, text, "objects", "r", None, limit, offset)
                assert compiled.bounded is not None
                got = ds.query_objects(text, run="r", limit=limit, offset=offset)
                assert rows(got) == rows(execute(ds, compiled)), (text, limit, offset)
        assert 0 < sum(n > 0 for n in answered) and len(answered) == 18
    finally:
        ws.close()
