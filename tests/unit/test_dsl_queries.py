"""DSL answers checked against plain Python over the same records (tests/unit/dsl_world.py)."""
from __future__ import annotations

import pytest

import engine
from dsl_world import and3, build, cmp, meta, not3, num, or3, text


@pytest.fixture(scope="module")
def world():
    w = build()
    yield w
    w.ws.close()


def n(it, label=None, kind=None):
    return sum(1 for a in it["anns"] if (label is None or a["label"] == label) and (kind is None or a["kind"] == kind))


def np_(it, label=None, status=None):
    return sum(1 for p in it["preds"] if (label is None or p["label"] == label)
               and (status is None or p["status"] == status))


def fn(it, label=None):
    return sum(1 for a in it["anns"] if a.get("status") == "fn" and (label is None or a["label"] == label))


def agg(values, f):
    vals = [v for v in values if v is not None]
    return f(vals) if vals else None


ITEM_CASES = [
    ("annotations.pedestrian >= 2", lambda it: n(it, "pedestrian") >= 2),
    ("annotations.count = 0", lambda it: n(it) == 0),
    ("ANNOTATIONS.COUNT > 5 and annotations.car < 2", lambda it: n(it) > 5 and n(it, "car") < 2),
    ('annotations."traffic light" + annotations.car > 3', lambda it: n(it, "traffic light") + n(it, "car") > 3),
    ("annotations.`stop-sign` >= 1", lambda it: n(it, "stop-sign") >= 1),
    ("annotations.'traffic light'.count >= 1", lambda it: n(it, "traffic light") >= 1),
    ("annotations.box.count > 4", lambda it: n(it, kind="box") > 4),
    ("annotations.category.count = 1", lambda it: n(it, kind="category") == 1),
    ("annotations.night >= 1", lambda it: n(it, "night") >= 1),
    ("annotations.pedestrian > annotations.car", lambda it: n(it, "pedestrian") > n(it, "car")),
    ("annotations.truck * 2 - annotations.bus >= 3", lambda it: n(it, "truck") * 2 - n(it, "bus") >= 3),
    ('metadata.camera = "rear"', lambda it: cmp(text(meta(it, "camera")), "=", "rear")),
    ("metadata.camera = 'rear view'", lambda it: cmp(text(meta(it, "camera")), "=", "rear view")),
    ('metadata.camera != "rear"', lambda it: cmp(text(meta(it, "camera")), "!=", "rear")),
    ('NOT metadata.camera = "rear"', lambda it: not3(cmp(text(meta(it, "camera")), "=", "rear"))),
    ('metadata.camera IN ("rear", "rear view")', lambda it: or3(cmp(text(meta(it, "camera")), "=", "rear"),
                                                               cmp(text(meta(it, "camera")), "=", "rear view"))),
    ('metadata.camera NOT IN ("rear", "front")',
     lambda it: not3(or3(cmp(text(meta(it, "camera")), "=", "rear"), cmp(text(meta(it, "camera")), "=", "front")))),
    ('metadata.camera LIKE "rear%"', lambda it: None if text(meta(it, "camera")) is None
     else meta(it, "camera").startswith("rear")),
    ('metadata.camera NOT LIKE "%r%"', lambda it: None if text(meta(it, "camera")) is None
     else "r" not in meta(it, "camera")),
    ("metadata.camera IS NULL", lambda it: meta(it, "camera") is None),
    ("metadata.camera is not null", lambda it: meta(it, "camera") is not None),
    # speed holds numbers on most items and strings on some: typed comparisons never mix them
    ("metadata.speed > 30", lambda it: cmp(num(meta(it, "speed")), ">", 30)),
    ("metadata.speed <= 12.5", lambda it: cmp(num(meta(it, "speed")), "<=", 12.5)),
    ('metadata.speed = "fast"', lambda it: cmp(text(meta(it, "speed")), "=", "fast")),
    ("metadata.speed = 50", lambda it: cmp(num(meta(it, "speed")), "=", 50)),
    ('metadata.speed = "50"', lambda it: cmp(text(meta(it, "speed")), "=", "50")),
    ("metadata.speed BETWEEN 10 AND 20", lambda it: and3(cmp(num(meta(it, "speed")), ">=", 10),
                                                        cmp(num(meta(it, "speed")), "<=", 20))),
    ("metadata.speed NOT BETWEEN 10 AND 80", lambda it: not3(and3(cmp(num(meta(it, "speed")), ">=", 10),
                                                                 cmp(num(meta(it, "speed")), "<=", 80)))),
    ("metadata.weather.rain > 0.5", lambda it: cmp(num(meta(it, "weather", "rain")), ">", 0.5)),
    ("metadata.weather.rain IS NULL", lambda it: meta(it, "weather", "rain") is None),
    ("metadata.weather.fog", lambda it: meta(it, "weather", "fog")),
    ("metadata.weather.fog = false", lambda it: cmp(meta(it, "weather", "fog"), "=", False)),
    ("NOT metadata.weather.fog", lambda it: not3(meta(it, "weather", "fog"))),
    ('metadata."time of day" = "dusk"', lambda it: cmp(meta(it, "time of day"), "=", "dusk")),
    ("metadata.frame % 5 = 0", lambda it: None if meta(it, "frame") is None else meta(it, "frame") % 5 == 0),
    ("metadata.frame * 2 + 1 > 101", lambda it: cmp(num(meta(it, "frame")), ">", 50)),
    ("-metadata.frame < -100", lambda it: cmp(num(meta(it, "frame")), ">", 100)),
    ('metadata.tags.0 = "a"', lambda it: cmp((meta(it, "tags") or [None])[0], "=", "a")),
    ('reference_id = "it005"', lambda it: it["reference_id"] == "it005"),
    ('reference_id IN ("it001", "it002", "nope")', lambda it: it["reference_id"] in ("it001", "it002")),
    ('reference_id LIKE "it00_"', lambda it: it["reference_id"].startswith("it00")),
    ('image_location LIKE "%/01_.png"', lambda it: it["reference_id"].startswith("it01")),
    ("width = 640 AND height = 480", lambda it: True),
    ("width > 640 OR height < 480", lambda it: False),
    ('annotations.pedestrian >= 1 AND (metadata.camera = "front" OR metadata.speed < 10)',
     lambda it: and3(n(it, "pedestrian") >= 1, or3(cmp(text(meta(it, "camera")), "=", "front"),
                                                    cmp(num(meta(it, "speed")), "<", 10)))),
    ("abs(metadata.speed - 50) < 5", lambda it: None if num(meta(it, "speed")) is None
     else abs(num(meta(it, "speed")) - 50) < 5),
    ('lower(metadata.camera) = "rear"', lambda it: cmp(text(meta(it, "camera")), "=", "rear")),
    ("length(reference_id) = 5", lambda it: True),
    ("", lambda it: True),
    ("true", lambda it: True),
    ("1 = 2", lambda it: False),
    ("NOT (annotations.count > 2 OR annotations.count < 1)", lambda it: 1 <= n(it) <= 2),
]


