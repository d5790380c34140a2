"""Scenario tests: the criteria language (safe parsing), the metric functions, storage and history."""
from __future__ import annotations

import pytest

import engine
from engine.errors import AlreadyExistsError, NotFoundError
from engine.analysis.scenarios import bbox_map, detection_stats
from queries import DSLNameError, DSLSyntaxError, DSLTypeError
from queries.scenario import parse_criteria


# -- parsing -------------------------------------------------------------------------------------------
def test_parse_criteria_with_aliases_defaults_and_separators():
    cs = parse_criteria('bbox_recall(iou=0.5) > 0.8, bbox_map() >= 0.5; '
                        'bbox_precision(iou_threshold=0.5, confidence=0.3, label_match=TRUE) > 0.7 '
                        'AND bbox_f1(label="ped \\"x\\"") >= baseline - 0.02\n coco_ap() < baseline + 1e-3')
    assert [c.function for c in cs] == ["bbox_recall", "bbox_map", "bbox_precision", "bbox_f1", "coco_ap"]
    assert cs[0].params == {"iou_threshold": 0.5, "confidence_threshold": 0.0, "enforce_label_match": False,
                            "label": None}
    assert (cs[0].op, cs[0].threshold, cs[0].relative) == (">", 0.8, False)
    assert cs[2].params["confidence_threshold"] == 0.3 and cs[2].params["enforce_label_match"] is True
    assert cs[3].params["label"] == 'ped "x"' and cs[3].baseline_delta == -0.02
    assert cs[4].baseline_delta == pytest.approx(1e-3) and cs[4].op == "<"
    assert [c.position for c in cs] == [0, 1, 2, 3, 4]
    # the normalized text parses back to the same criterion
    for c in cs:
        again = parse_criteria(c.text())[0]
        assert (again.function, again.params, again.op, again.threshold, again.baseline_delta) == \
               (c.function, c.params, c.op, c.threshold, c.baseline_delta)


def test_criteria_decisions():
    c = parse_criteria("bbox_recall() >= baseline - 0.05")[0]
    assert c.passes(0.76, 0.8) and not c.passes(0.74, 0.8)
    assert not c.passes(0.9, None)  # no baseline: fails
    assert not parse_criteria("bbox_recall() > 0.5")[0].passes(None)  # undefined value fails
    assert parse_criteria("bbox_iou() != 0.5")[0].passes(0.6)


@pytest.mark.parametrize("text,err,where", [
    ("bbox_recal() > 0.8", DSLNameError, "bbox_recall"),
    ("bbox_recall(iouu=0.5) > 0.8", DSLNameError, "iou_threshold"),
    ("bbox_recall(iou=1.5) > 0.8", DSLTypeError, "(0, 1]"),
    ("bbox_recall(iou=0) > 0.8", DSLTypeError, "(0, 1]"),
    ("bbox_recall(enforce_label_match=1) > 0.8", DSLTypeError, "true or false"),
    ("bbox_recall(label=person) > 0.8", DSLSyntaxError, "unexpected"),
    ("bbox_recall(iou=0.5, iou=0.6) > 0.8", DSLTypeError, "twice"),
    ("bbox_recall() > ", DSLSyntaxError, "end"),
    ("bbox_recall() = 0.8", DSLSyntaxError, "unexpected"),
    ('__import__("os").system("true") > 0', DSLSyntaxError, "unexpected"),
    ("bbox_recall() > 0.8 or 1", DSLSyntaxError, "unexpected"),
    ("", DSLSyntaxError, "no criteria"),
])
def test_bad_criteria_are_refused_with_a_position(text, err, where):
    with pytest.raises(err) as e:
        parse_criteria(text)
    assert where in str(e.value)
    assert e.value.line is not None


# -- metrics -------------------------------------------------------------------------------------------
@pytest.fixture
def world(ws):
    """4 GT persons + 1 crowd region on two items; 6 predictions (hand-checked outcomes in the tests)."""
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(f"{r}.png", r, width=400, height=200) for r in ("a", "b")], check_images=False)
    g = lambda ref, aid, x, lab="person", crowd=False: engine.BoxAnnotation(  # noqa: E731
        lab, ref, aid, x=x, y=10, width=40, height=100, iscrowd=crowd)
    ds.annotate([g("a", "1", 0), g("a", "2", 100), g("a", "3", 200), g("b", "1", 0),
                 g("b", "c", 300, crowd=True)])
    p = lambda ref, aid, x, conf, lab="person", w=40: engine.BoxPrediction(  # noqa: E731
        lab, ref, aid, x=x, y=10, width=w, height=100, confidence=conf)
    preds = [
        p("a", "p1", 0, 0.9),              # TP a/1, IoU 1
        p("a", "p2", 110, 0.8),            # TP a/2, IoU 30/50 = 0.6
        p("a", "p3", 200, 0.2, lab="car"),  # on a/3 with the wrong label
        p("b", "p4", 150, 0.6),            # FP
        p("b", "p5", 0, 0.4),              # TP b/1
        p("b", "p6", 300, 0.7),            # on the crowd region: ignored
    ]
    run = ws.add_model("m").create_run("r", ds, preds)
    base = ws.add_model("m0").create_run("base", ds, [p("a", "q1", 0, 0.9)])
    return ws, ds, run, base


