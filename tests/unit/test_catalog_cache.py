"""The DSL catalog's metadata types are kept across writes that leave the metadata as it was (they cost
~150 ms to read from 100k JSON documents), and read again as soon as the metadata changes, in place too."""
from __future__ import annotations

import pytest

import engine
from engine.execution.catalog import DuckDBCatalog
from queries import DSLNameError, DSLTypeError


@pytest.fixture()
def ws(tmp_path):
    w = engine.connect(tmp_path / "c.duckdb")
    yield w
    w.close()


def _dataset(ws):
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(f"/{k}.png", f"i{k}", width=10, height=10, metadata={"speed": k, "cam": "a"})
               for k in range(6)], check_images=False)
    ds.annotate([engine.BoxAnnotation("car", f"i{k}", x=1, y=1, width=3, height=3, annotation_id=f"g{k}",
                                      metadata={"occluded": k % 2 == 0}) for k in range(6)])
    return ds


def _count_reads(monkeypatch):
    calls: list[str] = []
    real = DuckDBCatalog._schema

    def counting(self, sql):
        calls.append("items" if "FROM items" in sql else "objects")
        return real(self, sql)
    monkeypatch.setattr(DuckDBCatalog, "_schema", counting)
    return calls


def test_metadata_types_survive_writes_that_leave_metadata_alone(ws, monkeypatch):
    ds = _dataset(ws)
    calls = _count_reads(monkeypatch)
    assert ds.query("metadata.speed > 3").num_rows == 2
    assert ds.query_objects("metadata.occluded").num_rows == 3
    assert calls == ["items", "objects"]
    ds.annotate([engine.BoxAnnotation("bus", "i0", x=5, y=5, width=2, height=2, annotation_id="g9")])  # a write
    ds.create_slice("s", reference_ids=["i1"])  # another
    assert ds.query("metadata.speed > 3 AND annotations.count >= 1").num_rows == 2
    assert ds.query_objects("metadata.occluded").num_rows == 3
    assert calls == ["items", "objects"]  # not read again: the metadata did not change


def test_metadata_types_follow_in_place_changes(ws, monkeypatch):
    ds = _dataset(ws)
    calls = _count_reads(monkeypatch)
    assert ds.query("metadata.speed > 3").num_rows == 2
    ds.update_item_metadata({f"i{k}": {"speed": "fast"} for k in range(6)})  # same items, new type
    with pytest.raises(DSLTypeError):
        ds.query("metadata.speed > 3")  # a string now: the types were read again
    assert ds.query('metadata.speed = "fast"').num_rows == 6
    assert calls.count("items") == 2
    ws.sql("UPDATE items SET metadata = '{\"speed\": 1, \"cam\": \"b\"}' WHERE reference_id = 'i0'")  # raw SQL
    assert ds.query('metadata.cam = "b"').column("reference_id").to_pylist() == ["i0"]
    assert calls.count("items") == 3
    ws.sql("UPDATE annotations SET metadata = '{\"occluded\": \"yes\"}' WHERE annotation_id = 'g1'")
    assert ds.query_objects('metadata.occluded = "yes"').column("annotation_id").to_pylist() == ["g1"]


def test_labels_survive_writes_that_leave_the_data_token_alone(ws, monkeypatch):
    ds = _dataset(ws)
    calls: list[int] = []
    real = DuckDBCatalog._load_labels
    monkeypatch.setattr(DuckDBCatalog, "_load_labels", lambda self: calls.append(1) or real(self))
    assert ds.query("annotations.car >= 1").num_rows == 6
    ws.store.generation += 1  # a write that changed none of the token's data fields
    ds.query("annotations.car >= 2")
    assert len(calls) == 1
    ds.annotate([engine.BoxAnnotation("bus", "i0", x=1, y=1, width=3, height=3, annotation_id="b0")])
    assert ds.query("annotations.bus = 1").num_rows == 1  # the label version moved: read again
    assert len(calls) == 2
    ws.sql("UPDATE annotations SET label = 'tram' WHERE annotation_id = 'b0'")  # no label version change
    assert ds.query("annotations.tram = 1").num_rows == 1  # unknown in the kept set: refreshed
    with pytest.raises(DSLNameError):  # and the refreshed set is the one kept now
        ds.query("annotations.bus = 1")


def _metadata_version(ws, ds) -> int:
    return ws.store.con.execute("SELECT version FROM item_metadata_version WHERE dataset_id = ?", [ds.id]).fetchone()[0]


def test_metadata_types_are_validated_by_the_metadata_version_not_by_hashing(ws, monkeypatch):
    """With the derived item values current, the metadata version stands for the documents: no write that
    leaves item metadata alone moves it, every write of it does (append, update, patch, raw SQL), and no
    document is hashed to find out."""
    from engine.execution import catalog

    ds = _dataset(ws)
    monkeypatch.setattr(catalog, "_ITEM_METADATA_PRINT", "SELECT error('hashed the documents')")
    calls = _count_reads(monkeypatch)
    assert ds.query("metadata.speed > 3").num_rows == 2
    v = _metadata_version(ws, ds)
    ds.annotate([engine.BoxAnnotation("bus", "i0", x=5, y=5, width=2, height=2, annotation_id="g9")])
    ds.correct("g9", reference_id="i0", label="tram")
    ds.create_slice("s", reference_ids=["i1"])
    assert ds.query("metadata.speed > 3").num_rows == 2
    assert _metadata_version(ws, ds) == v and calls == ["items"]
    writes = [lambda: ds.append([engine.DatasetItem("/n.png", "n", width=10, height=10, metadata={"speed": 9})],
                                check_images=False),
              lambda: ds.append([engine.DatasetItem("/n.png", "n", width=10, height=10, metadata={"speed": "x"})],
                                check_images=False, update=True),
              lambda: ds.update_item_metadata({"n": {"speed": 10}}),
              lambda: ws.sql("UPDATE items SET metadata = '{\"speed\": \"y\"}' WHERE reference_id = 'n'")]
    answers = [(3, {"number"}), (2, {"number", "string"}), (3, {"number"}), (2, {"number", "string"})]
    for k, (write, (n, types)) in enumerate(zip(writes, answers)):
        write()
        assert ds.query("metadata.speed > 3").num_rows == n
        assert DuckDBCatalog(ws.store, ds.id).item_metadata().types(("speed",)) == types
        assert _metadata_version(ws, ds) > v and len(calls) == k + 2  # moved, and the types were read again
        v = _metadata_version(ws, ds)


def test_read_only_workspace_without_metadata_versions_hashes_the_documents(tmp_path):
    path = tmp_path / "old.duckdb"
    ws = engine.connect(path)
    _dataset(ws)
    ws.store.con.execute("DROP TABLE item_metadata_version")
    ws.close()
    ro = engine.connect(path, read_only=True)
    catalog = DuckDBCatalog(ro.store, ro.get_dataset("d").id)
    assert catalog._item_metadata_print()[0] == 6  # row count and hash sum
    assert ro.get_dataset("d").query("metadata.speed > 3").num_rows == 2
    ro.close()
    ws = engine.connect(path)  # writable: created on open (the values, deferred by the append, by the query)
    assert ws.get_dataset("d").query("metadata.speed > 3").num_rows == 2
    catalog = DuckDBCatalog(ws.store, ws.get_dataset("d").id)
    assert catalog._item_metadata_print()[0] == "version"
    ws.close()
