"""The App's grid pages are slices of ``ds.query``'s answer; its boxes those of the API; its undo a stack.

The grid keeps a query's matching item ids and reads one page of rows at a time (engine/app/results.py):
every page, total, keyboard index and static slice must equal what the Python API answers, also when the
ORDER BY has ties (the item id breaks them) and with slices and selections.
"""
from __future__ import annotations

import random

import pytest

import engine
from engine.app.api import AppAPI, ApiError

N = 90


@pytest.fixture(scope="module")
def world():
    rnd = random.Random(7)
    ws = engine.connect()
    ds = ws.create_dataset("d")
    refs = [f"img{rnd.randrange(10**6):06d}_{k}" for k in range(N)]  # item_id order is not reference_id order
    ds.append([engine.DatasetItem(f"/nowhere/{r}.jpg", r, width=rnd.choice([320, 640, 800]),
                                  height=rnd.choice([240, 480]), metadata={"camera": rnd.choice(["rear", "front"])})
               for r in refs], check_images=False)
    gts, preds = [], []
    for r in refs:
        for j in range(rnd.randrange(0, 5)):
            x, y = rnd.uniform(0, 200), rnd.uniform(0, 150)
            lab = rnd.choice(["person", "car"])
            gts.append(engine.BoxAnnotation(lab, r, x=x, y=y, width=40, height=60, annotation_id=f"g{j}"))
            if rnd.random() < 0.7:
                preds.append(engine.BoxPrediction(lab, r, f"p{j}", x=x + rnd.uniform(0, 8), y=y, width=40,
                                                  height=60, confidence=round(rnd.random(), 2)))
    ds.annotate(gts)
    run = ws.add_model("m").create_run("r", ds, preds)
    run.commit()
    api = AppAPI(ws)
    yield ws, ds, run, api
    ws.close()


def pages(api, params, size):
    out, total, off = [], None, 0
    while True:
        r = api.handle("items", {**params, "offset": off, "limit": size, "boxes": "0"})
        total = r["total"]
        out += r["items"]
        off += size
        if off >= total:
            return total, out


QUERIES = ["", "annotations.count >= 2", 'metadata.camera = "rear" AND width > 320', "predictions.fp > 0",
           "annotations.car = 0"]
ORDERS = [None, "width DESC", "annotations.count ASC, height DESC", "reference_id DESC"]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("q", QUERIES)
def test_pages_are_slices_of_the_query(world, q, order):
    ws, ds, run, api = world
    params = {"dataset": "d", "run": "r", "q": q, **({"order": order} if order else {})}
    want = ds.query(q or "width >= 0", run="r", order_by=order).select(["reference_id", "width", "height"])
    for size in (7, 60):
        total, got = pages(api, params, size)
        assert total == want.num_rows
        assert got == want.to_pylist(), (q, order, size)  # ties (equal widths, counts) in the API's order
    if want.num_rows:
        k = want.num_rows // 2
        it = api.handle("item", {**params, "index": k})
        assert (it["index"], it["item"]["reference_id"]) == (k, want.column("reference_id")[k].as_py())


def test_slices_and_selections(world):
    ws, ds, run, api = world
    everything = ds.items().column("reference_id").to_pylist()
    members = everything[::3]
    ds.create_slice("thirds", reference_ids=members)
    total, got = pages(api, {"dataset": "d", "slice": "thirds", "order": "width DESC"}, 10)
    want = ds.query("width >= 0", order_by="width DESC").column("reference_id").to_pylist()
    assert [r["reference_id"] for r in got] == [r for r in want if r in set(members)]
    chosen = everything[50:40:-1] + ["nope", everything[45]]  # order kept, unknown and repeated ids dropped
    sel = api.handle("select", {"dataset": "d", "refs": chosen})["sel"]
    total, got = pages(api, {"dataset": "d", "sel": sel, "q": "width >= 0"}, 4)
    assert [r["reference_id"] for r in got] == everything[50:40:-1]
    api.handle("save_slice", {"dataset": "d", "name": "saved", "mode": "static", "q": "annotations.count >= 2",
                              "order": "width DESC"})
    saved = ds.get_slice("saved").reference_ids()  # a slice keeps its members, in item order
    assert sorted(saved) == sorted(ds.query("annotations.count >= 2").column("reference_id").to_pylist())
    assert len(saved) == len(set(saved)) > 0