@pytest.mark.parametrize("dsl,expected", ITEM_CASES, ids=[c[0] or "<empty>" for c in ITEM_CASES])
def test_item_queries(world, dsl, expected):
    got = world.ds.query(dsl).column("reference_id").to_pylist()
    assert got == world.refs(expected)


RUN_CASES = [
    ("predictions.count >= 3", lambda it: np_(it) >= 3),
    ("predictions.fp > 0", lambda it: np_(it, status="fp") > 0),
    ("predictions.tp >= 2", lambda it: np_(it, status="tp") >= 2),
    ("predictions.fn > 1", lambda it: fn(it) > 1),
    ("predictions.pedestrian.fn > 0", lambda it: fn(it, "pedestrian") > 0),
    ("predictions.car > 1", lambda it: np_(it, "car") > 1),
    ("predictions.car.count > 1", lambda it: np_(it, "car") > 1),
    ("predictions.car.tp >= 1 AND predictions.car.fp >= 1",
     lambda it: np_(it, "car", "tp") >= 1 and np_(it, "car", "fp") >= 1),
    ('predictions."traffic light".tp >= 1', lambda it: np_(it, "traffic light", "tp") >= 1),
    ("predictions.box.count = 2", lambda it: np_(it) == 2),
    ("predictions.max_confidence > 0.9", lambda it: cmp(agg([p["confidence"] for p in it["preds"]], max), ">", 0.9)),
    ("min_confidence < 0.1", lambda it: cmp(agg([p["confidence"] for p in it["preds"]], min), "<", 0.1)),
    ("predictions.avg_confidence > 0.6",
     lambda it: cmp(agg([p["confidence"] for p in it["preds"]], lambda v: sum(v) / len(v)), ">", 0.6)),
    ("max_iou > 0.95", lambda it: cmp(agg([p["iou"] for p in it["preds"] if p["status"] == "tp"], max), ">", 0.95)),
    ("predictions.min_iou < 0.6", lambda it: cmp(agg([p["iou"] for p in it["preds"] if p["status"] == "tp"], min),
                                                 "<", 0.6)),
    ("predictions.fp > 0 AND annotations.count < 3", lambda it: np_(it, status="fp") > 0 and n(it) < 3),
    ("predictions.tp + predictions.fn = annotations.box.count", lambda it: True),
]


