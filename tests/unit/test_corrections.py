"""Label corrections with history: correct, add_missing, delete, undo, one label version each."""
from __future__ import annotations

import json

import pytest

import engine
from engine.curation.corrections import apply_truth_corrections, truth_corrections
from engine.errors import LoupeError, LoupeWarning, NotFoundError, ValidationError


@pytest.fixture
def ds(ws):
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem(f"{r}.png", r, width=100, height=80) for r in ("a", "b", "c")], check_images=False)
    d.annotate([  # PennFudan-style ids: "1" exists on two items
        engine.BoxAnnotation("cat", "a", "1", x=10, y=10, width=20, height=20),
        engine.BoxAnnotation("cat", "b", "1", x=50, y=40, width=10, height=10),
        engine.BoxAnnotation("dog", "b", "2", x=5, y=5, width=30, height=30, metadata={"note": "x"}),
    ])
    return d


def current(ds, version=None):
    return {(r["reference_id"], r["annotation_id"]): r for r in ds.annotations(label_version=version).to_pylist()}


def count(ws, table):
    return ws.sql(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_correct_label_opens_a_version_and_keeps_the_old_state(ws, ds):
    r = ds.correct("1", reference_id="a", label="dog", reason="it barks", author="ana")
    assert r == {"label_version": 2, "added": 0, "changed": 1, "deleted": 0, "unchanged": 0, "ignored": 0}
    assert current(ds)[("a", "1")]["label"] == "dog"
    assert current(ds, 1)[("a", "1")]["label"] == "cat"  # history kept
    assert current(ds)[("b", "1")]["label"] == "cat"  # the other item's "1" untouched
    v = ds.label_versions().to_pylist()[-1]
    assert (v["version"], v["operation"], v["author"], v["reason"], v["changed"]) == (2, "correct", "ana", "it barks", 1)
    ch = ds.label_changes(2).to_pylist()
    assert len(ch) == 1 and ch[0]["fields"] == ["label"] and ch[0]["old_label"] == "cat" and ch[0]["new_label"] == "dog"
    hist = ds.annotation_history("1", "a").to_pylist()
    assert [(h["valid_from"], h["valid_to"], h["label"]) for h in hist] == [(1, 2, "cat"), (2, None, "dog")]
    assert hist[1]["reason"] == "it barks" and hist[1]["author"] == "ana"
    assert count(ws, "annotations") == 4


def test_correct_box_recomputes_area_and_merges_metadata(ds):
    ds.correct("2", reference_id="b", box=(0, 0, 40, 50), metadata={"checked": True})
    row = current(ds)[("b", "2")]
    assert (row["x"], row["y"], row["width"], row["height"], row["area"]) == (0, 0, 40, 50, 2000)
    assert json.loads(row["metadata"]) == {"note": "x", "checked": True}
    assert ds.label_changes().to_pylist()[-1]["fields"] == ["box", "metadata"]


def test_a_change_to_the_current_values_says_so(ws, ds):
    """Issue 13, D14: a correction equal to the stored labels was a silent no-op (changed: 0)."""
    v0 = ds.label_version if hasattr(ds, "label_version") else None
    n0 = count(ws, "label_versions")
    with pytest.warns(LoupeWarning, match=r"1 change\(s\) left the labels as they were.*reference_id 'a', "
                                          r"annotation_id '1'.*no new label version"):
        r = ds.correct("1", reference_id="a", box=(10, 10, 20, 20), reason="tighten")
    assert (r["changed"], r["unchanged"]) == (0, 1) and count(ws, "label_versions") == n0
    # mixed: the real change is written, the no-op one is named
    with pytest.warns(LoupeWarning, match=r"1 change\(s\).*reference_id 'b', annotation_id '2'") as rec:
        r = ds.apply_changes(change=[{"reference_id": "a", "annotation_id": "1", "label": "dog"},
                                     {"reference_id": "b", "annotation_id": "2", "label": "dog"}])
    assert (r["changed"], r["unchanged"]) == (1, 1) and "no new label version" not in str(rec[0].message)
    assert v0 is None or ds.label_version == v0 + 1


def test_invalid_or_ambiguous_corrections_write_nothing(ws, ds):
    n0 = count(ws, "annotations")
    with pytest.raises(ValidationError, match="exists on 2 items"):
        ds.correct("1", label="dog")
    with pytest.raises(ValidationError, match="outside the image"):
        ds.correct("2", reference_id="b", x=90)  # 90 + 30 > width 100
    with pytest.raises(ValidationError, match="label"):
        ds.correct("2", reference_id="b", label="  ")
    with pytest.raises(ValidationError, match="cannot change"):
        ds.correct("2", reference_id="b", kind="polygon")
    with pytest.raises(NotFoundError):
        ds.correct("9", reference_id="a", label="dog")
    with pytest.raises(NotFoundError):
        ds.correct("2", reference_id="a", label="dog")  # "2" exists, but not on item a
    # a batch with one bad change is refused as a whole
    with pytest.raises(ValidationError):
        ds.apply_changes(change=[{"reference_id": "a", "annotation_id": "1", "label": "dog"},
                                 {"reference_id": "b", "annotation_id": "2", "width": -1}])
    assert count(ws, "annotations") == n0 and ds.label_version == 1
    assert ds.correct("2", reference_id="b", label="dog")["label_version"] == 1  # no-op: no new version


def test_add_missing_logs_each_object_with_its_reason(ds):
    t = [{"reference_id": "c", "annotation_id": "new-1", "label": "cat", "x": 1.0, "y": 2.0, "width": 3.0,
          "height": 4.0, "reason": "seen in review"},
         {"reference_id": "c", "annotation_id": "new-2", "label": "dog", "x": 5.0, "y": 5.0, "width": 5.0,
          "height": 5.0}]
    import pyarrow as pa

    r = ds.add_missing(pa.Table.from_pylist(t), reason="missing labels", author="bob")
    assert (r["label_version"], r["added"]) == (2, 2)
    ch = {c["annotation_id"]: c for c in ds.label_changes(2).to_pylist()}
    assert ch["new-1"]["reason"] == "seen in review" and ch["new-2"]["reason"] == "missing labels"
    assert {c["action"] for c in ch.values()} == {"add"} and ds.label_versions().to_pylist()[-1]["operation"] == "add_missing"
    assert len(ds.annotations(label_version=1)) == 3 and len(ds.annotations()) == 5


def test_one_version_for_adds_changes_and_deletes(ds):
    r = ds.apply_changes(add=[engine.BoxAnnotation("cat", "c", "n", x=1, y=1, width=2, height=2)],
                         change=[{"reference_id": "a", "annotation_id": "1", "label": "dog"}],
                         delete=[("b", "2")], reason="review")
    assert r == {"label_version": 2, "added": 1, "changed": 1, "deleted": 1, "unchanged": 0, "ignored": 0}
    v = ds.label_versions().to_pylist()
    assert len(v) == 2 and (v[1]["added"], v[1]["changed"], v[1]["deleted"]) == (1, 1, 1)
    assert set(current(ds)) == {("a", "1"), ("b", "1"), ("c", "n")}
    assert {c["action"] for c in ds.label_changes(2).to_pylist()} == {"add", "change", "delete"}


def test_delete_as_an_arrow_table(ws, ds):
    import pyarrow as pa

    with pytest.raises(ValidationError, match="delete row 1.*annotation_id"):
        ds.apply_changes(delete=pa.table({"reference_id": ["a", "b"], "annotation_id": ["1", " "]}))
    assert ds.label_version == 1  # nothing written
    with pytest.raises(ValidationError, match="reference_id"):  # "1" is on two items
        ds.apply_changes(delete=pa.table({"annotation_id": ["1"]}))
    r = ds.apply_changes(delete=pa.table({"reference_id": ["a", "b"], "annotation_id": ["1", "2"],
                                          "reason": ["dup", None]}), reason="review")
    assert r["deleted"] == 2 and set(current(ds)) == {("b", "1")}
    assert sorted(c["reason"] for c in ds.label_changes(2).to_pylist()) == ["dup", "review"]


def test_delete_needs_item_for_ambiguous_ids(ds):
    with pytest.raises(ValidationError, match="reference_id"):
        ds.delete_annotations(["1"])
    assert ds.delete_annotations([("a", "1")], reason="spurious") == 1
    assert ds.delete_annotations(["1"], reference_id="b") == 1
    assert set(current(ds)) == {("b", "2")}


def test_undo_restores_state_without_rewriting_history(ws, ds):
    before = current(ds)
    ds.correct("1", reference_id="a", label="dog")  # v2
    ds.delete_annotations([("b", "2")])  # v3
    ds.add_missing([engine.BoxAnnotation("cat", "c", "n", x=1, y=1, width=2, height=2)])  # v4
    r = ds.undo()  # reverts v4
    assert (r["label_version"], r["undone"], r["removed"]) == (5, 4, 1)
    r = ds.undo(3)  # reverts the delete
    assert (r["label_version"], r["restored"]) == (6, 1)
    r = ds.undo(2)  # reverts the relabel
    assert r["changed"] == 1
    after = current(ds)
    assert set(after) == set(before)
    for k in before:
        assert {f: after[k][f] for f in ("label", "x", "y", "width", "height")} == \
               {f: before[k][f] for f in ("label", "x", "y", "width", "height")}
    # every past version is still there exactly as it was
    assert current(ds, 2)[("a", "1")]["label"] == "dog" and ("b", "2") not in current(ds, 3)
    assert ("c", "n") in current(ds, 4)
    assert [v["operation"] for v in ds.label_versions().to_pylist()][-3:] == ["undo"] * 3
    assert ds.undo()["label_version"] == 8  # undoing an undo redoes
    assert current(ds)[("a", "1")]["label"] == "dog"


def test_undo_refuses_when_a_later_version_touched_the_same_object(ds):
    ds.correct("1", reference_id="a", label="dog")  # v2
    ds.correct("1", reference_id="a", label="cow")  # v3
    with pytest.raises(LoupeError, match="undo the later versions first"):
        ds.undo(2)
    with pytest.raises(NotFoundError):
        ds.undo(7)


def test_metrics_follow_any_label_version(ws, ds):
    """A dog prediction on a GT labelled cat: FP + FN before the fix, TP after; v1 still evaluates as before."""
    run = ws.add_model("m").create_run("r", ds, [
        engine.BoxPrediction("dog", "a", "p1", x=10, y=10, width=20, height=20, confidence=0.9)])
    ds.correct("1", reference_id="a", label="dog")
    assert run.metrics(label_version=1, slice=["a"])["counts"] == {"tp": 0, "fp": 1, "fn": 1}
    assert run.metrics(label_version=2, slice=["a"])["counts"] == {"tp": 1, "fp": 0, "fn": 0}
    c = run.commit(label_version=1)
    assert (c["tp"], c["fp"]) == (0, 1)


def test_apply_truth_corrections_on_sample_data(ws, tmp_path):
    import sample_data

    out = tmp_path / "data"
    sample_data.generate(out, n_images=40, seed=3)
    ws.import_pennfudan(out, dataset="s")
    ds = ws.get_dataset("s")
    truth = json.loads((out / "truth.json").read_text())
    fixes = truth["corrections"]
    n_add = sum(f["action"] == "add" for f in fixes)
    relabel = [f for f in fixes if f["action"] == "relabel"]
    assert n_add and relabel
    test_refs = sorted({f["reference_id"] for f in fixes})[::2]
    r = apply_truth_corrections(ds, out / "truth.json", reference_ids=test_refs)
    assert r["added"] == sum(f["action"] == "add" and f["reference_id"] in test_refs for f in fixes)
    with pytest.warns(LoupeWarning, match="left the labels as they were"):  # already-applied ones: no-ops
        r2 = apply_truth_corrections(ds, out / "truth.json")  # the rest
    assert r2["label_version"] == r["label_version"] + 1
    assert r["added"] + r2["added"] == n_add
    cur = current(ds)
    for f in relabel:
        assert cur[(f["reference_id"], str(f["mask_index"]))]["label"] == f["label"]
    for f in (f for f in fixes if f["action"] == "set_box"):  # the text box now agrees with the box
        row = cur[(f["reference_id"], str(f["mask_index"]))]
        assert json.loads(row["metadata"])["txt_box"] == f["box"] == [row["x"], row["y"], row["width"], row["height"]]
    by_ref = {}
    for ref, im in truth["images"].items():  # every true, non-negligible object is now annotated
        by_ref[ref] = sum(o["status"] != "negligible" for o in im["objects"])
    got = {}
    for (ref, _), _row in cur.items():
        got[ref] = got.get(ref, 0) + 1
    assert all(got.get(ref, 0) == n for ref, n in by_ref.items())
    assert truth_corrections(out / "truth.json", reasons=["wrong_label"])["add"] == []


def test_evaluation_inputs_stay_in_input_order_after_a_correction(ws, ds):
    """A corrected annotation is a new row that keeps its old ``seq``: the table's row order is then not
    ``seq`` order, and the evaluation inputs (read without ORDER BY) must still come in ``seq`` order."""
    from engine.runs.inputs import gather

    run = ws.add_model("m").create_run("r", ds, [
        engine.BoxPrediction("cat", r, f"p{i}", x=10, y=10, width=20, height=20, confidence=0.5)
        for i, r in enumerate(("a", "b", "c"))])
    ds.correct("1", reference_id="a", label="dog")  # annotations[0] is replaced by a row written last
    in_table_order = ws.sql("SELECT ann_key FROM annotations WHERE valid_to IS NULL").column("ann_key").to_pylist()
    by_seq = ws.sql("SELECT ann_key FROM annotations WHERE valid_to IS NULL ORDER BY seq").column("ann_key").to_pylist()
    assert in_table_order != by_seq  # the case the fallback sort is for
    inp = gather(ws.store, ds.id, run.id)
    assert inp.gt.key.tolist() == by_seq
    assert inp.dt.key.tolist() == ws.sql("SELECT pred_key FROM predictions ORDER BY seq").column("pred_key").to_pylist()
