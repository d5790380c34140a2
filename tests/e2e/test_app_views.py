"""The App's other views in a real browser on the synthetic street set: escaping of hostile labels and
metadata, label fixes with handles (delete, relabel, move/resize) and undo, insights bars that filter
the grid, metrics of two runs side by side, saving slices."""
from __future__ import annotations

import pyarrow as pa
import pytest

from tests.e2e.app_browser import browser, new_page, shot  # noqa: F401 (fixture)

XSS_LABEL = '<img src=x onerror="window.__xss=1">'


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    import engine
    from engine.cli.demo import build_demo

    tmp = tmp_path_factory.mktemp("app_street")
    ws, ds, run = build_demo(tmp / "data", 12, str(tmp / "w.duckdb"))
    run.commit()
    preds = run.predictions()
    model = ws.add_model("half", "half")
    keep = pa.array([i % 2 == 0 for i in range(preds.num_rows)])
    run_b = model.create_run("half", ds, preds.filter(keep).drop_columns(["polygon", "mask", "keypoints", "keypoint_names", "class_pdf", "area"]))
    run_b.commit()
    ref0 = ds.items().column("reference_id")[0].as_py()
    ds.update_item_metadata({ref0: {"note": "<script>window.__xss=2</script>"}})
    ds.annotate([engine.BoxAnnotation(XSS_LABEL, ref0, x=5, y=5, width=40, height=60, annotation_id="x1")])
    app = engine.launch_app(ws)
    yield {"ws": ws, "ds": ds, "run": run, "app": app, "tmp": tmp, "ref0": ref0}
    app.stop()
    ws.close()


def test_hostile_text_is_shown_not_run(browser, street):  # noqa: F811
    page = new_page(browser, street["app"].url)
    page.select_option("#run", "simulated")
    page.fill("#q", f'reference_id = "{street["ref0"]}"')
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelectorAll('#grid .cell').length === 1")
    page.check("#show-labels")
    page.locator("#grid .cell").first.click()
    page.wait_for_selector("#item-view:not([hidden]) #iv-objects tbody tr")
    assert XSS_LABEL in page.inner_text("#iv-objects")
    assert "<script>window.__xss=2</script>" in page.inner_text("#iv-meta")
    page.click("#tabs button[data-tab=insights]")
    page.wait_for_selector("#insights .chart")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#item-view img[src=x], #insights img, #grid img").count() == 0
    assert page.js_errors == []


def test_label_fixes_with_handles_and_undo(browser, street):  # noqa: F811
    ds = street["ds"]
    page = new_page(browser, street["app"].url)
    dims = {r["reference_id"]: r for r in ds.items().to_pylist()}
    gt = [o for o in ds.annotations().to_pylist() if o["label"] == "pedestrian" and o["x"] > 10
          and o["x"] + o["width"] < dims[o["reference_id"]]["width"] - 60
          and o["y"] + o["height"] < dims[o["reference_id"]]["height"] - 60][0]
    page.fill("#q", f'reference_id = "{gt["reference_id"]}"')
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelectorAll('#grid .cell').length === 1")
    page.locator("#grid .cell").first.click()
    page.wait_for_selector("#item-view:not([hidden])")
    page.wait_for_function("document.getElementById('iv-img').complete")
    page.click(f"#iv-objects tr[data-key='gt:{gt['annotation_id']}']")
    # relabel
    v0 = ds.label_version
    page.fill("#act-label", "cyclist")
    page.click("#act-relabel")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v0 + 1}'")
    page.wait_for_function("(() => { const r = document.querySelector('#iv-objects tr.sel'); return r && r.textContent.includes('cyclist'); })()")
    now = {o["annotation_id"]: o for o in ds.annotations().to_pylist() if o["reference_id"] == gt["reference_id"]}
    assert now[gt["annotation_id"]]["label"] == "cyclist"
    # move / resize: drag the south-east handle 30 screen px right and down
    page.click("#act-edit")
    h = page.locator("#iv-svg rect.handle[data-corner=se]").bounding_box()
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(h["x"] + 30, h["y"] + 30, steps=5)
    page.mouse.up()
    shot(page, "edit-box", street["tmp"])
    v = ds.label_version
    page.click("#act-save-box")
    try:
        page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v + 1}'", timeout=10_000)
    except Exception:
        raise AssertionError(f"box not saved (v={v}); the App said: " + page.inner_text("#toast")
                             + " / " + page.inner_text("#labels-state")) from None
    after = {o["annotation_id"]: o for o in ds.annotations().to_pylist() if o["reference_id"] == gt["reference_id"]}[gt["annotation_id"]]
    assert after["width"] > gt["width"] + 5 and after["height"] > gt["height"] + 5
    assert abs(after["x"] - gt["x"]) < 1 and abs(after["y"] - gt["y"]) < 1
    # delete, then undo: the object is back with its corrected label and box
    page.click(f"#iv-objects tr[data-key='gt:{gt['annotation_id']}']")
    page.click("#act-delete")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v + 2}'")
    assert gt["annotation_id"] not in {o["annotation_id"] for o in ds.annotations().to_pylist() if o["reference_id"] == gt["reference_id"]}
    page.click("#undo")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v + 3}'")
    back = {o["annotation_id"]: o for o in ds.annotations().to_pylist() if o["reference_id"] == gt["reference_id"]}[gt["annotation_id"]]
    assert (back["label"], back["x"], back["width"]) == ("cyclist", after["x"], after["width"])
    assert ds.annotation_history(gt["annotation_id"], reference_id=gt["reference_id"]).num_rows >= 4
    # undo is a stack: again, the box is back where it was; again, the label too
    page.click("#undo")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v + 4}'")
    back = {o["annotation_id"]: o for o in ds.annotations().to_pylist() if o["reference_id"] == gt["reference_id"]}[gt["annotation_id"]]
    assert (back["label"], back["x"], back["width"], back["height"]) == ("cyclist", gt["x"], gt["width"], gt["height"])
    page.click("#undo")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v + 5}'")
    back = {o["annotation_id"]: o for o in ds.annotations().to_pylist() if o["reference_id"] == gt["reference_id"]}[gt["annotation_id"]]
    assert (back["label"], back["x"], back["width"]) == (gt["label"], gt["x"], gt["width"])


