"""Item query rows taken from the in-memory copy (engine/execution/item_cache.py) equal the plain SQL's rows, and the
copy never outlives a write; the store's generation moves with every write statement."""
from __future__ import annotations

import threading

import pytest

import engine
from engine.execution import item_cache
from engine.execution.runner import compile_for, execute
from engine.store.database import may_write

from dsl_world import build

QUERIES = [
    ("annotations.pedestrian >= 1", None, {}),
    ('metadata.camera = "rear" OR annotations.count > 3', None, {}),
    ("annotations.count >= 0 ORDER BY annotations.count DESC, width ASC", None, {}),
    ("annotations.car > 0", None, {"limit": 7, "offset": 3}),
    ("annotations.count > 1000", None, {}),  # no rows
    ("predictions.fp >= 1", "r1", {"order_by": "predictions.fp DESC"}),
    ("", None, {"limit": 0}),
    # read from the one per-item table when an item without a row there cannot match (and not otherwise)
    ("annotations.car = 0", None, {}),
    ("annotations.car < 1", None, {"limit": 5}),
    ("annotations.truck + annotations.bus >= 1", None, {"limit": 3, "offset": 1}),
    ("predictions.fp + 1 > 1", "r1", {}),
    ('metadata.camera = "rear"', None, {}),
    ('NOT metadata.camera = "rear"', None, {}),
    ("metadata.camera IS NULL", None, {}),
    ("predictions.fn > 0 OR predictions.fn IS NULL", "r1", {}),
    ('metadata.camera = "rear" AND annotations.count > 2', None, {}),
    ('metadata.camera = "rear" OR annotations.car > 0', None, {"limit": 9}),
    ("predictions.fp > 0 OR annotations.truck > 0", "r1", {}),
    ("predictions.fp > 0 OR annotations.truck = 0", "r1", {}),
]


@pytest.fixture(scope="module")
def world():
    w = build(seed=11, n_items=60)
    yield w
    w.ws.close()


def _sql_rows(ds, dsl, run, kw):
    return execute(ds, compile_for(ds, dsl, "items", run, kw.get("order_by"), kw.get("limit"), kw.get("offset")))


@pytest.mark.parametrize("dsl,run,kw", QUERIES)
def test_rows_from_the_copy_equal_the_sql_rows(world, dsl, run, kw):
    ds = world.ds
    ds.query(dsl, run=run, **kw)  # first query of this generation: SQL path; the next builds the copy
    got = ds.query(dsl, run=run, **kw)
    assert item_cache.rows_for(ds.ws.store, ds.id) is not None  # the copy is in use
    want = _sql_rows(ds, dsl, run, kw)
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()


def test_a_write_drops_the_copy(tmp_path):
    ws = engine.connect(tmp_path / "w.duckdb")
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(reference_id=f"r{i}", image_location=f"/x/{i}.jpg", width=10, height=10,
                                  metadata={"k": i}) for i in range(5)], check_images=False)
    for _ in range(3):
        assert ds.query("metadata.k >= 3").column("reference_id").to_pylist() == ["r3", "r4"]
    ds.append([engine.DatasetItem(reference_id="r9", image_location="/x/9.jpg", width=10, height=10,
                                  metadata={"k": 9})], check_images=False)
    assert ds.query("metadata.k >= 3").column("reference_id").to_pylist() == ["r3", "r4", "r9"]
    assert ds.query("metadata.k >= 3").column("reference_id").to_pylist() == ["r3", "r4", "r9"]
    ws.sql("UPDATE items SET image_location = '/y/9.jpg' WHERE reference_id = 'r9'")  # raw SQL write
    assert ds.query("metadata.k >= 9").column("image_location").to_pylist() == ["/y/9.jpg"]
    ws.store.con.execute("UPDATE items SET width = 77 WHERE reference_id = 'r9'")  # even below the API
    assert ds.query("metadata.k >= 9").column("width").to_pylist() == [77]
    ws.close()


def test_too_large_or_disabled_reads_rows_with_sql(world, monkeypatch):
    ds = world.ds
    for limit in (0, 1):  # 0: disabled; 1 byte: every copy is too large
        monkeypatch.setattr(item_cache.COPIES, "max_bytes", limit)
        item_cache.forget(ds.ws.store)
        for _ in range(3):
            got = ds.query("annotations.count > 2")
            assert item_cache.rows_for(ds.ws.store, ds.id) is None
        assert got.to_pylist() == _sql_rows(ds, "annotations.count > 2", None, {}).to_pylist()


