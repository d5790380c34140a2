"""engine.compare (label versions x slices) and engine.compare_runs (two runs), on hand-checkable cases."""
from __future__ import annotations

import pytest

import engine
from engine.errors import LoupeError, NotFoundError, ValidationError


def box(label, ref, aid, x, y, w=20, h=40, conf=None):
    if conf is None:
        return engine.BoxAnnotation(label, ref, aid, x=x, y=y, width=w, height=h)
    return engine.BoxPrediction(label, ref, aid, x=x, y=y, width=w, height=h, confidence=conf)


@pytest.fixture
def world(ws):
    """Items a, b. GT: a/1 person (labelled 'cat' by mistake), b/1 person, b/2 person.

    Run A finds a/1 (as person), b/1; run B finds a/1, b/2 and has a confident FP on b.
    """
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(f"{r}.png", r, width=200, height=100) for r in ("a", "b")], check_images=False)
    ds.annotate([box("cat", "a", "1", 10, 10), box("person", "b", "1", 10, 10), box("person", "b", "2", 100, 10)])
    m = ws.add_model("m")
    ra = m.create_run("A", ds, [box("person", "a", "pa1", 10, 10, conf=0.9), box("person", "b", "pb1", 10, 10, conf=0.8)])
    rb = m.create_run("B", ds, [box("person", "a", "qa1", 10, 10, conf=0.9), box("person", "b", "qb2", 100, 10, conf=0.7),
                                box("person", "b", "qfp", 150, 50, conf=0.95)])
    return ws, ds, ra, rb


def test_compare_label_versions_and_slices(world):
    ws, ds, ra, _ = world
    ds.correct("1", reference_id="a", label="person", reason="it is a person")  # v2
    ds.create_slice("only_a", reference_ids=["a"])
    t = engine.compare(ds, "A", label_versions={"baseline": 1, "corrected": 2}, slices=["only_a", None])
    rows = {(r["slice"], r["labels"]): r for r in t.to_pylist()}
    assert len(rows) == 4
    # item a: before, the only GT is a 'cat' nobody predicts (AP 0 over the class with GT); after, a perfect hit
    before, after = rows[("only_a", "baseline")], rows[("only_a", "corrected")]
    assert (before["AP"], before["tp"], before["fp"], before["fn"]) == (0.0, 0, 1, 1)
    assert after["AP"] == pytest.approx(1.0) and after["AR100"] == pytest.approx(1.0)
    assert (after["tp"], after["fp"], after["fn"]) == (1, 0, 0)
    assert after["delta_AP"] == pytest.approx(1.0) and before["delta_AP"] == 0.0
    assert (after["label_version"], after["run"]) == (2, "A")
    # all items after the fix: 3 person GT, A finds 2 of them with no FP -> recall 2/3, AP50 = 2/3 (101-pt)
    allc = rows[("all", "corrected")]
    assert (allc["gt"], allc["tp"], allc["fp"], allc["fn"]) == (3, 2, 0, 1)
    assert allc["AR100"] == pytest.approx(2 / 3) and allc["AP50"] == pytest.approx(67 / 101)
    # default label states: first and current
    t2 = engine.compare(ws, ra)
    assert t2.column("labels").to_pylist() == ["baseline", "current"] and t2.column("label_version").to_pylist() == [1, 2]


def test_compare_options(world):
    ws, ds, ra, rb = world
    t = engine.compare(ws, ["A", "B"], label_versions=[1], slices=[("just b", ["b"])], per_class=True)
    assert set(t.column("run").to_pylist()) == {"A", "B"} and set(t.column("slice").to_pylist()) == {"just b"}
    person = [r for r in t.to_pylist() if r["label"] == "person" and r["run"] == "A"][0]
    assert person["gt"] == 2 and person["AR100"] == 0.5
    with pytest.raises(NotFoundError):
        engine.compare(ds, "A", label_versions=[9])
    with pytest.raises(ValidationError):
        engine.compare(ds, "A", metrics=["accuracy"])


def test_compare_runs_objects_and_deltas(world):
    ws, ds, ra, rb = world
    ds.correct("1", reference_id="a", label="person")
    ra.commit()
    rb.commit()
    r = engine.compare_runs(ra, rb)
    assert set(r) == {"summary", "per_class", "per_slice", "objects", "items"}
    objs = [(o["change"], o["reference_id"], o["annotation_id"] or o["prediction_id_a"] or o["prediction_id_b"])
            for o in r["objects"].to_pylist()]
    # sorted by impact: B's FP (0.95), b/1 found by A only (0.8), b/2 found by B only (0.7)
    assert objs == [("fp_b_only", "b", "qfp"), ("tp_a_fn_b", "b", "1"), ("fn_a_tp_b", "b", "2")]
    impacts = r["objects"].column("impact").to_pylist()
    assert impacts == sorted(impacts, reverse=True)
    items = {x["reference_id"]: x for x in r["items"].to_pylist()}
    assert set(items) == {"b"} and (items["b"]["gained"], items["b"]["lost"], items["b"]["fp_added"], items["b"]["net"]) == \
        (1, 1, 1, -1)
    s = {x["metric"]: x for x in r["summary"].to_pylist()}
    assert (s["tp"]["a"], s["tp"]["b"], s["fp"]["delta"]) == (2, 2, 1)
    pc = r["per_class"].to_pylist()
    assert [c["label"] for c in pc] == ["person"] and pc[0]["ar_a"] == pytest.approx(pc[0]["ar_b"])
    # restricted to item a: the runs agree
    ds.create_slice("a_only", reference_ids=["a"])
    ra_ = engine.compare_runs(ra, rb, slice="a_only")
    assert ra_["objects"].num_rows == 0 and ra_["per_slice"].column("slice").to_pylist() == ["a_only"]
    assert ra_["per_slice"].column("delta_AP").to_pylist() == [0.0]


def test_compare_runs_needs_same_labels(world):
    ws, ds, ra, rb = world
    ra.commit()
    ds.correct("1", reference_id="a", label="person")
    rb.commit()
    with pytest.raises(LoupeError, match="committed against label version 1"):
        engine.compare_runs(ra, rb)
    with pytest.raises(ValidationError):
        engine.compare_runs(ra, ra)
    ra.commit()  # both at the current labels now: the ModelRun wrapper works
    assert ra.compare("B")["objects"].num_rows == 3