def test_insights_metrics_and_slices(browser, street):  # noqa: F811
    ds = street["ds"]
    page = new_page(browser, street["app"].url)
    page.select_option("#run", "simulated")
    page.click("#tabs button[data-tab=insights]")
    page.wait_for_selector("#insights .chart")
    shot(page, "insights", street["tmp"])
    # a click on a metadata bar filters the grid with the matching query
    bar = page.locator("#insights .chart", has_text="metadata.camera").locator("g.bar").first
    bar.click()
    page.wait_for_selector("#view-grid:not([hidden])")
    q = page.input_value("#q")
    assert q.startswith("metadata.camera = ")
    n = ds.query(q).num_rows
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {n}')")
    # save the query as a dynamic slice, then the selection as a static one
    page.fill("#slice-name", "cam")
    page.click("#save-slice")
    page.wait_for_function("[...document.querySelectorAll('#slice option')].some(o => o.value === 'cam')")
    page.fill("#slice-name", "cam-static")
    page.select_option("#slice-mode", "static")
    page.click("#save-slice")
    page.wait_for_function("[...document.querySelectorAll('#slice option')].some(o => o.value === 'cam-static')")
    sl = {r["name"]: r for r in ds.slices().to_pylist()}
    assert sl["cam"]["query"] == q and sl["cam-static"]["query"] is None and len(ds.get_slice("cam-static")) == n
    # metrics: two runs side by side, per slice
    page.click("#tabs button[data-tab=metrics]")
    page.select_option("#m-run-a", "simulated")
    page.select_option("#m-run-b", "half")
    page.wait_for_selector("#m-stats tr[data-stat=AP] td:nth-child(3)")
    ws = street["ws"]
    ap_a = ws.get_run("simulated").metrics()["stats"]["AP"]
    ap_b = ws.get_run("half").metrics()["stats"]["AP"]
    cells = page.locator("#m-stats tr[data-stat=AP] td").all_inner_texts()
    assert abs(float(cells[1]) - ap_a) < 1e-3 and abs(float(cells[2]) - ap_b) < 1e-3
    assert page.locator("#metrics svg path").count() >= 2  # PR curves
    shot(page, "metrics", street["tmp"])
    page.select_option("#m-slice", "cam")
    page.wait_for_function(f"(() => {{ const c = document.querySelector('#m-stats tr[data-stat=AP] td:nth-child(2)'); "
                           f"return c && Math.abs(parseFloat(c.textContent) - {ws.get_run('simulated').metrics(slice='cam')['stats']['AP']}) < 1e-3; }})()")
    assert page.js_errors == []


def test_similarity_panel(browser, street):  # noqa: F811
    import numpy as np

    ds, app = street["ds"], street["app"]
    page = new_page(browser, app.url)
    assert page.locator("#tab-similarity").is_hidden()  # no embeddings yet
    refs = ds.items().column("reference_id").to_pylist()
    with app.api.lock:
        ds.add_embeddings("rand", (refs, np.random.default_rng(0).random((len(refs), 8), dtype=np.float32)))
        expect = ds.similar(refs[0], k=5, embeddings="rand").column("reference_id").to_pylist()
    page = new_page(browser, app.url)
    assert page.locator("#tab-similarity").is_visible()
    # find similar from the item view: the grid shows the neighbours, best first
    page.fill("#q", f'reference_id = "{refs[0]}"')
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelectorAll('#grid .cell').length === 1")
    page.locator("#grid .cell").first.click()
    page.wait_for_selector("#item-view:not([hidden]) #iv-similar:not([hidden])")
    page.click("#iv-similar")
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {len(refs) - 1}')")
    shown = page.locator("#grid .cell").evaluate_all("cs => cs.map(c => c.dataset.ref)")
    assert shown[:5] == expect[:5]
    # the 2-D map with a lasso around every point selects them all into the grid
    page.click("#tab-similarity")
    page.wait_for_selector("#s-map circle")
    assert page.locator("#s-map circle").count() == len(refs)
    b = page.locator("#s-map").bounding_box()
    page.mouse.move(b["x"] + 2, b["y"] + 2)
    page.mouse.down()
    for x, y in [(b["width"] - 2, 2), (b["width"] - 2, b["height"] - 2), (2, b["height"] - 2), (2, 4)]:
        page.mouse.move(b["x"] + x, b["y"] + y, steps=4)
    page.mouse.up()
    assert page.inner_text("#s-count") == f"{len(refs)} selected"
    shot(page, "similarity", street["tmp"])
    page.click("#s-show")
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {len(refs)}')")
    assert page.js_errors == []
