"""DSL text can only ever run one read query: an injection corpus and property-based fuzzing.

Every hostile string is tried as a whole query, as a string value, as a label, as a metadata key and as a
slice name. We check that (1) the only SQL sent to DuckDB is one SELECT with no DDL/DML inside, (2) every
table is bit-for-bit unchanged, and (3) values round-trip exactly (the string matches itself, nothing else).
"""
from __future__ import annotations

import itertools
import json

import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

import engine
from engine.store.database import Store
from queries import DSLError, MetadataSchema, RunInfo, StaticCatalog, compile_query
from queries.values import literal

CORPUS = [
    "'); DROP TABLE items; --",
    "\"); DROP TABLE items; --",
    "x' OR '1'='1",
    'x" OR "1"="1',
    "' OR 1=1 --",
    "1; DELETE FROM annotations",
    "rear'; UPDATE items SET metadata = NULL; --",
    "a'' OR ''a''=''a",
    "\\'; DROP TABLE items; --",
    "\\\\'",
    "\\",
    "'",
    '"',
    "`",
    "``; DROP TABLE items",
    "/* comment */ 1",
    "*/ DROP TABLE items /*",
    "-- just a comment",
    "x\n; DROP TABLE items; --",
    "$$ DROP TABLE items $$",
    "$1",
    "?",
    "%s%s%s",
    "{0}{1}",
    "E'\\x27'",
    "'; ATTACH 'evil.duckdb' AS evil; --",
    "'; COPY items TO '/tmp/pwned.csv'; --",
    "'; INSTALL httpfs; LOAD httpfs; --",
    "' UNION SELECT * FROM read_csv('/etc/passwd') --",
    "'; PRAGMA database_list; --",
    "'; CREATE MACRO evil() AS 1; --",
    "'; SET threads = 1; --",
    "＇; DROP TABLE items; --",  # fullwidth apostrophe
    "ʼ OR 1=1",  # modifier letter apostrophe
    "rear\u202e'; DROP TABLE items; --",  # right-to-left override
    "re\u200bar",  # zero-width space
    "rеar",  # Cyrillic e
    "e\u0301",  # combining accent
    "line\u2028sep",
    "tab\there",
    "🚗🚓'🚙",
    "x" * 3000,
    "SELECT * FROM items",
    "annotations.count > 0; DROP TABLE items",
    "metadata.camera = 'x'; DROP TABLE items",
    "slice('test'); DELETE FROM slices",
    "1) OR (1=1",
]

TABLES = ["datasets", "items", "annotations", "label_versions", "models", "runs", "predictions", "matches",
          "slices", "slice_items", "slice_objects", "loupe_meta"]
BAD_NODES = (exp.Drop, exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Command, exp.Pragma, exp.Set,
             exp.Copy, exp.Attach, exp.Detach, exp.Use, exp.Alter, exp.Merge, exp.TruncateTable)


