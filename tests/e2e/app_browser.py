"""Shared pieces of the App's browser tests: Debian's Chromium driven by Playwright, pixel helpers.

Outside CI a missing Chromium or Playwright skips with the reason; with ``CI=true`` it FAILS (the
browser tests must run in CI; ``.ci/run`` installs both).
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def new_page(browser, url: str, width: int = 1400, height: int = 900):
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the App's CSP forbids; the
    # escaping tests are then stricter (an injected inline script WOULD run without the CSP)
    page = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # HTTP 4xx answers the test provokes (a bad query) are logged by the browser too: not page errors
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.js_errors = errors
    return page


def shot(page, name: str, tmp: Path, locator=None) -> Path:
    """Screenshot into ``tmp`` (and docs/img when LOUPE_DOCS_SCREENSHOTS=1)."""
    target = tmp / f"{name}.png"
    (locator or page).screenshot(path=str(target))
    if os.environ.get("LOUPE_DOCS_SCREENSHOTS") == "1":
        from PIL import Image

        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        im = Image.open(target).convert("RGB")
        im.thumbnail((900, 900))
        im.quantize(colors=64).save(DOCS_IMG / f"app-{name}.png", optimize=True)
    return target


def pixels(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


def near(rgb: tuple, hex_color: str, tol: int = 60) -> bool:
    want = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return sum(abs(a - b) for a, b in zip(rgb, want)) <= tol


def edge_hits(im, x0: float, y0: float, x1: float, y1: float, color: str, n: int = 12, reach: int = 2) -> float:
    """Fraction of points sampled along the box's top and left edges that show ``color`` (within ``reach`` px)."""
    pts = [(x0 + (x1 - x0) * (k + 0.5) / n, y0) for k in range(n)] + [(x0, y0 + (y1 - y0) * (k + 0.5) / n) for k in range(n)]
    hits = 0
    for x, y in pts:
        found = False
        for dx in range(-reach, reach + 1):
            for dy in range(-reach, reach + 1):
                xi, yi = int(round(x + dx)), int(round(y + dy))
                if 0 <= xi < im.width and 0 <= yi < im.height and near(im.getpixel((xi, yi)), color):
                    found = True
        hits += found
    return hits / len(pts)
