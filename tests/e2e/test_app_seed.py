"""The seed walk in a real browser: PennFudan with the HOG run, through the Loupe App.

Open the App, type a query with a typo and read the inline error, filter crowded scenes, open the
patches sorted by worst IoU, open an item, accept a false positive as a missing pedestrian,
re-commit, see AP change, undo. Pixel checks make sure boxes are drawn OVER the image.
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import shared_path
from tests.e2e.app_browser import browser, edge_hits, new_page, pixels, shot  # noqa: F401 (fixture)

pytest.importorskip("cv2", reason="the HOG run needs opencv (loupe[hog], in the dev extra)")


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    import engine
    from engine.detectors.hog import run_hog

    root = shared_path("PennFudanPed")
    tmp = tmp_path_factory.mktemp("app_seed")
    ws = engine.connect(str(tmp / "pf.duckdb"))
    ws.import_pennfudan(root, "pennfudan")
    ds = ws.get_dataset("pennfudan")
    crowded = ds.query("annotations.pedestrian >= 4").column("reference_id").to_pylist()
    refs = sorted(crowded)[:16] + sorted(ds.items().column("reference_id").to_pylist())[:8]  # keep HOG short
    run, _ = run_hog(ds, "hog", reference_ids=sorted(set(refs)))
    run.commit()
    app = engine.launch_app(ws)
    yield {"ws": ws, "ds": ds, "run": run, "app": app, "tmp": tmp, "crowded": len(crowded)}
    app.stop()
    ws.close()


def _box_on_screen(page, selector: str, obj: dict, item: dict) -> tuple[float, float, float, float]:
    r = page.locator(selector).bounding_box()
    s = r["width"] / item["width"]
    return (r["x"] + obj["x"] * s, r["y"] + obj["y"] * s, r["x"] + (obj["x"] + obj["width"]) * s,
            r["y"] + (obj["y"] + obj["height"]) * s)


def test_seed_walk(browser, seed):  # noqa: F811 (pytest fixture)
    tmp, ds = seed["tmp"], seed["ds"]
    page = new_page(browser, seed["app"].url)
    assert page.locator("#dataset").input_value() == "pennfudan"
    assert page.locator("#run").input_value() == "hog"
    page.wait_for_function("document.querySelectorAll('#grid .cell').length > 0")
    assert page.locator("#page-info").inner_text().endswith("of 170")

    # a typo: the DSL's own message, with a caret under the bad name
    page.fill("#q", "anotations.pedestrian >= 4")
    page.press("#q", "Enter")
    page.wait_for_selector("#q-error:not([hidden])")
    assert "unknown field" in page.inner_text("#q-error-msg")
    assert page.inner_text("#q-error-src") == "anotations.pedestrian >= 4"
    assert re.fullmatch(r"\^+", page.inner_text("#q-error-caret").strip())
    assert page.inner_text("#q-error-hint").startswith("did you mean: annotations.")
    shot(page, "query-error", tmp, page.locator("header + div + div + section, #view-grid").first)

    # completion from the catalog
    page.fill("#q", "")
    page.type("#q", "annotations.pe")
    page.wait_for_selector("#completions:not([hidden]) li")
    assert "annotations.pedestrian" in page.inner_text("#completions")
    page.press("#q", "Tab")
    assert page.input_value("#q") == "annotations.pedestrian"

    # crowded scenes: the grid shows exactly what ds.query returns
    page.type("#q", " >= 4")
    page.press("#q", "Enter")
    page.wait_for_function(f"document.getElementById('page-info').textContent.endsWith('of {seed['crowded']}')")
    assert page.locator("#q-error").is_hidden()
    first = page.locator("#grid .cell").first.get_attribute("data-ref")
    assert first == sorted(ds.query("annotations.pedestrian >= 4").column("reference_id").to_pylist())[0]

    # pixels: the GT boxes are drawn over the thumbnail of the first cell
    page.wait_for_function("(() => { const c = document.querySelector('#grid canvas'); return c && c._img && c._img.complete && c.width !== 200; })()")
    page.wait_for_timeout(200)
    shot(page, "grid", tmp)
    item = ds.query(f'reference_id = "{first}"').to_pylist()[0]
    gts = [o for o in ds.annotations().to_pylist() if o["reference_id"] == first]
    canvas = page.locator("#grid canvas").first
    im = pixels(canvas.screenshot())
    s = im.width / item["width"]
    objs = page.evaluate(f"S.objects[{first!r}]")
    colours = {"tp": "#2ca02c", "fn": "#ff7f0e", "fp": "#d62728", "ignored": "#999999"}
    gt_objs = [o for o in objs if o["source"] == "gt"]
    assert len(gt_objs) == len(gts) >= 4
    best = max(edge_hits(im, o["x"] * s, o["y"] * s, (o["x"] + o["width"]) * s, (o["y"] + o["height"]) * s,
                         colours[o["status"]]) for o in gt_objs)
    assert best >= 0.8, "no GT box edge found over the thumbnail where the data puts it"

    # patches sorted by worst IoU (ascending): IoU never decreases down the page
    page.click("#tabs button[data-tab=patches]")
    page.wait_for_selector("#patches .patch")
    ious = [float(m.group(1)) for m in re.finditer(r"IoU ([0-9.]+)", page.inner_text("#patches"))]
    assert len(ious) >= 5 and ious == sorted(ious)
    shot(page, "patches", tmp)
    # the false positives, most confident first
    page.select_option("#p-status", "fp")
    page.select_option("#p-sort", "confidence")
    page.check("#p-desc")
    page.wait_for_function("""(() => { const ps = [...document.querySelectorAll('#patches .patch')];
        if (!ps.length || !ps.every(p => p.dataset.status === 'fp')) return false;
        const conf = ps.map(p => parseFloat((/conf ([0-9.]+)/.exec(p.textContent) || [0, "NaN"])[1]));
        return conf.every((c, i) => i === 0 || c <= conf[i - 1]); })()""")
    patch = page.locator("#patches .patch").first
    fp_ref = patch.get_attribute("data-ref")

    # open the item: the selected FP box sits on the image
    patch.click()
    page.wait_for_selector("#item-view:not([hidden]) #act-accept")
    page.wait_for_function("document.getElementById('iv-img').complete && document.getElementById('iv-img').naturalWidth > 0")
    page.wait_for_timeout(200)
    assert page.inner_text("#iv-title") == fp_ref
    sel = page.evaluate("S.item.objects.find(o => (o.source + ':' + o.annotation_id) === S.selected)")
    assert sel["status"] == "fp"
    it = page.evaluate("S.item.item")
    x0, y0, x1, y1 = _box_on_screen(page, "#iv-img", sel, it)
    img_box = page.locator("#iv-img").bounding_box()
    assert img_box["x"] - 1 <= x0 and x1 <= img_box["x"] + img_box["width"] + 1
    full = pixels(page.screenshot())
    assert edge_hits(full, x0, y0, x1, y1, "#d62728") >= 0.8, "the FP box is not drawn over the image"
    shot(page, "item", tmp)

    # keyboard navigation leaves and comes back
    page.keyboard.press("Escape")
    assert page.locator("#item-view").is_hidden()
    page.click("#tabs button[data-tab=grid]")
    page.locator("#grid .cell").nth(1).click()
    page.wait_for_selector("#item-view:not([hidden])")
    second = page.inner_text("#iv-title")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.getElementById('iv-title').textContent !== {second!r}")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"document.getElementById('iv-title').textContent === {second!r}")
    page.keyboard.press("Escape")

    # accept the FP as a missing pedestrian, re-commit, see AP change
    ap0 = seed["run"].metrics()["stats"]["AP"]
    n_gt0 = ds.annotations().num_rows
    v0 = ds.label_version
    page.click("#tabs button[data-tab=patches]")
    page.locator(f"#patches .patch[data-ref='{fp_ref}']").first.click()
    page.click("#act-accept")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v0 + 1}'")
    assert ds.annotations().num_rows == n_gt0 + 1
    hist = ds.label_versions().to_pylist()[-1]
    assert hist["added"] == 1 and "missing ground truth" in hist["reason"]
    page.click("#commit")
    page.wait_for_selector("#commit-result:not([hidden]) #commit-table tr[data-when=after]")
    before = float(page.inner_text("#commit-table tr[data-when=before] td[data-stat=AP]"))
    after = float(page.inner_text("#commit-table tr[data-when=after] td[data-stat=AP]"))
    assert abs(before - ap0) < 1e-3 and after != before
    assert abs(after - seed["run"].metrics()["stats"]["AP"]) < 1e-3
    shot(page, "commit", tmp)

    # undo, re-commit: back to the original labels and AP
    page.click("#undo")
    page.wait_for_function(f"document.getElementById('labels-state').textContent === 'labels v{v0 + 2}'")
    assert ds.annotations().num_rows == n_gt0
    page.click("#commit")
    page.wait_for_function(f"(() => {{ const c = document.querySelector('#commit-table tr[data-when=after] td[data-stat=AP]'); "
                           f"return c && Math.abs(parseFloat(c.textContent) - {ap0}) < 1e-3; }})()")
    assert page.js_errors == []