@pytest.mark.parametrize("dsl,expected", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_item_queries_in_a_run(world, dsl, expected):
    got = world.ds.query(dsl, run="r1").column("reference_id").to_pylist()
    assert got == world.refs(expected)


def test_predictions_form_names_the_run(world):
    want = world.refs(lambda it: np_(it, status="fp") > 1)
    assert world.ds.query('predictions("r1").fp > 1').column("reference_id").to_pylist() == want
    assert world.ds.query('predictions(run="r1").fp > 1').column("reference_id").to_pylist() == want


def test_uncommitted_run_counts_predictions_but_not_matches(world):
    r2 = world.ds.query("predictions.count > 0", run="r2").num_rows
    assert 0 < r2 <= world.ds.query("predictions.count > 0", run="r1").num_rows
    with pytest.raises(engine.DSLNameError, match="committed"):
        world.ds.query("predictions.fp > 0", run="r2")


def test_item_query_returns_the_items_columns(world):
    t = world.ds.query("annotations.count > 3", limit=2)
    assert t.schema == world.ds.items().schema
    assert t.num_rows == 2


def test_order_and_limit(world):
    want = sorted(world.items, key=lambda it: (-n(it), it["item_id"]))[:7]
    got = world.ds.query("ORDER BY annotations.count DESC LIMIT 7").column("reference_id").to_pylist()
    assert got == [it["reference_id"] for it in want]
    got = world.ds.query("annotations.count >= 0", order_by="annotations.count desc", limit=7)
    assert got.column("reference_id").to_pylist() == [it["reference_id"] for it in want]
    skip = world.ds.query("ORDER BY annotations.count DESC LIMIT 3 OFFSET 4").column("reference_id").to_pylist()
    assert skip == [it["reference_id"] for it in want[4:7]]
    # keyword limit replaces the query's own
    assert world.ds.query("LIMIT 50", limit=4).num_rows == 4


def test_order_by_metadata_numbers_as_numbers(world):
    speeds = [(num(meta(it, "speed")), it) for it in world.items if num(meta(it, "speed")) is not None]
    want = [it["reference_id"] for _, it in sorted(speeds, key=lambda p: (-p[0], p[1]["item_id"]))[:10]]
    got = world.ds.query("metadata.speed >= 0 ORDER BY metadata.speed DESC LIMIT 10").column("reference_id")
    assert got.to_pylist() == want


# -- object level --------------------------------------------------------------------------------
def objs(world, pred, run=True):
    rows = world.gt + (world.preds if run else [])
    return {(o["source"], o["annotation_id"]) for o in rows if pred(o) is True}


def g(o, k):
    return o.get(k)


OBJECT_CASES = [
    ('status = "fp" AND confidence > 0.8', lambda o: g(o, "status") == "fp" and o["confidence"] > 0.8),
    ('source = "gt" AND area < 32 * 32', lambda o: o["source"] == "gt" and cmp(o["area"], "<", 1024)),
    ('status = "tp" AND iou < 0.6 AND label = "pedestrian"',
     lambda o: o["status"] == "tp" and o["iou"] < 0.6 and o["label"] == "pedestrian"),
    ('item.metadata.camera = "rear" AND source = "prediction"',
     lambda o: o["source"] == "prediction" and cmp(text(meta(_item(o), "camera")), "=", "rear")),
    ("metadata.occluded = true", lambda o: o["source"] == "gt" and (o["metadata"] or {}).get("occluded") is True),
    ('kind = "category"', lambda o: o["source"] == "gt" and o["kind"] == "category"),
    ("status IS NULL", lambda o: o.get("status") is None),
    ('NOT status = "tp"', lambda o: not3(cmp(o.get("status"), "=", "tp"))),
    ('label IN ("bus", "traffic light") AND source = "gt"', lambda o: o["source"] == "gt" and o["label"] in ("bus", "traffic light")),
    ("aspect > 2", lambda o: o.get("width") is not None and o["width"] / o["height"] > 2),
    ('reference_id = "it003"', lambda o: o["reference_id"] == "it003"),
    ('item.reference_id = "it003" AND source = "gt"', lambda o: o["reference_id"] == "it003" and o["source"] == "gt"),
    ('item.annotations.count > 5 AND status = "fn"', lambda o: o.get("status") == "fn" and n(_item(o)) > 5),
    ('error_type = "localization"', lambda o: o.get("error_type") == "localization"),
    ("x < 10 AND y < 10", lambda o: o.get("x") is not None and o["x"] < 10 and o["y"] < 10),
    ('status = "fn"', lambda o: o.get("status") == "fn"),
    ("iou IS NOT NULL", lambda o: o.get("iou") is not None),
    ("best_iou > 0.9", lambda o: o.get("iou") is not None and o["iou"] > 0.9),
    ("confidence > 0.5", lambda o: o["source"] == "prediction" and o["confidence"] > 0.5),
    ('source = "prediction" AND NOT iscrowd', lambda o: o["source"] == "prediction"),
    ("width > 100 OR height > 100",
     lambda o: o.get("width") is not None and (o["width"] > 100 or o["height"] > 100)),
    ("", lambda o: True),
]

_ITEMS: dict = {}


def _item(o):
    return _ITEMS[o["reference_id"]]


@pytest.mark.parametrize("dsl,expected", OBJECT_CASES, ids=[c[0] or "<empty>" for c in OBJECT_CASES])
def test_object_queries(world, dsl, expected):
    _ITEMS.update({it["reference_id"]: it for it in world.items})
    t = world.ds.query_objects(dsl, run="r1")
    got = set(zip(t.column("source").to_pylist(), t.column("annotation_id").to_pylist()))
    assert got == objs(world, expected)
    assert len(got) == t.num_rows  # no duplicates


def test_object_queries_without_a_run_see_ground_truth_only(world):
    t = world.ds.query_objects("area > 100")
    got = set(zip(t.column("source").to_pylist(), t.column("annotation_id").to_pylist()))
    assert got == objs(world, lambda o: cmp(o["area"], ">", 100), run=False)
    assert set(t.column("status").to_pylist()) == {None}
    assert world.ds.query_objects('status = "fp"').num_rows == 0


def test_object_order_limit_matches_python(world):
    fps = sorted((p for p in world.preds if p["status"] == "fp"),
                 key=lambda p: (-p["confidence"], p["item_id"], p["pred_key"]))
    t = world.ds.query_objects('status = "fp" ORDER BY confidence DESC LIMIT 10', run="r1")
    assert t.column("annotation_id").to_pylist() == [p["annotation_id"] for p in fps[:10]]
    worst = sorted((o for o in world.gt + world.preds if o.get("status") == "tp"),
                   key=lambda o: (o["iou"], o["item_id"], o["source"], o.get("ann_key") or 0, o.get("pred_key") or 0))
    t = world.ds.query_objects('status = "tp"', run="r1", order_by="iou ASC", limit=9, offset=2)
    assert list(zip(t.column("source").to_pylist(), t.column("annotation_id").to_pylist())) == \
        [(o["source"], o["annotation_id"]) for o in worst[2:11]]
    assert t.column("iou").to_pylist() == [o["iou"] for o in worst[2:11]]


def test_object_rows_carry_match_columns(world):
    t = world.ds.query_objects('status = "tp" AND source = "prediction"', run="r1", limit=5)
    for row in t.to_pylist():
        p = next(p for p in world.preds if p["annotation_id"] == row["annotation_id"])
        assert row["pred_key"] == p["pred_key"] and row["ann_key"] is None
        assert row["partner_key"] == p["gt"]["ann_key"]
        assert row["iou"] == pytest.approx(p["iou"]) and row["confidence"] == pytest.approx(p["confidence"])


def test_labels_changed_after_commit(world):
    """A GT deleted after the commit keeps its matches row but is no longer an object of the dataset."""
    w = build(seed=11, n_items=40)
    try:
        fns = [o for o in w.gt if o.get("status") == "fn"]
        assert fns
        victim = fns[0]["annotation_id"]
        w.ds.delete_annotations([victim])
        for kw in ({}, {"limit": 1000}):
            t = w.ds.query_objects('status = "fn"', run="r1", **kw)
            got = set(t.column("annotation_id").to_pylist())
            assert got == {o["annotation_id"] for o in fns} - {victim}
    finally:
        w.ws.close()


def test_with_a_real_commit(ws):
    """The matches rows of engine's own commit: object and item queries agree with its counts."""
    ds = ws.create_dataset("c")
    ds.append([engine.DatasetItem(f"/{k}.png", f"i{k}", width=200, height=200) for k in range(4)], check_images=False)
    ds.annotate([engine.BoxAnnotation("car", f"i{k}", x=10 + 40 * j, y=10, width=30, height=30,
                                      annotation_id=f"g{k}{j}") for k in range(4) for j in range(k + 1)])
    preds = [engine.BoxPrediction("car", f"i{k}", x=11 + 40 * j, y=10, width=30, height=30, confidence=0.9 - 0.1 * j,
                                  annotation_id=f"p{k}{j}") for k in range(4) for j in range(k)]
    preds += [engine.BoxPrediction("car", "i0", x=150, y=150, width=20, height=20, confidence=0.95, annotation_id="bg")]
    run = ws.add_model("m").create_run("r", ds, preds)
    if not hasattr(run, "commit"):
        pytest.skip("commit is not available in this build")
    res = run.commit(iou_threshold=0.5)
    objs = ds.query_objects("", run="r")
    for status, n_ in (("tp", res["tp"]), ("fp", res["fp"])):
        assert objs.filter(pa_eq(objs, "source", "prediction", "status", status)).num_rows == n_
        assert ds.query_objects(f'status = "{status}" AND source = "prediction"', run="r").num_rows == n_
    assert ds.query_objects('status = "fn"', run="r").num_rows == res["fn"] == 4
    assert ds.query_objects('status = "fn" ORDER BY x DESC LIMIT 2', run="r").num_rows == 2
    assert ds.query("predictions.fn = 1", run="r").column("reference_id").to_pylist() == ["i0", "i1", "i2", "i3"]
    assert ds.query("predictions.fp > 0", run="r").column("reference_id").to_pylist() == ["i0"]
    assert ds.query("predictions.min_iou > 0.8", run="r").num_rows == 3


def pa_eq(t, c1, v1, c2, v2):
    import pyarrow.compute as pc

    return pc.and_(pc.equal(t.column(c1), v1), pc.equal(t.column(c2), v2))
