"""Queries a run cannot read, as a user meets them (issue 34): the ``warnings`` part of ``python -m benchmarks search``.

On the demo's index (GPLDAN on English emoji names, MiniLM text side) and on an index of the
``dual/emoji-zh`` run (TF-IDF character n-grams of Chinese emoji names), each query goes through
``xmodal search`` (the warning line on stderr), ``xmodal search --json`` (its ``"warning"`` field)
and the search page in headless Debian Chromium (the yellow box, captured as a screenshot in
``benchmarks/results/search/``). Expected: ``狗`` ("dog") and ``qwxzv blorf`` are flagged on the
English run, ``a dog`` is not, and ``狗`` on the Chinese TF-IDF run is not.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks.plan import REPO
from benchmarks.serving import CHROMIUM, CHROMIUM_ARGS, XMODAL, Server

SHOTS = REPO / "benchmarks" / "results" / "search"
CASES = [("demo", "狗"), ("demo", "qwxzv blorf"), ("demo", "a dog"), ("emoji-zh", "狗")]


def cli(index: Path, query: str) -> dict:
    plain = subprocess.run([*XMODAL, "search", str(index), "--text", query, "-k", "5"], capture_output=True,
                           text=True, check=True)
    as_json = json.loads(subprocess.run([*XMODAL, "search", str(index), "--text", query, "-k", "5", "--json"],
                                        capture_output=True, text=True, check=True).stdout)
    stderr = [line for line in plain.stderr.splitlines() if "hardly read" in line]
    return {"stderr_warning": stderr[0] if stderr else None, "json_warning": as_json.get("warning"),
            "top": [hit["id"] for hit in as_json["hits"]][:3]}


def page_shots(index: Path, queries: list[str], name: str) -> dict[str, dict]:
    """Each query typed into the page: whether the warning box shows, and a screenshot of it."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        raise RuntimeError("the warnings part needs Debian's chromium (make browser)")
    server = Server(index)
    found: dict[str, dict] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('status').textContent.length > 0")
            for number, query in enumerate(queries):
                page.fill("#text", query)
                page.click("#go")
                page.wait_for_function("document.querySelectorAll('.hit img').length > 0 && "
                                       "!document.getElementById('go').disabled")
                page.wait_for_timeout(300)
                shown = page.locator("#warning").is_visible()
                shot = SHOTS / f"warning-{name}-{number}.png"
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot))
                Image.open(shot).quantize(256).save(shot, optimize=True)
                found[query] = {"page_warning": page.locator("#warning").text_content() if shown else None,
                                "screenshot": str(shot.relative_to(REPO))}
            browser.close()
    finally:
        server.stop()
    return found


def part_warnings(out: Path, demo: Path, zh_index: Path) -> dict:
    indexes = {"demo": demo / "index", "emoji-zh": zh_index}
    rows = []
    for name, index in indexes.items():
        queries = [query for where, query in CASES if where == name]
        page = page_shots(index, queries, name)
        rows += [{"index": name, "query": query} | cli(index, query) | page[query] for query in queries]
    return {"rows": rows}


def report(figures: dict) -> list[str]:
    lines = ["", "## Queries the run cannot read (issue 34)", "",
             "`demo`: the demo's index (GPLDAN on English emoji names, MiniLM text side, emoji test split); "
             "`emoji-zh`: an index of the `dual/emoji-zh` run (TF-IDF character n-grams of CLDR's Chinese emoji "
             "names) over the same images. Each query through `xmodal search` (stderr), `--json` and the page "
             "(headless Chromium; screenshot linked). Top 3: the first three ids `--json` returned.", "",
             "| index | query | CLI warning (stderr) | `--json` warning | page | top 3 |", "| --- " * 6 + "|"]
    for row in figures["rows"]:
        shot = Path(row["screenshot"]).relative_to("benchmarks/results")
        lines.append(f"| {row['index']} | `{row['query']}` | {_said(row['stderr_warning'])} | "
                     f"{_said(row['json_warning'])} | [{_said(row['page_warning'])}]({shot}) | "
                     f"{', '.join(row['top'])} |")
    first = next((row for row in figures["rows"] if row["json_warning"]), None)
    if first:
        lines += ["", f"The warning, as `--json` gives it for `{first['query']}`: \"{first['json_warning']}\""]
    return lines + WARNINGS_READING


# The reading of the run of 2026-12-06; rewrite it with the figures when the part is run again.
WARNINGS_READING = [
    "", "Reading: the two queries the English run cannot read are flagged in all three places and `a dog` is not. "
    "The first run of this part also flagged `狗` on the Chinese TF-IDF run: the check counted only character "
    "n-grams, and the capped character part (2,048 columns) had kept none of `狗`'s, though `狗` is a column of the "
    "word part (a keyword of several emoji). It now takes whichever part reads more of the query, and passes. "
    "Reading the word is not finding the dog: the emoji test split holds two emoji with 狗 in their names (热狗 hot "
    "dog, 服务犬 service dog, keyword 狗), and neither is in this run's top 3 (a cloud, a comet, sake); `dual` on "
    "emoji-zh is weaker than on English (RESULTS.md).",
]


def _said(text: str | None) -> str:
    return "yes" if text else "no"
