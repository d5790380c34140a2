"""COCO bbox results stored in SQL (engine/io/coco_results.py) against the Arrow path they replace.

Every case imports the same files twice, through the SQL path and with it switched off (the Arrow
path: parse_results + write_predictions), and wants the same stored rows or the same error (message,
record, field), with nothing written on error.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import engine
from engine.errors import AlreadyExistsError, LoupeError, ValidationError
from engine.io import coco, coco_results

H, W = 30, 40
TABLES = ("datasets", "items", "annotations", "models", "runs", "predictions", "item_counts", "item_metadata_values")


def gt_doc(categories=None) -> dict:
    images = [{"id": 7, "file_name": "seven.jpg", "width": W, "height": H},
              {"id": 3, "file_name": "three.jpg", "width": W, "height": H},
              {"id": 5, "file_name": "five.jpg", "width": W, "height": H}]
    cats = categories or [{"id": 1, "name": "cat"}, {"id": 4, "name": "person"}]
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}]
    return {"images": images, "annotations": anns, "categories": cats}


def dets() -> list[dict]:
    return [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
            {"image_id": 7, "category_id": 4, "bbox": [5.5, 6, 7, 8.25], "score": 0.25, "id": 99, "area": 1.0},
            {"image_id": 3, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5},
            {"image_id": 5, "category_id": 4, "bbox": [35.0, 25.0, 5.0, 5.0], "score": 0.125}]


def write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def counts(ws) -> dict[str, int]:
    return {t: ws.sql(f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in TABLES}


def stored(ws) -> list[dict]:
    """Every stored prediction column, in storage order (no ORDER BY: the file order must be kept)."""
    return ws.sql("SELECT * FROM predictions").to_pylist()


@pytest.fixture
def arrow_path(monkeypatch):
    """Switch the SQL path off: every results file then goes the Arrow path."""
    def off():
        monkeypatch.setattr(coco, "store_staged", lambda *a, **k: None)
    return off


def both(tmp_path, arrow_path, action):
    """``action(ws)`` on a fresh workspace through the SQL path, then through the Arrow path: (result,
    error, counts, predictions) of each."""
    out = []
    for sql in (True, False):
        if not sql:
            arrow_path()
        ws = engine.connect()
        try:
            res, err = action(ws), None
        except (ValidationError, LoupeError) as e:
            res, err = None, e
        out.append((res, err, counts(ws), stored(ws)))
        ws.close()
    return out


def _import(tmp_path, rows, clip=False, gt=None):
    g = write(tmp_path / "gt.json", gt or gt_doc())
    r = write(tmp_path / "dets.json", rows)
    return lambda ws: ws.import_coco(g, "d", results=r, run="r", clip=clip).as_dict()


@pytest.mark.parametrize("clip", [False, True, "keep"])
def test_plain_bbox_file_is_stored_as_the_arrow_path_stores_it(tmp_path, arrow_path, clip):
    rows = dets()
    if clip is False:
        rows = rows[:3]  # the last box crosses the image border: refused without clip
    (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, _import(tmp_path, rows, clip))
    assert e1 is None and e2 is None
    assert r1 == r2 and c1 == c2 and p1 == p2
    assert r1["predictions"] == len(rows)
    assert [p["seq"] for p in p1] == list(range(len(rows)))
    if clip is True:
        assert (p1[3]["x"], p1[3]["width"], p1[3]["area"]) == (35.0, 5.0, 25.0)  # clipped box, COCO area as given


def test_results_file_as_path_on_an_existing_dataset(tmp_path, arrow_path):
    g = write(tmp_path / "gt.json", gt_doc())
    r = write(tmp_path / "dets.json", dets()[:3])

    def action(ws):
        ws.import_coco(g, "d")
        return ws.import_coco(r, "d", run="r").as_dict()

    (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, action)
    assert e1 is None and (r1, c1, p1) == (r2, c2, p2)
    assert r1["predictions"] == 3


def test_the_sql_path_is_taken_for_a_bbox_file_and_not_for_a_segm_file(tmp_path, monkeypatch):
    calls = []
    real = coco_results.write_predictions_view
    monkeypatch.setattr(coco_results, "write_predictions_view", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    ws = engine.connect()
    ws.import_coco(write(tmp_path / "gt.json", gt_doc()), "d", results=write(tmp_path / "b.json", dets()[:3]), run="b")
    assert len(calls) == 1
    segm = [{"image_id": 5, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]], "score": 0.5}]
    s = ws.import_coco(write(tmp_path / "s.json", segm), "d", run="s")
    assert len(calls) == 1 and s.predictions == 1  # stored by the Arrow path, from the staged table
    assert ws.get_run("s").predictions().column("kind").to_pylist() == ["polygon"]
    mixed = dets()[:2] + segm  # a bbox file by its first row, with a polygon further down
    assert ws.import_coco(write(tmp_path / "m.json", mixed), "d", run="m").predictions == 3
    assert len(calls) == 1
    dbs = ws.sql("SELECT database_name FROM duckdb_databases()").column("database_name").to_pylist()
    assert not [d for d in dbs if d.startswith("__loupe_results")]  # every staged read was detached
    ws.close()


def _bad(field, value, row=2):
    def make():
        rows = dets()[:3]
        if value is _DROP:
            del rows[row][field]
        elif field == "bbox" and isinstance(value, tuple):
            rows[row]["bbox"] = list(rows[row]["bbox"])
            rows[row]["bbox"][value[0]] = value[1]
        else:
            rows[row][field] = value
        return rows
    return make


_DROP = object()
BAD = {
    "unknown image_id": _bad("image_id", 99),
    "missing image_id": _bad("image_id", _DROP),
    "unknown category_id": _bad("category_id", 2),
    "category_id below the known ones": _bad("category_id", -(2**62)),
    "missing category_id": _bad("category_id", _DROP),
    "missing score": _bad("score", _DROP),
    "bbox of three values": _bad("bbox", [1, 2, 3]),
    "empty bbox": _bad("bbox", []),
    "NaN in bbox": _bad("bbox", (1, math.nan)),
    "infinite bbox width": _bad("bbox", (2, math.inf)),
    "null in bbox": _bad("bbox", (3, None)),
    "negative height": _bad("bbox", (3, -1.0)),
    "box outside the image": _bad("bbox", (0, 39.0)),
    "infinite score": _bad("score", math.inf),
    "NaN score": _bad("score", math.nan),
    "image_id of another type": _bad("image_id", "five"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_record_is_named_as_the_arrow_path_names_it_and_nothing_is_written(tmp_path, arrow_path, case):
    (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, _import(tmp_path, BAD[case]()))
    assert e1 is not None, "accepted"
    assert (type(e1), str(e1), getattr(e1, "record", None), getattr(e1, "field", None)) == \
        (type(e2), str(e2), getattr(e2, "record", None), getattr(e2, "field", None))
    assert "row 2" in str(e1)
    assert set(c1.values()) == {0} and c1 == c2 and p1 == p2 == []  # the ground truth is rolled back too


def test_a_blank_category_name_is_refused_on_the_prediction_row(tmp_path, arrow_path):
    """``"\\u200b"`` passes the GT check (``str.strip``) but is blank to the stored rules: the first
    prediction with it is named, as the Arrow path names it."""
    gt = gt_doc([{"id": 1, "name": "cat"}, {"id": 4, "name": "\u200b"}])
    gt["annotations"] = []
    (_, e1, c1, _), (_, e2, c2, _) = both(tmp_path, arrow_path, _import(tmp_path, dets()[:3], gt=gt))
    assert isinstance(e1, ValidationError) and e1.field == "label" and "row 1" in str(e1)
    assert (str(e1), e1.record) == (str(e2), e2.record) and set(c1.values()) == {0}
    only_cats = [d for d in dets()[:3] if d["category_id"] == 1]  # the blank category is never named
    (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, _import(tmp_path, only_cats, gt=gt))
    assert e1 is None and e2 is None and (r1, c1, p1) == (r2, c2, p2) and r1["predictions"] == 2


def test_rules_are_split_by_the_columns_they_read():
    """Id-derived rules are checked once per id, the others per detection; a string literal naming a
    column ('keypoints' in the kind rule) is not a read."""
    from engine.ingest.annotations import prediction_rules
    from engine.ingest.checks import Rule, columns_read

    cols = coco_results._COLUMNS
    assert columns_read(Rule("f", "kind NOT IN ('box', 'keypoints') OR len(keypoints) > 2", "m"), cols) == \
        {"kind", "keypoints"}
    by_field = {(r.field, frozenset(columns_read(r, cols))) for r in prediction_rules(False)}
    assert ("label", frozenset({"label"})) in by_field
    assert ("reference_id", frozenset({"__item_id"})) in by_field
    assert ("x", frozenset({"x", "y", "width", "height", "__img_w", "__img_h"})) in by_field  # outside: per row
    assert {r.field for r in coco_results._rules_reading(coco_results.IMAGE_COLUMNS)} == {"reference_id"}
    assert {r.field for r in coco_results._rules_reading(coco_results.CATEGORY_COLUMNS)} == {"label"}


def test_an_existing_run_name_is_refused_the_same_way(tmp_path, arrow_path):
    g = write(tmp_path / "gt.json", gt_doc())
    r = write(tmp_path / "dets.json", dets()[:3])

    def action(ws):
        ws.import_coco(g, "d", results=r, run="r")
        before = counts(ws)
        with pytest.raises(AlreadyExistsError, match="run 'r' already exists"):
            ws.import_coco(r, "d", run="r")
        assert counts(ws) == before
        return before

    (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, action)
    assert e1 is None and (r1, c1, p1) == (r2, c2, p2)


def test_an_unreadable_results_file_rolls_the_ground_truth_back(tmp_path, arrow_path):
    (_, e1, c1, _), (_, e2, c2, _) = both(tmp_path, arrow_path, _import(tmp_path, "[{]"))
    assert isinstance(e1, LoupeError) and str(e1) == str(e2) and set(c1.values()) == {0} == set(c2.values())


def test_sparse_and_text_ids_and_many_rows_keep_the_file_order(tmp_path, arrow_path):
    """More rows than a DuckDB row group (122,880), image ids far apart (list slots with holes) and
    integer text ids: stored in file order, as the Arrow path stores them."""
    gt = gt_doc()
    gt["images"][0]["id"] = gt["annotations"][0]["image_id"] = 1_000_000  # ~1M slots, mostly holes
    n = 130_000
    ids = [5, 1_000_000, 3, "3"]
    rows = [{"image_id": ids[i % 4], "category_id": 1 + 3 * (i % 2), "bbox": [i % 7, i % 5, 1 + i % 9, 2],
             "score": (i % 1000) / 1000} for i in range(n)]
    (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, _import(tmp_path, rows, clip="keep", gt=gt))
    assert e1 is None and e2 is None and r1["predictions"] == n
    assert [p["seq"] for p in p1] == list(range(n))
    assert p1 == p2


def test_image_ids_too_spread_for_lists_go_the_arrow_path(tmp_path, monkeypatch):
    monkeypatch.setattr(coco_results, "MAX_SPAN", 4)  # ids 3..7 span 5 slots
    calls = []
    monkeypatch.setattr(coco_results, "write_predictions_view", lambda *a, **k: calls.append(1))
    ws = engine.connect()
    s = ws.import_coco(write(tmp_path / "gt.json", gt_doc()), "d", results=write(tmp_path / "r.json", dets()[:3]),
                       run="r")
    assert s.predictions == 3 and calls == []
    ws.close()


def test_a_file_workspace_shared_between_processes_takes_the_sql_path(tmp_path, monkeypatch):
    """A shared file store releases its connection between operations: the staged read, checks and
    insert run inside one operation, and the file reopens with the run stored."""
    calls = []
    real = coco_results.write_predictions_view
    monkeypatch.setattr(coco_results, "write_predictions_view", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    path = tmp_path / "w.loupe"
    ws = engine.connect(path)
    s = ws.import_coco(write(tmp_path / "gt.json", gt_doc()), "d", results=write(tmp_path / "r.json", dets()[:3]),
                       run="r")
    assert s.predictions == 3 and calls == [1]
    ws.close()
    ws = engine.connect(path)
    assert ws.get_run("r").predictions().column("confidence").to_pylist() == [0.9, 0.25, 0.5]
    dbs = ws.sql("SELECT database_name FROM duckdb_databases()").column("database_name").to_pylist()
    assert not [d for d in dbs if d.startswith("__loupe_results")]
    ws.close()


@pytest.mark.parametrize("clip", [False, True])
def test_an_empty_file_and_images_without_sizes_are_stored_alike(tmp_path, arrow_path, clip):
    gt = gt_doc()
    for im in gt["images"]:
        del im["width"], im["height"]  # no image folder either: sizes stay unknown, no box is "outside"
    for rows in ([], dets()):
        (r1, e1, c1, p1), (r2, e2, c2, p2) = both(tmp_path, arrow_path, _import(tmp_path, rows, clip, gt=gt))
        assert e1 is None and e2 is None and (r1, c1, p1) == (r2, c2, p2)
        assert r1["predictions"] == len(rows) and c1["runs"] == 1
