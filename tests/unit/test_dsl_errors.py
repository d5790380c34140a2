"""Name and type errors: caught before execution, with the closest known name suggested."""
from __future__ import annotations

import pytest

import engine
from queries import (DSLError, DSLNameError, DSLTypeError, MetadataSchema, RunInfo, SliceInfo, StaticCatalog,
                     compile_query)

CAT = StaticCatalog(
    label_set={"pedestrian", "car", "traffic light", "bicycle"},
    items_meta=MetadataSchema.from_values([{"camera": "rear", "speed": 3.5, "weather": {"rain": 0.1}, "ok": True},
                                           {"camera": "front", "mixed": 1}, {"mixed": "one"}]),
    objects_meta=MetadataSchema.from_values([{"occluded": True}]),
    run_list=[RunInfo("frcnn", 1, 0.5), RunInfo("draft", 2, None)],
    slice_list=[SliceInfo("test", 3), SliceInfo("train", 4)],
)


def err(text, cls=DSLError, **kw):
    with pytest.raises(cls) as ei:
        compile_query(text, CAT, **kw)
    return ei.value


@pytest.mark.parametrize("text,first_line", [
    ("annotations.pedestrain >= 4", "unknown label 'pedestrain'; did you mean 'pedestrian'?"),
    ("annotations.Car > 1", "unknown label 'Car'; did you mean 'car'?"),
    ('annotations."trafic light" > 1', "unknown label 'trafic light'; did you mean 'traffic light'?"),
    ("annotations.bicycel.count > 1", "unknown label 'bicycel'; did you mean 'bicycle'?"),
    ("metadata.camra = 'x'", "unknown metadata key 'metadata.camra'; did you mean 'metadata.camera'?"),
    ("metadata.weather.rian > 0", "unknown metadata key 'metadata.weather.rian'; did you mean 'metadata.weather.rain'?"),
    ("anotations.count > 1", "unknown field 'anotations.count'; did you mean 'annotations.count'?"),
    ("annotations.cont > 1", "unknown label 'cont'; did you mean 'count'?" if False else None),
    ("refrence_id = 'a'", "unknown field 'refrence_id'; did you mean 'reference_id'?"),
    ("slice('tset')", "unknown slice 'tset'; did you mean 'test'?"),
    ("predictions('frcn').fp > 0", "unknown run 'frcn'; did you mean 'frcnn'?"),
    ("lowr(reference_id) = 'a'", "unknown function 'lowr'; did you mean 'lower'?"),
])
def test_name_errors_suggest(text, first_line):
    e = err(text, DSLNameError)
    if first_line is not None:
        assert str(e).split(" (at ")[0] == first_line
    assert e.line == 1 and e.column >= 1


def test_unknown_label_without_close_match_lists_known():
    e = err("annotations.zebra > 1", DSLNameError)
    assert "known: bicycle, car, pedestrian, traffic light" in str(e)


@pytest.mark.parametrize("text,target,first_line", [
    ("statsu = 'fp'", "objects", "unknown field 'statsu'; did you mean 'status'?"),
    ("label = 'pedestrain'", "objects", "unknown label 'pedestrain'; did you mean 'pedestrian'?"),
    ("label IN ('car', 'bicyle')", "objects", "unknown label 'bicyle'; did you mean 'bicycle'?"),
    ("status = 'tpp'", "objects", "unknown status value 'tpp'; did you mean 'tp'?"),
    ("kind = 'boxx'", "objects", "unknown kind value 'boxx'; did you mean 'box'?"),
    ("source = 'predictions'", "objects", "unknown source value 'predictions'; did you mean 'prediction'?"),
    ("item.metadata.camra = 'x'", "objects", "unknown metadata key 'item.metadata.camra'; did you mean 'item.metadata.camera'?"),
    ("metadata.occludded = true", "objects", "unknown metadata key 'metadata.occludded'; did you mean 'metadata.occluded'?"),
])
def test_object_name_errors(text, target, first_line):
    e = err(text, DSLNameError, target=target, run="frcnn")
    assert str(e).split(" (at ")[0] == first_line


