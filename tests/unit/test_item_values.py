"""item_metadata_values: pre-extracted item metadata answers metadata filters exactly as the JSON does.

Each query is compiled twice, reading the table and parsing ``items.metadata``, and both must return the
same rows, over metadata with mixed types, JSON nulls, missing and nested keys, odd key names, duplicate
keys and arrays; and the table must follow every write (append, append(update=True),
update_item_metadata, raw SQL, dataset deletion).
"""
from __future__ import annotations

import json

import pytest

import engine
from engine.store import item_values
from engine.execution.catalog import DuckDBCatalog
from engine.execution.runner import compile_for, execute
from queries import compile_query

QUERIES = [
    'metadata.camera = "rear"', 'metadata.camera != "rear"', "metadata.speed > 20", "metadata.speed <= 20",
    "metadata.weather.rain > 0.5 AND NOT metadata.weather.fog", "metadata.weather.fog", "NOT metadata.weather.fog",
    "metadata.mixed > 1", 'metadata.mixed = "x"', "metadata.mixed = true", "metadata.flag OR metadata.speed < 5",
    "metadata.speed IS NULL", "metadata.weather.rain IS NOT NULL", 'metadata."odd key" = 1', "metadata.dup = 2",
    "metadata.speed + metadata.weather.rain > 30", "metadata.speed BETWEEN 10 AND 30", 'metadata.camera IN ("a", "rear")',
    'metadata.camera LIKE "r%"', "metadata.tags.0 = \"t0\"", "metadata.big > 1e18",
    "metadata.speed > 0 ORDER BY metadata.weather.rain DESC, metadata.camera LIMIT 4",
]

METAS = [
    {"camera": "rear", "speed": 30, "weather": {"rain": 0.9, "fog": False}, "mixed": 5, "flag": True, "tags": ["t0"]},
    {"camera": "front", "speed": 3.5, "weather": {"rain": 0.2, "fog": True}, "mixed": "x", "odd key": 1},
    {"camera": None, "speed": None, "weather": {"rain": None}, "mixed": True, "flag": False, "big": 2 ** 63},
    {"camera": "rear", "weather": {}, "mixed": [1, 2], "tags": []},
    {"speed": "fast", "mixed": {"a": 1}, "weather": {"rain": 1, "fog": None}},
    None,
    {"camera": "rear", "speed": 12, "weather": {"rain": 0.6, "fog": False}},
]


class _Json(DuckDBCatalog):
    def item_values(self) -> bool:
        return False


def fresh(ws, ds_id):
    """The table rebuilt from scratch in a scratch transaction (then rolled back)."""
    con = ws.store.con
    con.execute("BEGIN TRANSACTION")
    try:
        item_values.rebuild(ws.store, ds_id)
        return rows(ws, ds_id)
    finally:
        con.execute("ROLLBACK")


def rows(ws, ds_id):
    return sorted(ws.store.con.execute(
        "SELECT item_id, path, v_num, v_str, v_bool FROM item_metadata_values WHERE dataset_id = ?", [ds_id]).fetchall(),
        key=repr)


def check(ws, ds, target="items"):
    """The table equals a rebuild and every query answers like the JSON. A dataset whose values its first
    writes deferred holds none, parses the JSON, and gets them from its next DSL query."""
    if item_values.deferred(ws.store, ds.id):
        assert rows(ws, ds.id) == [] and not DuckDBCatalog(ws.store, ds.id).item_values()
        assert "item_metadata_values" not in compile_query(QUERIES[0], DuckDBCatalog(ws.store, ds.id)).sql()
        compile_for(ds, QUERIES[0])  # the first DSL query builds them
        assert not item_values.deferred(ws.store, ds.id)
    assert DuckDBCatalog(ws.store, ds.id).item_values()
    assert rows(ws, ds.id) == fresh(ws, ds.id)
    for q in QUERIES:
        fast = compile_for(ds, q, target, strict=False)
        slow = compile_query(q, _Json(ws.store, ds.id), target=target, strict=False)
        assert "item_metadata_values" not in slow.sql()
        assert execute(ds, fast).to_pylist() == execute(ds, slow).to_pylist(), q


def items(metas, prefix="r"):
    return [engine.DatasetItem(f"{prefix}{k}.png", f"{prefix}{k}", width=10, height=10, metadata=m)
            for k, m in enumerate(metas)]