def test_an_id_missing_from_the_copy_falls_back(world):
    ds = world.ds
    item_cache.forget(ds.ws.store)
    ds.query("annotations.count > 2")
    ds.query("annotations.count > 2")
    entry = item_cache.rows_for(ds.ws.store, ds.id)
    assert entry is not None
    import pyarrow as pa
    assert item_cache.take(entry, pa.array([int(entry.ids.max()) + 1])) is None
    assert item_cache.take(entry, pa.array([int(entry.ids[0])])).num_rows == 1


def test_threads_read_consistent_rows_while_one_writes(tmp_path):
    ws = engine.connect(tmp_path / "t.duckdb")
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(reference_id=f"r{i}", image_location=f"/x/{i}.jpg", width=10, height=10,
                                  metadata={"k": i}) for i in range(50)], check_images=False)
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(30):
                t = ds.query("metadata.k >= 0")
                refs = t.column("reference_id").to_pylist()
                locs = t.column("image_location").to_pylist()
                assert all(loc == f"/x/{r[1:]}.jpg" for r, loc in zip(refs, locs))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(50, 70):
        ds.append([engine.DatasetItem(reference_id=f"r{i}", image_location=f"/x/{i}.jpg", width=10, height=10,
                                      metadata={"k": i})], check_images=False)
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert ds.query("metadata.k >= 0").num_rows == 70
    ws.close()


@pytest.mark.parametrize("sql", ["SELECT 1", "  -- note\n select * from items", "(SELECT 1)", "FROM items",
                                 "WITH x AS (SELECT 'delete me') SELECT * FROM x", "EXPLAIN SELECT 1",
                                 "PRAGMA version", "SET threads = 1"])
def test_reads_do_not_move_the_generation(sql):
    assert not may_write(sql)


@pytest.mark.parametrize("sql", ["INSERT INTO t VALUES (1)", "update t set a = 1", "/* c */ DELETE FROM t",
                                 "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "SELECT 1; DROP TABLE t",
                                 "CREATE TABLE t (a INT)", "COMMIT", "ATTACH 'f.duckdb'", "CHECKPOINT",
                                 "COPY t FROM 'x.csv'", "ALTER TABLE t ADD COLUMN b INT"])
def test_writes_move_the_generation(sql):
    assert may_write(sql)


def test_store_generation_moves_on_writes_only():
    ws = engine.connect()
    store = ws.store
    g = store.generation
    store.con.execute("SELECT count(*) FROM items").fetchall()
    store.arrow("SELECT 1")
    assert store.generation == g
    store.con.execute("CREATE TABLE __x (a INT)")
    assert store.generation > g
    g = store.generation
    store.con.cursor().execute("INSERT INTO __x VALUES (1)")  # another cursor of the same store
    assert store.generation > g
    ws.close()


def test_copies_of_a_store_share_one_budget_and_stale_ones_are_freed(tmp_path, monkeypatch):
    ws = engine.connect(tmp_path / "m.duckdb")
    sets = []
    for name in ("a", "b"):
        ds = ws.create_dataset(name)
        ds.append([engine.DatasetItem(reference_id=f"{name}{i}", image_location=f"/x/{name}{i}.jpg", width=10,
                                      height=10, metadata={"k": i}) for i in range(40)], check_images=False)
        sets.append(ds)
    a, b = sets
    for ds in (a, b):
        ds.query("metadata.k >= 1")  # the first query builds the derived tables the append deferred (a write)
    for ds in (a, b):
        ds.query("metadata.k >= 0")
        ds.query("metadata.k >= 0")
    per_store = item_cache.COPIES.entries[ws.store]
    one = per_store[a.id].value.rows.nbytes
    assert per_store[b.id].value is not None
    monkeypatch.setattr(item_cache.COPIES, "max_bytes", int(one * 1.5))  # room for one copy only
    a.query("metadata.k >= 1")
    a.query("metadata.k >= 1")
    item_cache.forget(ws.store)
    for ds in (a, b):
        for _ in range(2):
            assert ds.query("metadata.k >= 39").column("reference_id").to_pylist() == [f"{ds.name}39"]
    assert list(item_cache.COPIES.entries[ws.store]) == [b.id]  # a's copy made way for b's
    monkeypatch.setattr(item_cache.COPIES, "max_bytes", 256 * 2**20)
    for _ in range(2):
        a.query("metadata.k >= 39")
    assert set(item_cache.COPIES.entries[ws.store]) == {a.id, b.id}
    b.append([engine.DatasetItem(reference_id="b99", image_location="/x/b99.jpg", width=1, height=1)],
             check_images=False)  # a write: every copy is stale
    assert a.query("metadata.k >= 39").column("reference_id").to_pylist() == ["a39"]
    assert all(e.value is None for e in item_cache.COPIES.entries[ws.store].values())  # stale rows freed
    ws.close()


