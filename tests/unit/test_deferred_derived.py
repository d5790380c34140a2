"""A dataset's first writes defer its per-item GT counts and metadata values to its first DSL query.

The import of a new dataset (COCO ground truth and results here) leaves both derived tables empty and
marked deferred; until the first DSL query builds them, answers come from the base tables and must be
the same; further writes keep the mark (nothing half-built); read-only stores and a user's open SQL
transaction read the base tables without building. Also: the GT file's parser (orjson, ``json`` for what
it refuses) returns what ``json`` returns.
"""
from __future__ import annotations

import json
import math

import pytest

import engine
from engine.errors import LoupeError
from engine.execution.catalog import DuckDBCatalog
from engine.io.coco import load_json
from engine.store import count_columns, item_values, label_counts

QUERIES = ["annotations.count >= 2", "annotations.a + annotations.b >= 2", "annotations.box.count = 1",
           "metadata.file_name = \"3.jpg\"", "metadata.coco_id > 4 AND annotations.a = 0",
           "annotations.count > 0 ORDER BY annotations.b DESC, metadata.coco_id LIMIT 3"]


def _coco(tmp_path, n_images=8):
    images = [{"id": i, "width": 50, "height": 40, "file_name": f"{i}.jpg"} for i in range(1, n_images + 1)]
    anns = [{"id": k + 1, "image_id": 1 + k % n_images, "category_id": 1 + k % 3, "bbox": [1 + k % 7, 2, 9, 8],
             "area": 72.0, "iscrowd": 0} for k in range(3 * n_images)]
    cats = [{"id": c, "name": "abc"[c - 1]} for c in (1, 2, 3)]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                "score": 0.5} for a in anns]))
    return gt, res


def _deferred(ws, ds) -> tuple[bool, bool]:
    return label_counts.deferred(ws.store, ds.id), item_values.deferred(ws.store, ds.id)


def _rows(ws, table, ds) -> int:
    return ws.store.con.execute(f"SELECT count(*) FROM {table} WHERE dataset_id = ?", [ds.id]).fetchone()[0]


def _answers(ds) -> list:
    return [ds.query(q).column("reference_id").to_pylist() for q in QUERIES]


def test_import_defers_and_the_first_query_builds(ws, tmp_path):
    gt, res = _coco(tmp_path)
    ws.import_coco(gt, dataset="d", results=res, run="r")
    ds = ws.get_dataset("d")
    assert _deferred(ws, ds) == (True, True)
    for t in ("item_counts", "item_count_columns", "item_metadata_values"):
        assert _rows(ws, t, ds) == 0, t
    catalog = DuckDBCatalog(ws.store, ds.id)
    assert catalog.deferred() and not catalog.label_counts() and not catalog.item_values()

    first = ds.query(QUERIES[1])  # builds both, then answers from them
    assert _deferred(ws, ds) == (False, False)
    catalog = DuckDBCatalog(ws.store, ds.id)
    assert catalog.label_counts() and catalog.item_values() and catalog.label_slots()
    assert _rows(ws, "item_metadata_values", ds) == 8 * 2  # coco_id and file_name per image
    built = _answers(ds)
    assert first.column("reference_id").to_pylist() == built[1]
    with ws.store.transaction():  # a rebuild from scratch holds the same rows
        before = [ws.store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                  for t in ("item_counts", "item_count_columns", "item_metadata_values")]
        label_counts.rebuild(ws.store, ds.id)
        item_values.rebuild(ws.store, ds.id)
        after = [ws.store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                 for t in ("item_counts", "item_count_columns", "item_metadata_values")]
    assert before == after and all(before)


def test_answers_while_deferred_equal_the_built_ones(tmp_path):
    gt, res = _coco(tmp_path)
    path = tmp_path / "w.duckdb"
    ws = engine.connect(path)
    ws.import_coco(gt, dataset="d", results=res, run="r")
    ws.close()
    ro = engine.connect(path, read_only=True)  # cannot build: answers from the base tables, stays deferred
    rd = ro.get_dataset("d")
    deferred_answers = _answers(rd)
    assert _deferred(ro, rd) == (True, True)
    assert "item_count" not in rd.explain(QUERIES[1]) and "item_metadata_values" not in rd.explain(QUERIES[3])
    ro.close()
    ws = engine.connect(path)
    ds = ws.get_dataset("d")
    assert _answers(ds) == deferred_answers and any(deferred_answers)
    assert _deferred(ws, ds) == (False, False)
    assert "item_count_columns" in ds.explain(QUERIES[1]) and "item_metadata_values" in ds.explain(QUERIES[3])
    ws.close()


def test_writes_while_deferred_keep_the_mark_and_later_writes_refresh(ws, tmp_path):
    gt, res = _coco(tmp_path)
    ws.import_coco(gt, dataset="d")
    ds = ws.get_dataset("d")
    ds.append([engine.DatasetItem("x.jpg", "x", width=50, height=40, metadata={"coco_id": 99})], check_images=False)
    ds.annotate([engine.BoxAnnotation("a", "x", "x1", x=1, y=1, width=3, height=3),
                 engine.BoxAnnotation("b", "x", "x2", x=1, y=1, width=3, height=3)])
    assert _deferred(ws, ds) == (True, True) and _rows(ws, "item_counts", ds) == 0
    assert "x" in ds.query("annotations.a = 1 AND annotations.b = 1 AND metadata.coco_id = 99").column(
        "reference_id").to_pylist()
    assert _deferred(ws, ds) == (False, False)
    ds.annotate([engine.BoxAnnotation("a", "x", "x3", x=2, y=1, width=3, height=3)])  # kept in step from now on
    assert _deferred(ws, ds) == (False, False)
    assert DuckDBCatalog(ws.store, ds.id).label_counts()
    assert ds.query("annotations.a = 2 AND annotations.b = 1").column("reference_id").to_pylist() == ["x"]


def test_an_open_sql_transaction_reads_the_base_tables(ws, tmp_path):
    gt, _ = _coco(tmp_path)
    ws.import_coco(gt, dataset="d")
    ds = ws.get_dataset("d")
    ws.sql("BEGIN TRANSACTION")
    inside = _answers(ds)
    assert _deferred(ws, ds) == (True, True)
    ws.sql("COMMIT")
    assert _answers(ds) == inside
    assert _deferred(ws, ds) == (False, False)


def test_a_dataset_without_items_has_nothing_deferred(ws):
    ds = ws.create_dataset("empty")
    assert ds.query("annotations.count > 0").num_rows == 0
    assert not DuckDBCatalog(ws.store, ds.id).deferred()


def test_gt_parser_reads_what_json_reads(tmp_path):
    data = {"images": [{"id": 1, "file_name": "é.jpg", "x": [1.5, -0.0, 1e-300, 2 ** 63 - 1]}], "n": None, "t": True}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    assert load_json(p) == data
    nan = tmp_path / "nan.json"  # orjson refuses NaN and a BOM: json reads them
    nan.write_bytes(b"\xef\xbb\xbf" + b'{"v": [NaN, 1]}')
    v = load_json(nan)["v"]
    assert math.isnan(v[0]) and v[1] == 1
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(LoupeError, match=r"broken.json is not valid JSON: .* line 2, column"):
        load_json(broken)


def test_count_columns_follow_the_counts_out_of_deferral(ws, tmp_path):
    gt, res = _coco(tmp_path)
    ws.import_coco(gt, dataset="d", results=res, run="r")
    ds = ws.get_dataset("d")
    assert not count_columns.in_step(ws.store, ds.id)
    ds.query("annotations.count > 0")
    assert count_columns.in_step(ws.store, ds.id)
