"""Differential test: the whole DSL corpus (tests/unit/test_dsl_queries.py, world tests/unit/dsl_world.py)
on DuckDB and on Spark (local[2], one session) over the same data, exported as Parquet tables —
identical rows in identical order. Spark SQL is printed from the DSL's own tree (engine.spark.query)."""
from __future__ import annotations

import pyarrow as pa
import pytest

from dsl_world import build
from engine.io.parquet_tables import export_tables
from engine.spark.query import SparkQueries
from test_dsl_queries import ITEM_CASES, OBJECT_CASES, RUN_CASES
from tests.spark_support import spark  # noqa: F401  (module-scoped fixture)

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
def both(spark, tmp_path_factory):  # noqa: F811
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