def quote(s: str) -> str:
    """A DSL string literal for any text (double quotes, backslash escapes)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def ws():
    w = engine.connect()
    ds = w.create_dataset("d")
    items = [engine.DatasetItem(f"/i/{k}.png", f"r{k}", width=100, height=100,
                                metadata={"camera": s, s: 1, "n": k}) for k, s in enumerate(CORPUS)]
    ds.append(items, check_images=False)
    ds.annotate([engine.BoxAnnotation(s, f"r{k}", x=1, y=1, width=5, height=5) for k, s in enumerate(CORPUS)])
    ds.create_slice("test", reference_ids=["r0", "r1"])
    for k, s in enumerate(CORPUS[:10]):
        ds.create_slice(s, reference_ids=[f"r{k}"])
    yield w
    w.close()


def fingerprint(w) -> dict:
    out = {}
    for t in TABLES:
        out[t] = w.store.con.execute(f"SELECT count(*), sum(hash(x::VARCHAR)) FROM (SELECT * FROM {t}) x").fetchone()
    out["__tables"] = w.store.con.execute(
        "SELECT list(table_name ORDER BY table_name) FROM information_schema.tables").fetchone()
    return out


@pytest.fixture
def sql_log(monkeypatch):
    """Every SQL text the store runs for a query."""
    seen: list[str] = []
    real = Store.arrow

    def spy(self, query, params=None):
        seen.append(query)
        return real(self, query, params)

    monkeypatch.setattr(Store, "arrow", spy)
    return seen


def assert_one_select(sql: str) -> None:
    stmts = sqlglot.parse(sql, read="duckdb")
    assert len(stmts) == 1, sql
    tree = stmts[0]
    assert isinstance(tree, (exp.Select, exp.Union)), type(tree)
    bad = [n for n in tree.walk() if isinstance(n, BAD_NODES)]
    assert not bad, bad


@pytest.mark.parametrize("s", CORPUS, ids=range(len(CORPUS)))
def test_hostile_text_as_a_whole_query(ws, sql_log, s):
    ds = ws.get_dataset("d")
    before = fingerprint(ws)
    for f in (ds.query, ds.query_objects):
        try:
            t = f(s)
            assert isinstance(t, pa.Table)
        except DSLError:
            pass
    assert fingerprint(ws) == before
    for sql in sql_log:
        assert_one_select(sql)


@pytest.mark.parametrize("k", range(len(CORPUS)))
def test_hostile_text_as_values_and_names(ws, sql_log, k):
    s = CORPUS[k]
    ds = ws.get_dataset("d")
    before = fingerprint(ws)
    ref = [f"r{k}"]
    # a string value matches exactly the item holding it
    assert ds.query(f"metadata.camera = {quote(s)}").column("reference_id").to_pylist() == ref
    assert ds.query(f"metadata.camera IN ({quote(s)}, 'zzz')").column("reference_id").to_pylist() == ref
    # as a label (quoted name), a metadata key and an object label value
    assert ds.query(f"annotations.{quote(s)} = 1").column("reference_id").to_pylist() == ref
    assert ds.query(f"metadata.{quote(s)} = 1").column("reference_id").to_pylist() == ref
    objs = ds.query_objects(f"label = {quote(s)}")
    assert objs.column("reference_id").to_pylist() == ref and objs.column("label").to_pylist() == [s]
    if k < 10:  # as a slice name
        assert ds.query(f"slice({quote(s)})").column("reference_id").to_pylist() == ref
    assert fingerprint(ws) == before
    assert sql_log and all(assert_one_select(q) is None for q in sql_log)


def test_hostile_values_in_backtick_names(ws):
    ds = ws.get_dataset("d")
    for k, s in enumerate(CORPUS):
        name = "`" + s.replace("`", "``") + "`"
        assert ds.query(f"annotations.{name} >= 1").column("reference_id").to_pylist() == [f"r{k}"]


def test_explain_never_runs_anything(ws):
    before = fingerprint(ws)
    for s in CORPUS:
        for dialect in ("duckdb", "spark", "trino", "postgres"):
            try:
                sql = engine.explain(f"metadata.camera = {quote(s)}", dialect=dialect)
            except DSLError:
                continue
            assert len(sqlglot.parse(sql, read=dialect)) == 1
    assert fingerprint(ws) == before


# -- property-based ------------------------------------------------------------------------------------
CAT = StaticCatalog(label_set={"pedestrian", "car"}, items_meta=MetadataSchema.from_values([{"camera": "x", "n": 1}]),
                    run_list=[RunInfo("r", 1, 0.5)])


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_any_text_compiles_or_raises_a_dsl_error(text):
    for target in ("items", "objects"):
        try:
            compile_query(text, CAT, target=target, run="r").sql()
        except DSLError:
            pass


TOKENS = ["annotations.count", "annotations.pedestrian", "annotations.\"car\"", "metadata.camera", "metadata.n",
          "predictions.fp", "max_iou", "status", "label", "confidence", "iou", "source", "item.metadata.n",
          "slice(\"x\")", "predictions(\"r\").tp", "AND", "OR", "NOT", "IN", "LIKE", "BETWEEN", "IS", "NULL", "TRUE",
          "=", "!=", "<", ">=", "+", "-", "*", "/", "%", "(", ")", ",", "'fp'", "\"x\"", "'", "\"", "`", "0", "1.5",
          "1e308", "9223372036854775807", "99999999999999999999", "ORDER BY", "LIMIT 3", "DESC", "abs(", "lower(",
          ";", "--", "/*", "\\", "\n", "é", "\u202e"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join))
def test_token_soup_compiles_and_runs_or_raises_a_dsl_error(ws, text):
    ds = ws.get_dataset("d")
    for run_query in (lambda: ds.query(text), lambda: ds.query_objects(text)):
        try:
            assert isinstance(run_query(), pa.Table)
        except DSLError:
            pass
        except engine.LoupeError as e:  # a read that fails while running (e.g. integer overflow)
            assert "query failed while running" in str(e)


@pytest.fixture(scope="module")
def blank():
    """One empty workspace for the examples that only need a Loupe connection (opening one per example
    cost ~0.5 s each: most of this module's time)."""
    w = engine.connect()
    yield w
    w.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text().filter(lambda s: "\x00" not in s))
def test_string_literals_round_trip_through_duckdb(blank, s):
    sql = literal(s).sql.sql("duckdb")
    assert blank.store.con.execute(f"SELECT {sql}").fetchone()[0] == s


@settings(max_examples=300, deadline=None)
@given(st.text().filter(lambda s: "\x00" not in s))
def test_dsl_string_quoting_round_trips(s):
    q = compile_query(f"metadata.camera = {quote(s)}", CAT)
    lits = [n.this for n in q.expression.find_all(exp.Literal) if n.is_string]
    assert s in lits


_META_DATASETS = itertools.count()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
                       st.one_of(st.integers(-10**6, 10**6), st.text(max_size=5).filter(lambda s: "\x00" not in s),
                                 st.booleans()), min_size=1,
                       max_size=3))
def test_metadata_keys_of_any_text_are_found(blank, meta):
    # a fresh dataset per example in one workspace (a query reads one dataset; the earlier examples'
    # datasets stay, so this also checks that no other dataset's keys leak in)
    ds = blank.create_dataset(f"m{next(_META_DATASETS)}")
    ds.append([engine.DatasetItem("/a.png", "a", metadata=meta, width=1, height=1)], check_images=False)
    for key, value in meta.items():
        lit = json.dumps(value) if not isinstance(value, str) else quote(value)
        if isinstance(value, bool):
            lit = "true" if value else "false"
        got = ds.query(f"metadata.{quote(key)} = {lit}").column("reference_id").to_pylist()
        assert got == ["a"], (key, value)
