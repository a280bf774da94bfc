"""How long ``xmodal serve`` takes to answer its first query on the demo index, and what a run weighs (issue 28).

    OMP_NUM_THREADS=1 python -m benchmarks startup [--before OTHER_CHECKOUT/src] [--out DIR] [--fresh]

For this checkout's ``src`` (and, with ``--before``, another checkout's, measured in the same run):
``xmodal demo`` trains the demo run and its index with a private ``XMODAL_HOME`` (the emoji data is
unpacked there), then ``xmodal serve`` is started three ways and timed from the process start to the
first ``POST /search`` answered 200:

* ``in place``: the run where it was trained, its ``XMODAL_HOME`` warm;
* ``moved, empty cache``: the run and index copied to another folder, an empty ``XMODAL_HOME``
  (the training data still where the run says it is);
* ``moved, no data``: the same with the training data gone (the private home renamed away).

Writes ``benchmarks/results/startup.md`` with the sizes of the run folder, the index and the
exported ``.xmodal`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

from benchmarks.plan import REPO, SHARED
from benchmarks.serving import free_port, post_json
from xmodal.paths import folder_bytes

EMOJI = SHARED / "emoji"
WAYS = ("in place", "moved, empty cache", "moved, no data")


def environment(source: Path, home: Path) -> dict[str, str]:
    """A subprocess's environment: xmodal imported from ``source``, its home (data, caches) in ``home``."""
    return {**os.environ, "PYTHONPATH": str(source), "XMODAL_HOME": str(home)}


def xmodal(source: Path, home: Path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xmodal", *argv], env=environment(source, home), capture_output=True,
                          text=True, **kwargs)


def first_answer_seconds(source: Path, home: Path, index: Path, timeout: float = 1800) -> dict:
    """Seconds from starting ``xmodal serve`` to its first answered search (or how it failed)."""
    port = free_port()
    log = index.parent / f"serve-{port}.log"
    started = time.perf_counter()
    with open(log, "w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "xmodal", "serve", str(index), "--port", str(port)],
                                   env=environment(source, home), stdout=stream, stderr=subprocess.STDOUT)
    try:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                return {"failed": log.read_text()[-400:].strip().splitlines()[-1]}
            try:
                status, _ = post_json(f"http://127.0.0.1:{port}/search", {"text": "a red heart", "k": 10}, timeout=600)
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
                continue
            if status == 200:
                return {"seconds": time.perf_counter() - started}
            return {"failed": f"HTTP {status}"}
        return {"failed": f"no answer within {timeout:.0f} s"}
    finally:
        process.terminate()
        process.wait(timeout=60)


def measure(label: str, source: Path, out: Path, fresh: bool = False) -> dict:
    root = out / label
    if (root / "figures.json").is_file() and not fresh:
        return json.loads((root / "figures.json").read_text())
    home, demo = root / "home", root / "demo"
    if not (root / "demo.done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        done = xmodal(source, home, "demo", "--path", str(EMOJI), "--out", str(demo))
        if done.returncode != 0:
            raise RuntimeError(f"{label}: xmodal demo failed:\n{done.stderr[-2000:]}")
        (root / "demo.done").write_text("")
    figures: dict = {"run_bytes": folder_bytes(demo) - folder_bytes(demo / "index"),
                     "index_bytes": folder_bytes(demo / "index")}
    exported = root / "demo.xmodal"
    if xmodal(source, home, "export", str(demo), "-o", str(exported)).returncode == 0:
        figures["export_bytes"] = exported.stat().st_size
    moved = root / "moved"
    figures["in place"] = first_answer_seconds(source, home, demo / "index")
    for way in WAYS[1:]:
        shutil.rmtree(moved, ignore_errors=True)
        shutil.copytree(demo, moved / "demo", ignore=shutil.ignore_patterns("LOCK"))
        empty = root / "empty-home"
        shutil.rmtree(empty, ignore_errors=True)
        empty.mkdir()
        away = root / "home-away"
        if way == "moved, no data":
            home.rename(away)
        try:
            figures[way] = first_answer_seconds(source, empty, moved / "demo" / "index")
        finally:
            if away.exists():
                away.rename(home)
    figures["commit"] = commit_of(source)  # what was measured, kept with its figures
    print(label, json.dumps(figures), flush=True)
    (root / "figures.json").write_text(json.dumps(figures))
    return figures


def commit_of(source: Path) -> str:
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or source.parent.name


def write_report(results: dict[str, dict], path: Path) -> None:
    lines = ["# Start-up of `xmodal serve` on the demo index, and the size of a run", "",
             "Produced by `python -m benchmarks startup"
             + (" --before OTHER/src`" if len(results) > 1 else "`")
             + " on this project's 2-core CPU (torch 1 thread), shared with other jobs. Seconds from starting "
             "`xmodal serve RUN/index` to the first `POST /search` answered 200 (one text query); every version "
             "measured in the same run (each version's figures are kept in OUT and reused unless --fresh). "
             "`in place`: where the demo trained it, its cache warm; `moved, empty "
             "cache`: run and index copied to another folder, an empty `XMODAL_HOME`; `moved, no data`: the same "
             "with the training data gone.", "",
             "| code | " + " | ".join(WAYS) + " | run folder MB | index MB | .xmodal MB |",
             "| --- | " + " | ".join("---" for _ in WAYS) + " | --- | --- | --- |"]
    for label, figures in results.items():
        cells = []
        for way in WAYS:
            result = figures[way]
            cells.append(f"{result['seconds']:.1f} s" if "seconds" in result else f"fails: {result['failed'][:140]}")
        export = f"{figures['export_bytes'] / 1e6:.1f}" if "export_bytes" in figures else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {figures['run_bytes'] / 1e6:.1f} | "
                     f"{figures['index_bytes'] / 1e6:.1f} | {export} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks startup")
    parser.add_argument("--before", type=Path, default=None, help="another checkout's src folder, measured too")
    parser.add_argument("--fresh", action="store_true", help="measure again what OUT already holds")
    parser.add_argument("--out", type=Path, default=Path("/tmp/xmodal-bench-startup"))
    parser.add_argument("--report", type=Path, default=REPO / "benchmarks" / "results" / "startup.md")
    args = parser.parse_args(argv)
    results = {}
    if args.before is not None:
        before = measure("before", args.before.absolute(), args.out, args.fresh)
        results[f"before (commit {before.get('commit') or commit_of(args.before)})"] = before
    after = measure("after", REPO / "src", args.out, args.fresh)
    results[f"after (commit {after.get('commit') or commit_of(REPO / 'src')})"] = after
    write_report(results, args.report)