@pytest.mark.parametrize("dsl,run,alone", [
    ("annotations.pedestrian >= 1", None, True),
    ("annotations.truck + annotations.bus >= 1", None, True),
    ('metadata.camera = "rear" AND annotations.count > 2', None, True),
    ("predictions.fp > 0", "r1", True),
    ("annotations.car = 0", None, False),  # true for an item without a car row: every item must be read
    ("metadata.camera IS NULL", None, False),
    ("width > 10 AND annotations.car > 0", None, False),  # reads items
    ('slice("s0") AND annotations.car > 0', None, True),  # the slice reads item ids only
    ('slice("s0") OR annotations.car > 0', None, False),
    ('slice("s0") AND predictions.fp > 0 AND annotations.car >= 0', "r1", True),
    ('slice("s0") AND width > 10 AND annotations.car > 0', None, False),
])
def test_candidate_ids_skip_the_items_table_only_when_safe(world, dsl, run, alone):
    ds = world.ds
    if dsl.startswith("slice") and "s0" not in [r["name"] for r in ds.slices().to_pylist()]:
        ds.create_slice("s0", reference_ids=[ds.items().column("reference_id")[0].as_py()])
    sql = compile_for(ds, dsl, "items", run, projection="candidates").sql()
    assert ("FROM items" not in sql) == alone, sql
    ids = sorted(execute(ds, compile_for(ds, dsl, "items", run, projection="candidates")).column(0).to_pylist())
    want = sorted(execute(ds, compile_for(ds, dsl, "items", run, projection="ids")).column(0).to_pylist())
    assert ids == want


# issue 13 B7: an integer in ORDER BY was a column position in SQL (rows by reference_id) but a constant in
# the copy (rows by item_id): the same query ordered two ways. A constant sort key is now refused on both.
@pytest.mark.parametrize("kw", [{"order_by": "2 DESC"}, {"order_by": "1, width"}, {"order_by": '"abc"'},
                                {"order_by": "NULL"}, {"order_by": "1 + 1 DESC"}])
def test_a_constant_sort_key_is_refused_with_and_without_the_copy(world, kw):
    from queries.errors import DSLTypeError

    ds = world.ds
    for _ in range(2):  # SQL path, then the copy
        with pytest.raises(DSLTypeError, match="constant sort key"):
            ds.query("annotations.count >= 0", **kw)
    with pytest.raises(DSLTypeError, match="constant sort key"):
        _sql_rows(ds, "annotations.count >= 0", None, kw)
    with pytest.raises(DSLTypeError, match="constant sort key") as e:
        ds.query(f"annotations.count >= 0 ORDER BY {kw['order_by']}")
    assert "^" in str(e.value)  # the caret under the constant


@pytest.mark.parametrize("ids", [[5, 6, 7, 8, 9, 10], [5, 7, 8, 20, 21, 30]])  # dense, with gaps
def test_rows_in_item_order_from_ids_in_any_order(ids):
    import numpy as np
    import pyarrow as pa
    rows = pa.table({"reference_id": [f"r{i}" for i in ids]})
    entry = item_cache._Entry(0, np.array(ids), rows, int(ids[-1]) - ids[0] == len(ids) - 1)
    want = [6, 8, 9, 10] if entry.dense else [7, 8, 21, 30]
    got = item_cache.take_in_order(entry, pa.chunked_array([pa.array(want[2:]), pa.array(want[1::-1])]))
    assert got.column("reference_id").to_pylist() == [f"r{i}" for i in want]
    assert item_cache.take_in_order(entry, pa.array([want[0], want[0]])).num_rows == 2  # as the SQL path
    assert item_cache.take_in_order(entry, pa.array([], pa.int64())).num_rows == 0
    for missing in (4, 11 if entry.dense else 6, 31):
        assert item_cache.take_in_order(entry, pa.array([want[0], missing])) is None
