"""Object queries printed with fewer nodes (unnamed later union branches, lazily built columns, the DuckDB
generator's identifier and column fast paths) return exactly what the plain shapes return."""
from __future__ import annotations

import pytest
from sqlglot import exp
from sqlglot.generators.duckdb import DuckDBGenerator

from dsl_world import build
from engine.execution.runner import compile_for
from queries import dialects
from queries.sqlbuild import OBJECT_OUTPUT, output


@pytest.fixture(scope="module")
def world():
    w = build(seed=5, n_items=80)
    yield w
    w.ws.close()


class _PlainGenerator(DuckDBGenerator):
    """sqlglot's DuckDB generator with only Loupe's JSON pointers (no fast paths)."""

    TRANSFORMS = {**DuckDBGenerator.TRANSFORMS, exp.JSONExtract: dialects._json_sql,
                  exp.JSONExtractScalar: dialects._json_sql}


class _Plain(dialects.LoupeDuckDB):
    generator_class = _PlainGenerator


QUERIES = [
    ('status = "tp" ORDER BY iou ASC LIMIT 7', "objects"),
    ('status = "fp" AND confidence > 0.3 AND item.metadata.camera = "rear"', "objects"),
    ('source = "gt" AND area < 900', "objects"),
    ('metadata.weather.rain > 0.5 AND annotations.count > 2', "items"),
    ('iou IS NULL OR iou > 0.6 ORDER BY best_iou DESC, confidence LIMIT 11 OFFSET 3', "objects"),
]


@pytest.mark.parametrize("dsl,target", QUERIES)
def test_fast_generator_prints_what_sqlglot_prints(world, dsl, target):
    e = compile_for(world.ds, dsl, target, "r1").expression
    assert dialects.to_sql(e) == e.sql(dialect=_Plain, comments=False)


def test_fast_column_path_keeps_quoting_and_qualifiers():
    cols = [exp.column("order", "t"), exp.column("x", "t", db="main"), exp.column("Mixed Case", quoted=True),
            exp.column("select"), exp.Column(this=exp.Identifier(this="y", quoted=True), table=exp.to_identifier("a"))]
    for c in cols:
        sel = exp.select(c).from_("t")
        assert dialects.to_sql(sel) == sel.sql(dialect=_Plain, comments=False)
    assert '"order"' in dialects.to_sql(exp.select(cols[0]))
    assert "main.t.x" in dialects.to_sql(exp.select(cols[1]))


def test_output_names_only_where_needed():
    assert output(exp.column("x", "a"), "x") == exp.column("x", "a")
    assert output(exp.column("x", "a"), "y").alias == "y"
    assert output(exp.column("x", "a"), "y", first=False) == exp.column("x", "a")


def _rows(t):
    return t.to_pylist()


@pytest.mark.parametrize("dsl,order_by", [
    ('status = "tp"', "iou ASC"),  # both sides from matches, ties in iou (a GT and its prediction)
    ('iou IS NULL OR iou > 0.5', "iou ASC"),  # NULL sort values (unmatched rows last)
    ("", "confidence DESC"),  # NULL confidence on every GT row
    ('status = "fp" OR status = "fn"', "label ASC, area DESC"),
])
def test_two_phase_rows_equal_one_phase_rows(world, dsl, order_by):
    """LIMIT / OFFSET (hits, then rows of both sides) return the same rows, in the same order and with the same
    types, as the one-phase sorted query sliced in Python."""
    ds = world.ds
    full = ds.query_objects(dsl, run="r1", order_by=order_by)
    assert full.column_names == list(OBJECT_OUTPUT)
    assert {"gt", "prediction"} <= set(full.column("source").to_pylist())
    for limit, offset in ((5, None), (12, 4), (full.num_rows + 10, None), (3, full.num_rows)):
        got = ds.query_objects(dsl, run="r1", order_by=order_by, limit=limit, offset=offset)
        assert got.schema == full.schema
        assert _rows(got) == _rows(full)[offset or 0:(offset or 0) + limit]


def test_two_phase_empty_and_item_filtered(world):
    ds = world.ds
    empty = ds.query_objects('status = "tp" AND iou > 2', run="r1", limit=10)
    assert empty.num_rows == 0 and empty.column_names == list(OBJECT_OUTPUT)
    # an item-level filter takes the two-phase shape without a LIMIT
    filtered = ds.query_objects('item.annotations.count > 3 AND confidence > 0.2', run="r1")
    plain = ds.query_objects('confidence > 0.2', run="r1")
    many = {it["reference_id"] for it in world.items if len(it["anns"]) > 3}
    assert filtered.num_rows > 0
    assert _rows(filtered) == [r for r in _rows(plain) if r["reference_id"] in many]
