"""The search page in a real browser: headless Debian Chromium driven by Playwright (no browser download).

Loads the page from a local server, runs a text query, opens the first result's attention view and
checks the screenshot shows a drawn heat map. Skips when Chromium or Playwright is missing.
"""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from benchmarks.serving import CHROMIUM, CHROMIUM_ARGS, free_port
from test_feature_store import home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401  (the fixture: trained dual and JGCAR runs)
from xmodal.cli import main
from xmodal.search.engine import SearchEngine
from xmodal.search.service import create_app


@contextmanager
def serving(index: Path) -> Iterator[str]:
    """``xmodal serve``'s app for ``index`` on a free local port, in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(create_app(SearchEngine.open(index)), host="127.0.0.1", port=port,
                                             log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    assert instance.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@contextmanager
def browser_page() -> Iterator[tuple]:
    """(browser, page, page errors) of headless Chromium; skips when Chromium or Playwright is missing."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield browser, page, errors
        finally:
            browser.close()


@pytest.fixture
def server(trained, tmp_path):  # noqa: F811
    index = tmp_path / "index"
    assert main(["index", "build", str(trained["jgcar"]), "--collection", "split:test", "--out", str(index)]) == 0
    with serving(index) as url:
        yield url


@pytest.mark.slow
def test_page_runs_a_query_and_draws_the_attention(server, tmp_path):
    with browser_page() as (_, page, errors):
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('jgcar')")
        page.fill("#text", "colour number 4")
        page.click("#go")
        page.wait_for_selector(".hit img")
        hits = page.locator(".hit")
        assert hits.count() == 8  # every test image, best first (the page asks for 20)
        hits.first.click()
        page.wait_for_selector("canvas.heat[data-drawn='1']", timeout=20_000)
        assert page.locator(".words span").count() >= 3  # the query's words, shaded by weight
        shot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        heat = page.locator("canvas.heat").first.screenshot()
        assert page.locator("#warning").is_hidden()  # a query the run reads: no warning
        page.fill("#text", "qwxzv blorf")
        page.click("#go")
        page.wait_for_selector("#warning:not([hidden])")
        assert "can hardly read the query" in page.locator("#warning").text_content()
    assert not errors, errors
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank page
    canvas = np.asarray(Image.open(io.BytesIO(heat)).convert("RGB"), dtype=np.int16)
    assert (canvas[..., 0] - canvas[..., 1]).max() > 40  # the red heat map is drawn over the thumbnail