def test_page_boxes_are_the_item_objects(world):
    ws, ds, run, api = world
    r = api.handle("items", {"dataset": "d", "run": "r", "q": "annotations.count >= 1", "limit": 25})
    status = {(p["reference_id"], p["source"], p["annotation_id"]): p["status"]
              for p in run.patches(pairs=False).to_pylist()}
    gt = ds.annotations().to_pylist()
    pred = run.predictions().to_pylist()
    for item in r["items"]:
        ref = item["reference_id"]
        objs = r["objects"][ref]
        assert [o["annotation_id"] for o in objs if o["source"] == "gt"] == \
            [o["annotation_id"] for o in gt if o["reference_id"] == ref]
        assert [o["annotation_id"] for o in objs if o["source"] == "prediction"] == \
            [o["annotation_id"] for o in pred if o["reference_id"] == ref]
        assert all(o["status"] == status[(ref, o["source"], o["annotation_id"])] for o in objs)
        assert objs == api.handle("item", {"dataset": "d", "run": "r", "ref": ref})["objects"]


def box(ds, ref, ann):
    rows = [o for o in ds.annotations().to_pylist() if o["reference_id"] == ref and o["annotation_id"] == ann]
    return (rows[0]["label"], rows[0]["x"], rows[0]["width"]) if rows else None


def test_undo_is_a_stack_of_fixes(world):
    ws, ds, run, api = world
    ref = next(r["reference_id"] for r in ds.annotations().to_pylist() if r["annotation_id"] == "g0")
    s0 = box(ds, ref, "g0")
    fix = lambda **kw: api.handle("fix", {"dataset": "d", "ref": ref, **kw})  # noqa: E731
    fix(action="change", annotation_id="g0", label="bus")
    s1 = box(ds, ref, "g0")
    fix(action="change", annotation_id="g0", x=5, y=5, width=30, height=30)
    s2 = box(ds, ref, "g0")
    fix(action="add", label="car", annotation_id="new1", x=1, y=1, width=9, height=9)
    fix(action="delete", annotation_id="g0")
    assert box(ds, ref, "g0") is None and box(ds, ref, "new1") == ("car", 1, 9)
    # each undo reverts the latest fix still in effect and restores the state before it
    r = api.handle("undo", {"dataset": "d"})
    assert box(ds, ref, "g0") == s2 and r["can_undo"] >= 3
    api.handle("undo", {"dataset": "d"})
    assert box(ds, ref, "new1") is None and box(ds, ref, "g0") == s2
    api.handle("undo", {"dataset": "d", "ref": ref, "annotation_id": "g0"})
    assert box(ds, ref, "g0") == s1
    r = api.handle("undo", {"dataset": "d", "ref": ref})
    assert box(ds, ref, "g0") == s0 and r["can_undo"] == 0
    with pytest.raises(ApiError, match="nothing to undo on"):
        api.handle("undo", {"dataset": "d", "ref": ref})
    # history is kept: 4 fixes and 4 undos, each undo naming the version it reverted
    vs = ds.label_versions().to_pylist()[-8:]
    assert [v["operation"] for v in vs] == ["correct", "correct", "add_missing", "delete"] + ["undo"] * 4
    assert [v["reason"].split(":")[0] for v in vs[4:]] == [f"undo of label version {vs[k]['version']}"
                                                           for k in (3, 2, 1, 0)]


def test_undo_of_an_undo_puts_the_fix_back_on_the_stack(world):
    ws, ds, run, api = world
    ref = ds.items().column("reference_id")[3].as_py()
    fix = lambda **kw: api.handle("fix", {"dataset": "d", "ref": ref, **kw})  # noqa: E731
    v1 = fix(action="add", label="car", annotation_id="u1", x=1, y=1, width=9, height=9)["label_version"]
    u = api.handle("undo", {"dataset": "d", "ref": ref})["label_version"]
    assert box(ds, ref, "u1") is None
    api.handle("undo", {"dataset": "d", "version": u})  # redo by undoing the undo
    assert box(ds, ref, "u1") == ("car", 1, 9)
    r = api.handle("undo", {"dataset": "d", "ref": ref})
    assert r["result"]["undone"] == v1 and box(ds, ref, "u1") is None
    # an explicit version whose fix was changed again later is still refused
    fix(action="add", label="car", annotation_id="u2", x=1, y=1, width=9, height=9)
    v3 = ds.label_version
    fix(action="change", annotation_id="u2", label="bus")
    with pytest.raises(ApiError, match="undo the later versions first"):
        api.handle("undo", {"dataset": "d", "version": v3})
    with pytest.raises(ApiError, match="needs its item"):
        api.handle("undo", {"dataset": "d", "annotation_id": "u2"})