@pytest.mark.parametrize("text,fragment", [
    ("metadata.speed > 'fast'", "metadata.speed holds number values; cannot compare it as a string"),
    ("metadata.camera > 3", "metadata.camera holds string values; cannot compare it as a number"),
    ("metadata.weather = 1", "metadata.weather is an object"),
    ("metadata.ok = 'yes'", "metadata.ok holds boolean values"),
    ("annotations.count > '5'", "cannot compare a number (annotations.count) and a string"),
    ("reference_id = 3", "cannot compare a string (reference_id) and a number"),
    ("annotations.count", "expected a condition (the query must be true or false), got a number annotations.count"),
    ("NOT annotations.count", "expected a condition, got a number annotations.count (compare it, e.g."),
    ("reference_id AND true", "expected a condition, got a string reference_id"),
    ("reference_id + 1 > 0", "'+' needs numbers, got a string reference_id"),
    ("annotations.count LIKE 'a%'", "LIKE needs strings"),
    ("annotations.count IN (1, 'a')", "cannot compare a number"),
    ("slice(3)", 'slice(...) takes one slice name'),
    ("predictions(1).fp > 0", "predictions(...) takes one run name"),
    ("1e999 > 0", "number out of range"),
    ("abs('x') > 0", "abs() needs a number"),
])
def test_type_errors_before_execution(text, fragment):
    e = err(text, DSLTypeError)
    assert fragment in str(e)


def test_mixed_type_key_accepts_both_literal_types():
    compile_query("metadata.mixed = 1", CAT)
    compile_query("metadata.mixed = 'one'", CAT)


def test_prediction_fields_need_a_run():
    e = err("predictions.fp > 0", DSLNameError)
    assert "needs a run" in str(e) and 'predictions("run name").fp' in str(e)
    e = err("max_iou > 0.5", DSLNameError)
    assert "needs a run" in str(e)
    e = err("predictions.fp > 0", DSLNameError, run="draft")
    assert "needs a committed run" in str(e)
    compile_query("predictions.count > 0", CAT, run="draft")  # counts need no commit


def test_unknown_run_argument():
    e = err("annotations.count > 0", DSLNameError, run="frcn")
    assert "unknown run 'frcn'; did you mean 'frcnn'?" in str(e)


def test_order_by_errors_point_into_the_order_text():
    with pytest.raises(DSLNameError) as ei:
        compile_query("annotations.count > 0", CAT, order_by="annotations.cont DESC")
    assert ei.value.text == "annotations.cont DESC"


def test_lenient_mode_for_stored_queries():
    """Stored slices re-evaluate with strict=False: a vanished label counts 0 instead of failing."""
    sql = compile_query("annotations.zebra > 1 AND metadata.gone = 'x'", CAT, strict=False).sql()
    assert "'zebra'" in sql


def test_errors_are_loupe_errors_through_the_engine(ws):
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem("a.png", "a", metadata={"camera": "rear"}, width=10, height=10)],
              check_images=False)
    ds.annotate([engine.BoxAnnotation("pedestrian", "a", x=1, y=1, width=2, height=2)])
    for bad, cls in [("annotations.pedestrain > 1", engine.DSLNameError), ("metadata.camera > 1", engine.DSLTypeError),
                     ("annotations.count >", engine.DSLSyntaxError)]:
        with pytest.raises(engine.LoupeError) as ei:
            ds.query(bad)
        assert isinstance(ei.value, cls) and isinstance(ei.value, ValueError)
    with pytest.raises(engine.NotFoundError, match="no run named 'nope'"):
        ds.query("annotations.count > 0", run="nope")


def test_catalog_refresh_after_new_data(ws):
    """A cached catalog must not reject a label or key that appeared after it was read."""
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem("a.png", "a", metadata={"camera": "rear"}, width=10, height=10)],
              check_images=False)
    ds.annotate([engine.BoxAnnotation("pedestrian", "a", x=1, y=1, width=2, height=2)])
    assert ds.query("annotations.pedestrian = 1 AND metadata.camera = 'rear'").num_rows == 1
    ws.sql("UPDATE items SET metadata = '{\"camera\": \"rear\", \"lens\": 35}'")  # behind the API's back
    ws.store.con.execute("INSERT INTO annotations SELECT * REPLACE (ann_key + 100 AS ann_key, 'zebra' AS label) "
                         "FROM annotations")
    assert ds.query("annotations.zebra = 1 AND metadata.lens = 35").num_rows == 1
