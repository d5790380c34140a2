"""Differential test: the whole DSL corpus (tests/unit/test_dsl_queries.py, world tests/unit/dsl_world.py)
on DuckDB and on Spark (local[2], the shared session) over the same data, exported as Parquet tables —
identical rows in identical order. Spark SQL is printed from the DSL's own tree (engine.spark.query)."""
from __future__ import annotations

import pyarrow as pa
import pytest

from dsl_world import build
from engine.io.parquet_tables import export_tables
from engine.spark.query import SparkQueries
from test_dsl_queries import ITEM_CASES, OBJECT_CASES, RUN_CASES

EXTRA_ITEMS = [  # ordering, limits and slices of the corpus's other tests
    ("ORDER BY annotations.count DESC LIMIT 7", None, {}),
    ("annotations.count >= 0", None, {"order_by": "annotations.count desc", "limit": 7}),
    ("ORDER BY annotations.count DESC LIMIT 3 OFFSET 4", None, {}),
    ("metadata.speed >= 0 ORDER BY metadata.speed DESC LIMIT 10", None, {}),
    ('predictions("r1").fp > 1', None, {}),
    ("predictions.count > 0", "r2", {}),
]
EXTRA_OBJECTS = [
    ('status = "fp" ORDER BY confidence DESC LIMIT 10', "r1", {}),
    ('status = "tp"', "r1", {"order_by": "iou ASC", "limit": 9, "offset": 2}),
    ("area > 100", None, {}),
    ('status = "fn" ORDER BY x DESC LIMIT 2', "r1", {}),
]
_OBJ_COLS = ["source", "reference_id", "annotation_id", "label", "status", "error_type", "iou", "best_iou",
             "confidence", "ann_key", "pred_key", "partner_key"]


@pytest.fixture(scope="module")
def both(spark, tmp_path_factory):
    w = build()
    w.ds.create_slice("busy", query="annotations.count > 4")
    w.ds.create_slice("fps", query='status = "fp"', run="r1", objects=True)
    out = tmp_path_factory.mktemp("tables")
    export_tables(w.ws, out)
    q = SparkQueries(spark, out, cache=True)
    yield w, q
    w.ws.close()


def _same(local: pa.Table, remote: pa.Table, cols: list[str]) -> None:
    assert remote.num_rows == local.num_rows
    for c in cols:
        a, b = local.column(c), remote.column(c)
        if pa.types.is_floating(a.type) or pa.types.is_integer(a.type):
            b = b.cast(a.type)
        assert b.to_pylist() == a.to_pylist(), c


ITEMS = [(dsl, None, {}) for dsl, _ in ITEM_CASES] + [(dsl, "r1", {}) for dsl, _ in RUN_CASES] + EXTRA_ITEMS


@pytest.mark.parametrize("dsl,run,kw", ITEMS, ids=[f"{r or ''}:{d or '<empty>'}:{k}" for d, r, k in ITEMS])
def test_item_queries_same_on_spark(both, dsl, run, kw):
    w, q = both
    _same(w.ds.query(dsl, run=run, **kw), q.items("world", dsl, run=run, **kw),
          ["reference_id", "image_location", "width", "height", "metadata"])


OBJECTS = [(dsl, "r1", {}) for dsl, _ in OBJECT_CASES] + EXTRA_OBJECTS


@pytest.mark.parametrize("dsl,run,kw", OBJECTS, ids=[f"{r or ''}:{d or '<empty>'}:{k}" for d, r, k in OBJECTS])
def test_object_queries_same_on_spark(both, dsl, run, kw):
    w, q = both
    _same(w.ds.query_objects(dsl, run=run, **kw), q.objects("world", dsl, run=run, **kw), _OBJ_COLS)


@pytest.mark.parametrize("name", ["busy", "fps"])
def test_dynamic_slices_same_on_spark(both, name):
    w, q = both
    s = w.ds.get_slice(name)
    local = s.items() if s.kind == "items" else w.ds.query_objects(s.query, run=s.run)
    remote = q.slice("world", name)
    cols = ["reference_id"] if s.kind == "items" else _OBJ_COLS
    _same(local, remote, cols)
    assert remote.num_rows > 0


# -- the object-query corpus of tests/unit/test_object_scan.py (its own world: slices, ties, NULLs) ----------
def _object_scan_cases():
    import test_object_scan as t

    cases = [(dsl, kw, run) for dsl, kw, _, runs in t.CORPUS for run in runs if run != "r2"]
    return cases[::4]  # every fourth case keeps the added CI time small; all fields and forms still appear


OS_CASES = _object_scan_cases()


@pytest.fixture(scope="module")
def scan_world(spark, tmp_path_factory):
    import test_object_scan as t

    out = tmp_path_factory.mktemp("scan_tables")
    world = t.make_world()  # its own: test_object_scan closes its world when that module ends
    export_tables(world.ws, out)
    yield world, SparkQueries(spark, out, cache=True)
    world.ws.close()


def _rows(t: pa.Table, names: list[str]) -> list[tuple]:
    import math

    cols = [t.column(n).to_pylist() for n in names]
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in zip(*cols)]


@pytest.mark.parametrize("dsl,kw,run", OS_CASES, ids=[f"{r}:{d or '<all>'}:{k}" for d, k, r in OS_CASES])
def test_object_scan_corpus_same_on_spark(scan_world, dsl, kw, run):
    w, q = scan_world
    local = w.ds.query_objects(dsl, run=run, **kw)
    remote = q.objects(w.ds.name, dsl, run=run, **kw)
    names = [n for n in local.column_names if n != "metadata"]  # JSON text: same values, key order may differ
    assert _rows(remote, names) == _rows(local, names)
