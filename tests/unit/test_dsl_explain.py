"""explain(): the SQL of a query in DuckDB, Spark, Trino and Postgres; what the compiler leaves out."""
from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

import engine
from dsl_world import build
from engine.execution.catalog import DuckDBCatalog
from queries import compile_query

QUERY = 'annotations.pedestrian >= 2 AND metadata.weather.rain > 0.5 AND metadata."time of day" = "dusk"'


@pytest.fixture(scope="module")
def world():
    w = build(seed=5, n_items=30)
    yield w
    w.ws.close()


@pytest.mark.parametrize("dialect,json_fn", [
    ("duckdb", "JSON_EXTRACT"), ("spark", "GET_JSON_OBJECT"), ("trino", "JSON_EXTRACT"),
    ("postgres", "JSON_EXTRACT_PATH"),
])
def test_explain_in_each_dialect(dialect, json_fn):
    sql = engine.explain(QUERY, dialect=dialect)
    tree = sqlglot.parse_one(sql, read=dialect)  # our own SQL, parsed back only to check it
    assert isinstance(tree, exp.Select)
    assert json_fn in sql.upper()
    assert "'pedestrian'" in sql
    # without a workspace the ids are placeholders
    assert any(isinstance(n, (exp.Placeholder, exp.Parameter)) for n in tree.walk())


def test_explain_of_object_queries():
    sql = engine.explain('status = "fp" ORDER BY confidence DESC LIMIT 5', objects=True, run="r")
    assert "__hits" in sql and "LIMIT 5" in sql
    with pytest.raises(engine.LoupeError):
        engine.explain("annotations.count > 1", dialect="oracle")


def test_dataset_explain_runs_to_the_same_rows(world):
    sql = world.ds.explain("annotations.count > 2 AND metadata.speed > 10")
    assert "$" not in sql  # real ids
    direct = world.ws.sql(sql)
    assert direct.equals(world.ds.query("annotations.count > 2 AND metadata.speed > 10"))


def test_sides_that_cannot_match_are_not_read(world):
    gt_only = world.ds.explain('source = "gt" AND area < 32 * 32', run="r1", objects=True)
    assert "predictions" not in gt_only and "1024" in gt_only  # 32 * 32 folded
    preds_only = world.ds.explain("confidence > 0.5", run="r1", objects=True)
    assert "annotations AS a" not in preds_only
    nothing = world.ds.query_objects('source = "gt" AND source = "prediction"', run="r1")
    assert nothing.num_rows == 0 and "reference_id" in nothing.column_names


def test_worst_iou_first_phase_reads_matches_only(world):
    sql = world.ds.explain('status = "tp" ORDER BY iou ASC LIMIT 50', run="r1", objects=True)
    hits = sql.split("SELECT", 2)[2].split(") AS h")[0]  # the first-phase subquery
    assert "FROM matches AS m" in hits and "annotations" not in hits and "predictions" not in hits


def test_label_counts_are_narrowed_in_the_scan(world):
    """Several counts are columns of the per-item count row; one count (or any without that row) is one
    label's rows of item_counts."""
    sql = world.ds.explain("annotations.pedestrian + annotations.car >= 2")
    assert "FROM item_count_columns" in sql and "JOIN item_counts" not in sql and "FILTER" not in sql
    slots = DuckDBCatalog(world.ws.store, world.ds.id).label_slots()
    assert f"w.n{slots[('pedestrian', None)]} AS c0" in sql and f"w.n{slots[('car', None)]} AS c1" in sql

    class NoColumns(DuckDBCatalog):
        def label_slots(self):
            return {}

    for sql in (compile_query("annotations.pedestrian >= 2", NoColumns(world.ws.store, world.ds.id)).sql(),
                world.ds.explain("annotations.pedestrian >= 2")):  # one count: item_counts either way
        assert "a.label = 'pedestrian'" in sql and "item_count_columns" not in sql and "FILTER" not in sql
