"""Issue 13 B7: queries the compiler accepted but DuckDB refused, raw exceptions, constant sort keys and
long flat AND/OR chains; plus a small fuzzer: every random query is a DSL error or valid SQL."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl_world import build
from engine.execution.runner import compile_for, execute
from queries.errors import DSLError, DSLSyntaxError, DSLTypeError


@pytest.fixture(scope="module")
def world():
    w = build(seed=3, n_items=24)
    yield w
    w.ws.close()


def _sql(ds, dsl, target="items", run=None, order_by=None, limit=None, offset=None):
    return execute(ds, compile_for(ds, dsl, target, run, order_by, limit, offset))


@pytest.mark.parametrize("dsl,match", [
    ('ORDER BY "abc"', "constant sort key"),  # DuckDB: "ORDER BY non-integer literal has no effect"
    ("ORDER BY NULL", "constant sort key"),
    ("annotations.count > 1 ORDER BY 2 DESC", "constant sort key"),  # SQL: column 2
    ("LIMIT 99999999999999999999", "too large"),  # DuckDB: INT128 out of range
    ("LIMIT 1 OFFSET 9223372036854775808", "too large"),
    ('NULL BETWEEN 1 AND "a"', "cannot compare"),  # NULL hid number vs string: DuckDB conversion error
    ('NULL IN (1, "a")', "cannot compare"),
    ('annotations.count IN (NULL, 1, "a")', "cannot compare"),
])
def test_compiles_only_what_duckdb_runs(world, dsl, match):
    with pytest.raises(DSLTypeError, match=match) as e:
        _sql(world.ds, dsl)
    assert "^" in str(e.value)


def test_limit_arguments_beyond_int64_are_dsl_errors(world):
    with pytest.raises(DSLTypeError, match="limit"):
        world.ds.query("", limit=2**63)
    with pytest.raises(DSLTypeError, match="offset"):
        world.ds.query_objects("", limit=1, offset=2**64)
    assert _sql(world.ds, "LIMIT 9223372036854775807").num_rows == 24


@pytest.mark.parametrize("dsl", ['metadata.camera = "\\uD800"', 'metadata.camera = "\\udc00\\ud800"',
                                 'metadata.camera = "\ud800"'])
def test_lone_surrogates_are_syntax_errors(world, dsl):
    with pytest.raises(DSLSyntaxError, match="surrogate"):
        world.ds.create_slice("s", query=dsl)
    with pytest.raises(DSLSyntaxError, match="surrogate"):
        world.ds.query(dsl)
    assert "s" not in world.ds.slices().column("name").to_pylist() if hasattr(world.ds, "slices") else True


def test_a_surrogate_pair_escape_is_one_character(world):
    ds = world.ds
    ds.create_slice("emoji", query='metadata.camera = "\\ud83d\\ude00"')
    assert ds.query('metadata.camera = "\\ud83d\\ude00"').num_rows == 0
    assert ds.query('metadata.camera != "\\ud83d\\ude00"').num_rows > 0


def test_long_flat_chains_compile_and_run(world):
    """5,000 terms through the parser, the compiler and sqlglot's generator (balanced, not left-deep);
    the object copy's evaluator (arrow_eval) runs such chains in test_object_scan's corpus."""
    ds = world.ds
    ors = " OR ".join(f"width = {i}" for i in range(5000))  # breadth, not depth
    assert len(compile_for(ds, ors, "items", None, None, None, None).sql()) > 5000 * 10
    chain = " OR ".join(f"annotations.count = {i}" for i in range(300))
    want = [it["reference_id"] for it in world.items if len(it["anns"]) < 300]
    assert ds.query(chain).column("reference_id").to_pylist() == want


def test_deep_nesting_is_still_refused(world):
    with pytest.raises(DSLSyntaxError, match="nested too deeply"):
        world.ds.query("(width > 1 OR " * 300 + "width > 1" + ")" * 300)  # right-nested: real depth
    with pytest.raises(DSLSyntaxError, match="nested too deeply"):
        world.ds.query("NOT " * 300 + "width > 1")


# -- a small fuzzer ------------------------------------------------------------------------------------

ITEM_FIELDS = ["width", "height", "annotations.count", "annotations.car", 'annotations."traffic light"',
               "metadata.camera", "metadata.speed", "metadata.frame", "metadata.weather.rain", "metadata.nope",
               "predictions.fp", "max_confidence", "reference_id", "image_location"]
OBJECT_FIELDS = ["x", "y", "width", "area", "confidence", "iou", "label", "status", "source", "kind",
                 "iscrowd", "item.metadata.camera", "metadata.occluded", "annotation_id"]
CONSTANTS = ["0", "1", "-1", "2.5", "1e308", "99999999999999999999", "9223372036854775807", '"car"', '"rear"',
             "'x'", '""', "NULL", "TRUE", "FALSE", '"\\u00e9"', '"\\uD800"', '"%"']
FUNCS = ["abs", "floor", "ceil", "sqrt", "round", "lower", "upper", "length", "slice", "nope"]


@st.composite
def value(draw, fields, depth=0):
    kind = draw(st.sampled_from(["field", "field", "const", "const", "arith", "func", "neg", "paren"]
                                if depth < 3 else ["field", "const"]))
    if kind == "field":
        return draw(st.sampled_from(fields))
    if kind == "const":
        return draw(st.sampled_from(CONSTANTS))
    sub = lambda: draw(value(fields, depth + 1))  # noqa: E731
    if kind == "arith":
        return f"{sub()} {draw(st.sampled_from(['+', '-', '*', '/', '%']))} {sub()}"
    if kind == "func":
        return f"{draw(st.sampled_from(FUNCS))}({sub()})"
    if kind == "neg":
        return f"-{sub()}"
    return f"({sub()})"


@st.composite
def condition(draw, fields, depth=0):
    v = lambda: draw(value(fields))  # noqa: E731
    kind = draw(st.sampled_from(["cmp", "cmp", "in", "between", "like", "null", "bare"] +
                                (["and", "or", "not"] if depth < 3 else [])))
    if kind == "cmp":
        return f"{v()} {draw(st.sampled_from(['=', '!=', '<', '<=', '>', '>=', '==', '<>']))} {v()}"
    if kind == "in":
        return f"{v()} {draw(st.sampled_from(['IN', 'NOT IN']))} ({', '.join(v() for _ in range(draw(st.integers(1, 3))))})"
    if kind == "between":
        return f"{v()} {draw(st.sampled_from(['BETWEEN', 'NOT BETWEEN']))} {v()} AND {v()}"
    if kind == "like":
        return f"{v()} {draw(st.sampled_from(['LIKE', 'NOT LIKE']))} {v()}"
    if kind == "null":
        return f"{v()} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if kind == "bare":
        return v()
    if kind == "not":
        return f"NOT ({draw(condition(fields, depth + 1))})"
    parts = [draw(condition(fields, depth + 1)) for _ in range(draw(st.integers(2, 4)))]
    return f" {kind.upper()} ".join(f"({p})" for p in parts)


@st.composite
def query(draw):
    target = draw(st.sampled_from(["items", "objects"]))
    fields = ITEM_FIELDS if target == "items" else OBJECT_FIELDS
    text = draw(st.one_of(st.just(""), condition(fields)))
    if draw(st.booleans()):
        keys = [f"{draw(value(fields))}{draw(st.sampled_from(['', ' ASC', ' DESC']))}"
                for _ in range(draw(st.integers(1, 2)))]
        text += " ORDER BY " + ", ".join(keys)
    if draw(st.booleans()):
        text += f" LIMIT {draw(st.sampled_from(['0', '3', '9223372036854775807', '99999999999999999999']))}"
        if draw(st.booleans()):
            text += f" OFFSET {draw(st.sampled_from(['1', '18446744073709551616']))}"
    return target, text.strip(), draw(st.sampled_from([None, "r1"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(query())
def test_fuzzed_queries_are_dsl_errors_or_valid_sql(world, q):
    """Compile random queries and run their SQL on DuckDB: a DSLError is fine, a DuckDB error is a bug
    (the compiler let through SQL DuckDB refuses)."""
    target, text, run = q
    try:
        compiled = compile_for(world.ds, text, target, run, None, None, None)
    except DSLError:
        return
    execute(world.ds, compiled)  # raises LoupeError("query failed while running: ...") on DuckDB errors
