"""A transaction opened with SQL (``ws.sql("BEGIN")``, the console) is never aborted by Loupe, DSL queries
inside it see its rows, and no cache outlives a rollback."""
from __future__ import annotations

import pytest

import engine
from engine.errors import LoupeError


@pytest.fixture()
def ws(tmp_path):
    w = engine.connect(tmp_path / "w.duckdb")
    ds = w.create_dataset("d")
    ds.append([engine.DatasetItem(reference_id=f"r{i}", image_location=f"/x/{i}.jpg", width=10, height=10,
                                  metadata={"k": i}) for i in range(6)], check_images=False)
    ds.annotate([engine.BoxAnnotation(label="car", x=1, y=1, width=2, height=2, reference_id=f"r{i}",
                                      annotation_id=f"a{i}") for i in range(6)])
    yield w
    w.close()


def _refs(t):
    return t.column("reference_id").to_pylist()


def test_queries_inside_a_sql_transaction_see_its_rows_and_it_still_commits(ws):
    ds = ws.get_dataset("d")
    for _ in range(2):
        assert _refs(ds.query("width = 5")) == []
    ws.sql("BEGIN")
    ws.sql("UPDATE items SET width = 5 WHERE reference_id = 'r1'")
    ws.sql("DELETE FROM annotations WHERE annotation_id = 'a2'")  # raw write: derived counts are stale
    for _ in range(3):
        assert _refs(ds.query("width = 5")) == ["r1"]
        assert _refs(ds.query("annotations.car = 0")) == ["r2"]  # base tables, the transaction's view
    with pytest.raises(LoupeError, match="BEGIN"):
        ds.append([engine.DatasetItem(reference_id="r9", image_location="/x/9.jpg", width=1, height=1)],
                  check_images=False)
    ws.sql("COMMIT")  # not aborted by the refused write or the queries
    assert _refs(ds.query("width = 5")) == ["r1"]
    assert _refs(ds.query("annotations.car = 0")) == ["r2"]
    assert ws.sql("SELECT count(*) n FROM items").column("n").to_pylist() == [6]


def test_a_rollback_leaves_no_cached_rows(ws):
    ds = ws.get_dataset("d")
    ws.sql("BEGIN")
    ws.sql("UPDATE items SET image_location = '/tmp/y.jpg' WHERE reference_id = 'r3'")
    for _ in range(3):
        assert ds.query("metadata.k = 3").column("image_location").to_pylist() == ["/tmp/y.jpg"]
    ws.sql("ROLLBACK")
    for _ in range(3):
        assert ds.query("metadata.k = 3").column("image_location").to_pylist() == ["/x/3.jpg"]


def test_a_failed_api_transaction_leaves_no_cached_rows(ws):
    ds = ws.get_dataset("d")
    store = ws.store
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            con.execute("UPDATE items SET width = 7 WHERE reference_id = 'r4'")
            for _ in range(3):
                assert _refs(ds.query("width = 7")) == ["r4"]
            raise RuntimeError("boom")
    for _ in range(3):
        assert _refs(ds.query("width = 7")) == []


def test_in_sql_transaction_detection(ws):
    store = ws.store
    assert not store.in_sql_transaction()
    ws.sql("BEGIN")
    assert store.in_sql_transaction() and not store.caching
    ws.sql("ROLLBACK")
    assert not store.in_sql_transaction() and store.caching
    with store.transaction():
        assert not store.in_sql_transaction()  # the store's own transaction
