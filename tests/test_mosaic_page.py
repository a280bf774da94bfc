"""Heat maps that mean something (issue 29): SCAN trained by ``xmodal demo`` on mosaics of one-colour
squares, each caption naming the colour only its tile shows. The engine's attention for a colour
query lands on that tile of the first result, the search page draws its hottest cell there, and the
demo report shows the heat maps. Screenshots go to ``$XMODAL_SCREENSHOTS`` when it is set.

Real encoders (EfficientNet-Lite0 at 128 px, GloVe words), trained on one thread so the run is the
same on every machine.
"""

from __future__ import annotations

import io
import os
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from test_mosaic import COLOURS
from test_scan import COLOUR_MOSAIC_SCAN, colour_mosaics, one_thread
from test_search_browser import browser_page, serving
from xmodal.api import load_run
from xmodal.demo import run_demo
from xmodal.eval.attention import cell_centres, inside, point, region_distribution
from xmodal.search.engine import SearchEngine

CANVAS = 256  # the page draws every heat map on a 256 x 256 canvas


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour-mosaic")
    config = folder / "scan-colour-mosaic.yaml"
    config.write_text(yaml.safe_dump(COLOUR_MOSAIC_SCAN))
    with one_thread():
        result = run_demo(folder / "run", source=colour_mosaics(folder / "colours"), config_path=config, queries=3)
    return result


def region_map(attention):
    return next(m for m in attention.maps.values() if "region" in m.grids)


def colour_outcomes(demo) -> dict[str, dict]:
    """Per colour query: the first result, the described tile's box in it (None when the result has no
    tile of that colour) and whether the attention's hottest cell lies in that box."""
    engine = SearchEngine.open(demo.index)
    items = {item.id: item for item in load_run(demo.report.parent).dataset.items}
    outcomes = {}
    for colour in COLOURS:
        query = f"a {colour} square"
        top = engine.search_text(query, k=1)[0]
        item = items[top.id]
        box = tuple(item.text_boxes[item.texts.index(query)]) if query in item.texts else None
        outcome = {"query": query, "item": top.id, "box": box, "hit": False}
        if box is not None:
            attention = region_map(engine.explain(top.id, text=query))
            outcome["hit"], outcome["mass"], _ = point(region_distribution(attention), attention.grids["region"], box)
            outcome["grid"] = attention.grids["region"]
        outcomes[colour] = outcome
    return outcomes


@pytest.mark.slow
def test_a_colour_query_s_heat_map_lands_on_the_tile_that_shows_it(demo):
    outcomes = colour_outcomes(demo)
    found = [o for o in outcomes.values() if o["box"] is not None]
    hits = [o for o in found if o["hit"]]
    # Every first result shows the colour asked for; the hottest cell of the attention (the mean of
    # the query's word maps) is in that colour's tile for most: chance is 1 in 4 tiles. Seen: 7 of 8.
    assert len(found) == len(COLOURS), outcomes
    assert len(hits) >= 5, outcomes


def heat_per_cell(drawn: np.ndarray, original: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The overlay's opacity per cell, read back from the drawn canvas: drawn = (1 - a) original + a red,
    solved for a by least squares over the middle half of each cell (edges blur in the scaling)."""
    rows, cols = grid
    red = np.array([255.0, 0.0, 0.0])
    alpha = np.zeros(rows * cols)
    for r in range(rows):
        for c in range(cols):
            h, w = CANVAS // rows, CANVAS // cols
            window = (slice(r * h + h // 4, (r + 1) * h - h // 4), slice(c * w + w // 4, (c + 1) * w - w // 4))
            toward = (red - original[window]).reshape(-1, 3)
            moved = (drawn[window] - original[window]).reshape(-1, 3)
            alpha[r * cols + c] = (toward * moved).sum() / max((toward * toward).sum(), 1e-9)
    return alpha


@pytest.fixture
def server(demo):
    with serving(demo.index) as url:
        yield url


@pytest.mark.slow
def test_the_page_and_the_report_show_the_heat_map_on_the_described_tile(demo, server, tmp_path):
    # the first colour whose tile the attention finds, red and orange aside: red drawn over them would not show
    shown = next(o for colour, o in colour_outcomes(demo).items() if o["hit"] and colour not in ("red", "orange"))
    with browser_page() as (browser, page, errors):
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('scan')")
        page.fill("#text", shown["query"])
        page.click("#go")
        page.wait_for_selector(".hit img")
        page.locator(".hit").first.click()
        page.wait_for_selector("canvas.heat[data-drawn='1']", timeout=20_000)
        page.screenshot(path=str(tmp_path / "search-page-mosaic-heat-map.png"),
                        clip={"x": 0, "y": 0, "width": 1200, "height": 500})
        drawn = page.locator("canvas.heat").first.screenshot()
        report = browser.new_page(viewport={"width": 1200, "height": 900})
        report.goto(demo.report.resolve().as_uri())
        heat_maps = report.locator("img[alt^='attention over the regions']")
        assert heat_maps.count() >= 1  # one per example text query's first result
        below = report.locator("h2", has_text="Image → texts").bounding_box()  # the report down to its heat maps
        report.screenshot(path=str(tmp_path / "demo-report-mosaic-heat-map.png"), full_page=True,
                          clip={"x": 0, "y": 0, "width": 1200, "height": below["y"]})
    assert not errors, errors
    thumbnail = urllib.request.urlopen(f"{server}/thumbnails/{urllib.parse.quote(shown['item'])}").read()
    original = np.asarray(Image.open(io.BytesIO(thumbnail)).convert("RGB").resize((CANVAS, CANVAS), Image.BILINEAR),
                          dtype=np.float64)
    canvas = np.asarray(Image.open(io.BytesIO(drawn)).convert("RGB").resize((CANVAS, CANVAS)), dtype=np.float64)
    alpha = heat_per_cell(canvas, original, shown["grid"])
    hottest = int(alpha.argmax())
    assert alpha.max() > 0.4  # the hottest cell is drawn at 0.65 opacity
    assert bool(inside(cell_centres(*shown["grid"]), shown["box"])[hottest]), (shown, alpha.round(2))
    if os.environ.get("XMODAL_SCREENSHOTS"):
        keep = Path(os.environ["XMODAL_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("search-page-mosaic-heat-map.png", "demo-report-mosaic-heat-map.png"):
            Image.open(tmp_path / name).quantize(256).save(keep / name, optimize=True)  # a fifth of the bytes