def test_detection_stats_by_hand(world):
    ws, ds, run, _ = world
    s = detection_stats(run)  # IoU 0.5, any label, all confidences
    assert (s["tp"], s["fp"], s["fn"]) == (4, 1, 0)  # p3 matches a/3 across labels; p6 ignored (crowd)
    assert s["recall"] == 1.0 and s["precision"] == pytest.approx(0.8)
    assert s["mean_iou"] == pytest.approx((1 + 0.6 + 1 + 1) / 4)
    s = detection_stats(run, enforce_label_match=True)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 2, 1)
    s = detection_stats(run, confidence_threshold=0.5)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 2)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    s = detection_stats(run, iou_threshold=0.7)
    assert (s["tp"], s["fp"], s["fn"]) == (3, 2, 1)  # p2 (IoU 0.6) no longer matches
    s = detection_stats(run, label="car")
    assert (s["tp"], s["fp"], s["fn"]) == (0, 1, 0) and s["recall"] is None and s["precision"] == 0.0


def test_bbox_map_by_hand(world):
    ws, ds, run, _ = world
    # person class, by score: p1 TP, p6 ignored, p2 TP, p4 FP, p5 TP over 4 GT; car has no GT
    # interpolated precision: 1 up to recall 0.5, 0.75 up to 0.75, 0 beyond (a/3 never found as person)
    expect = (51 * 1.0 + 25 * 0.75) / 101
    assert bbox_map(run) == pytest.approx(expect)
    # at IoU 0.7 p2 is a FP: precision 1 up to recall 0.25, then 2 TP of 4 detections = 0.5 up to 0.5
    assert bbox_map(run, iou_threshold=0.7) == pytest.approx((26 * 1.0 + 25 * 0.5) / 101)
    assert bbox_map(run, label="car") is None


def test_scenarios_store_history_and_gate(world):
    ws, ds, run, base = world
    ds.create_slice("only_a", reference_ids=["a"])
    ds.create_scenario("a recall", "bbox_recall(iou=0.5) >= 1.0, bbox_precision(confidence=0.5) > 0.9", slice="only_a")
    ds.create_scenario("regress", "bbox_recall() >= baseline, bbox_map() > baseline + 0.5", baseline="base")
    with pytest.raises(AlreadyExistsError):
        ds.create_scenario("regress", "bbox_recall() > 0")
    with pytest.raises(NotFoundError):
        ds.create_scenario("x", "bbox_recall() > 0", slice="nope")
    with pytest.raises(DSLNameError):
        ds.create_scenario("y", "recall() > 0")
    t = run.test()
    rows = {(r["scenario"], r["position"]): r for r in t.to_pylist()}
    # item a: all 3 GT matched across labels (recall 1); confident predictions p1, p2 are both TP
    assert rows[("a recall", 0)]["value"] == 1.0 and rows[("a recall", 0)]["passed"]
    assert rows[("a recall", 1)]["value"] == 1.0 and rows[("a recall", 1)]["scenario_passed"]
    # baseline run finds 1 of 4: recall 0.25, so ">= baseline" passes; mAP 0.7 is not > 0.25 + 0.5
    r0, r1 = rows[("regress", 0)], rows[("regress", 1)]
    assert (r0["value"], r0["baseline_value"], r0["passed"]) == (1.0, 0.25, True)
    assert r1["bound"] == pytest.approx(r1["baseline_value"] + 0.5) and not r1["passed"] and not r1["scenario_passed"]
    assert r1["baseline"] == "base"
    # history: two evaluations recorded, newest first; a second call appends
    run.test(scenarios=["a recall"])
    h = ds.scenario_history("a recall").to_pylist()
    assert len({x["evaluation_id"] for x in h}) == 2 and h[0]["evaluation_id"] > h[-1]["evaluation_id"]
    listed = {r["name"]: r for r in ds.scenarios().to_pylist()}
    assert listed["a recall"]["last_passed"] is True and listed["regress"]["last_passed"] is False
    # a baseline override, and a relative bound without any baseline fails
    ds.set_scenario_baseline(None)
    t = run.test(scenarios=["regress"])
    assert t.column("passed").to_pylist() == [False, False] and t.column("baseline_value").to_pylist() == [None, None]
    t = run.test(baseline="r", scenarios="regress")  # against itself: >= passes, > + 0.5 does not
    assert t.column("passed").to_pylist() == [True, False]
    ds.delete_scenario("regress")
    assert [r["name"] for r in ds.scenarios().to_pylist()] == ["a recall"]
    ws.delete_dataset("d")
    assert ws.sql("SELECT (SELECT count(*) FROM scenarios) + (SELECT count(*) FROM scenario_evaluations) "
                  "+ (SELECT count(*) FROM scenario_results) AS n").column("n")[0].as_py() == 0


def test_undefined_metric_fails(world):
    ws, ds, run, _ = world
    ds.create_scenario("cats", 'bbox_recall(label="cat") > 0.1')  # no cat anywhere: recall undefined
    t = run.test()
    assert t.column("value").to_pylist() == [None] and t.column("passed").to_pylist() == [False]
