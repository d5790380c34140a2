"""Differential test: the whole DSL corpus (tests/unit/test_dsl_queries.py, world tests/unit/dsl_world.py)
on DuckDB and on Spark (local[2], the shared session) over the same data, exported as Parquet tables —
identical rows in identical order. Spark SQL is printed from the DSL's own tree (engine.spark.query).

Each world's Spark answers are asked for up front, on two driver threads (:class:`Ahead`), and each test
compares its own answer when it comes: a query on these tiny tables is mostly driver latency
(planning, scheduling), which overlaps — measured on the warm item corpus, 22.7 s one by one vs
14.2 s on two threads (load ~10)."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

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


class Ahead:
    """Spark answers computed ahead of the tests on two threads (Spark runs one driver thread's jobs
    beside another's); a test waits for its own answer, so a failure still lands on its case."""

    def __init__(self, jobs: dict[Any, Callable[[], pa.Table]]):
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="spark-ahead")
        self._futures: dict[Any, Future] = {k: self._pool.submit(f) for k, f in jobs.items()}

    def __getitem__(self, key: Any) -> pa.Table:
        return self._futures[key].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


ITEMS = [(dsl, None, {}) for dsl, _ in ITEM_CASES] + [(dsl, "r1", {}) for dsl, _ in RUN_CASES] + EXTRA_ITEMS
OBJECTS = [(dsl, "r1", {}) for dsl, _ in OBJECT_CASES] + EXTRA_OBJECTS
SLICES = ["busy", "fps"]


@pytest.fixture(scope="module")
def both(spark, tmp_path_factory):
    w = build()
    w.ds.create_slice("busy", query="annotations.count > 4")
    w.ds.create_slice("fps", query='status = "fp"', run="r1", objects=True)
    out = tmp_path_factory.mktemp("tables")
    export_tables(w.ws, out)
    q = SparkQueries(spark, out, cache=True)
    q.catalog("world")  # one catalog (and its memo) for both threads
    jobs: dict[Any, Callable[[], pa.Table]] = {}
    for i, (dsl, run, kw) in enumerate(ITEMS):
        jobs["items", i] = lambda dsl=dsl, run=run, kw=kw: q.items("world", dsl, run=run, **kw)
    for i, (dsl, run, kw) in enumerate(OBJECTS):
        jobs["objects", i] = lambda dsl=dsl, run=run, kw=kw: q.objects("world", dsl, run=run, **kw)
    for name in SLICES:
        jobs["slice", name] = lambda name=name: q.slice("world", name)
    ahead = Ahead(jobs)
    yield w, ahead
    ahead.close()
    w.ws.close()


def _same(local: pa.Table, remote: pa.Table, cols: list[str]) -> None:
    assert remote.num_rows == local.num_rows
    for c in cols:
        a, b = local.column(c), remote.column(c)
        if pa.types.is_floating(a.type) or pa.types.is_integer(a.type):
            b = b.cast(a.type)
        assert b.to_pylist() == a.to_pylist(), c


@pytest.mark.parametrize("i", range(len(ITEMS)), ids=[f"{r or ''}:{d or '<empty>'}:{k}" for d, r, k in ITEMS])
def test_item_queries_same_on_spark(both, i):
    w, ahead = both
    dsl, run, kw = ITEMS[i]
    _same(w.ds.query(dsl, run=run, **kw), ahead["items", i],
          ["reference_id", "image_location", "width", "height", "metadata"])


@pytest.mark.parametrize("i", range(len(OBJECTS)), ids=[f"{r or ''}:{d or '<empty>'}:{k}" for d, r, k in OBJECTS])
def test_object_queries_same_on_spark(both, i):
    w, ahead = both
    dsl, run, kw = OBJECTS[i]
    _same(w.ds.query_objects(dsl, run=run, **kw), ahead["objects", i], _OBJ_COLS)


@pytest.mark.parametrize("name", SLICES)
def test_dynamic_slices_same_on_spark(both, name):
    w, ahead = both
    s = w.ds.get_slice(name)
    local = s.items() if s.kind == "items" else w.ds.query_objects(s.query, run=s.run)
    remote = ahead["slice", name]
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
    q = SparkQueries(spark, out, cache=True)
    q.catalog(world.ds.name)
    ahead = Ahead({i: lambda dsl=dsl, kw=kw, run=run: q.objects(world.ds.name, dsl, run=run, **kw)
                   for i, (dsl, kw, run) in enumerate(OS_CASES)})
    yield world, ahead
    ahead.close()
    world.ws.close()


def _rows(t: pa.Table, names: list[str]) -> list[tuple]:
    import math

    cols = [t.column(n).to_pylist() for n in names]
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in zip(*cols)]


@pytest.mark.parametrize("i", range(len(OS_CASES)), ids=[f"{r}:{d or '<all>'}:{k}" for d, k, r in OS_CASES])
def test_object_scan_corpus_same_on_spark(scan_world, i):
    w, ahead = scan_world
    dsl, kw, run = OS_CASES[i]
    local = w.ds.query_objects(dsl, run=run, **kw)
    remote = ahead[i]
    names = [n for n in local.column_names if n != "metadata"]  # JSON text: same values, key order may differ
    assert _rows(remote, names) == _rows(local, names)