@pytest.fixture
def ds(ws):
    d = ws.create_dataset("d")
    d.append(items(METAS), check_images=False)
    return d


def test_lookups_answer_like_the_json(ws, ds):
    assert "item_metadata_values" in compile_for(ds, 'metadata.camera = "rear"').sql()
    assert "item_metadata_values" not in compile_for(ds, "metadata.speed IS NULL").sql()  # IS NULL reads the JSON
    check(ws, ds)


def test_object_queries_read_item_metadata_the_same_way(ws, ds):
    ds.annotate([engine.BoxAnnotation("cat", f"r{k}", "1", x=1, y=1, width=2, height=2) for k in range(len(METAS))])
    assert "item_metadata_values" in compile_for(ds, 'item.metadata.camera = "rear"', "objects").sql()
    for q in ('item.metadata.camera = "rear"', "item.metadata.speed > 10 ORDER BY item.metadata.speed LIMIT 2"):
        fast = compile_for(ds, q, "objects", strict=False)
        slow = compile_query(q, _Json(ws.store, ds.id), target="objects", strict=False)
        assert execute(ds, fast).to_pylist() == execute(ds, slow).to_pylist(), q


def test_duplicate_keys_read_the_first_like_json_extract(ws):
    d = ws.create_dataset("dup")
    d.append(items([{"a": 1}]), check_images=False)
    ws.sql("UPDATE items SET metadata = '{\"dup\": 2, \"dup\": 7}'::JSON")
    assert d.query("metadata.dup = 2").num_rows == \
        ws.sql("SELECT count(*) n FROM items WHERE json_extract(metadata, '$.dup')::INT = 2").column("n")[0].as_py()
    check(ws, d)


def test_values_follow_every_write(ws, ds):
    ds.append(items([{"camera": "rear", "speed": 99}], prefix="n"), check_images=False)
    check(ws, ds)
    ds.append(items([{"camera": "left", "speed": 1, "weather": {"fog": True}}]), update=True, check_images=False)
    check(ws, ds)
    ds.update_item_metadata({"r1": {"speed": 44, "camera": "rear"}, "r5": {"weather": {"rain": 0.99}}})
    check(ws, ds)
    ws.sql("UPDATE items SET metadata = '{\"camera\": \"rear\", \"speed\": 7}' WHERE reference_id = 'r2'")
    assert ds.query('metadata.camera = "rear" AND metadata.speed = 7').num_rows == 1  # rebuilt before compiling
    check(ws, ds)
    other = ws.create_dataset("other")
    other.append(items([{"camera": "rear"}]), check_images=False)
    check(ws, other)
    ws.delete_dataset("other")
    assert ws.sql(f"SELECT count(*) n FROM item_metadata_values WHERE dataset_id = {other.id}").column("n")[0].as_py() == 0
    check(ws, ds)


def test_items_inserted_by_hand_are_not_trusted(ws, ds):
    check(ws, ds)  # built by the first query
    ws.store.con.execute("""INSERT INTO items SELECT item_id + 100, dataset_id, reference_id || 'x', image_location,
                            width, height, metadata FROM items""")
    assert not DuckDBCatalog(ws.store, ds.id).item_values()
    assert "item_metadata_values" not in compile_for(ds, 'metadata.camera = "rear"').sql()
    assert ds.query('metadata.camera = "rear"').num_rows == 6


def test_read_only_workspace_without_the_table_parses_json(tmp_path):
    path = tmp_path / "old.duckdb"
    ws = engine.connect(path)
    d = ws.create_dataset("d")
    d.append(items(METAS), check_images=False)
    expected = d.query('metadata.camera = "rear"').to_pylist()
    ws.store.con.execute("DROP TABLE item_metadata_values")
    ws.close()
    ro = engine.connect(path, read_only=True)
    assert ro.get_dataset("d").query('metadata.camera = "rear"').to_pylist() == expected
    ro.close()
    ws = engine.connect(path)
    assert item_values.present(ws.store)
    check(ws, ws.get_dataset("d"))
    ws.close()


def test_metadata_round_trips(ws, ds):
    got = {r["reference_id"]: r["metadata"] for r in ds.items().to_pylist()}
    assert json.loads(got["r0"])["camera"] == "rear"
