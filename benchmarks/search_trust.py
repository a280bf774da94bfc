"""An index and a server you can trust (issue 27), measured: the ``trust`` part of ``python -m benchmarks search``.

All on a copy of the demo run's index (GPLDAN on emoji, two-stage search), as the issue's cases were:

* **writers**: 4 ``xmodal index add`` processes started together, each adding 50 distinct emoji
  (train-split images, not in the index), on a fresh copy of the index; repeated 10 times. Every
  trial must end with 200 more images and every process saying ``added 50``.
* **live**: 16 clients query ``POST /search`` (at least 500 queries) while 2 adds (50 images each)
  and 2 removes (10 ids each) run as separate processes. Every answer must come from a complete
  version: the server names the version it answered from, and a watcher here records each
  version's ids as it goes live; every hit must be an id of that version.
* **uploads**: 20 clients upload a 9 MB image to ``POST /search`` at once, twice, while one client
  asks ``GET /health`` every 100 ms: the latency of ``/health`` and the uploads' statuses.
* **integrity**: what checking every file's SHA-256 on open costs (hash throughput against
  zlib's CRC-32 on 256 MB, and opening the demo index with and without the check).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import shutil
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serving import XMODAL, Server, get, percentile, post_file, post_json


def _index_copy(index: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(index, to, ignore=shutil.ignore_patterns("LOCK"))
    return to


def _image_folders(run, root: Path, sizes: list[int]) -> list[Path]:
    """Folders of distinct train-split images (the index holds the test split), ``sizes`` images each."""
    train = [item for item in run.dataset.split("train")]
    folders, start = [], 0
    for number, size in enumerate(sizes):
        folder = root / f"batch{number}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for item in train[start : start + size]:
            shutil.copyfile(item.image, folder / f"{item.id}{Path(item.image).suffix}")
        folders.append(folder)
        start += size
    return folders


def _image_count(index: Path) -> int:
    version = (index / "CURRENT").read_text().strip()
    return sum(1 for line in (index / version / "images" / "items.jsonl").read_text().splitlines() if line)


def concurrent_writers(index: Path, run, out: Path, trials: int = 10, writers: int = 4, each: int = 50) -> dict:
    folders = _image_folders(run, out / "writer-images", [each] * writers)
    rows = []
    for trial in range(trials):
        copy = _index_copy(index, out / "writers-index")
        before = _image_count(copy)
        started = time.perf_counter()
        processes = [subprocess.Popen([*XMODAL, "index", "add", str(copy), str(folder)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for folder in folders]
        outputs = [process.communicate() for process in processes]
        seconds = time.perf_counter() - started
        said = sum(f"added {each} image(s)" in stdout for stdout, _ in outputs)
        failed = [stderr[-300:] for process, (_, stderr) in zip(processes, outputs) if process.returncode != 0]
        rows.append({"trial": trial, "added": _image_count(copy) - before, "processes_saying_added": said,
                     "failed": failed, "seconds": seconds})
        print(json.dumps(rows[-1]), flush=True)
    return {"writers": writers, "each": each, "trials": rows}


class VersionWatcher(threading.Thread):
    """Records the ids of every version of an index as it goes live (polls ``CURRENT``)."""

    def __init__(self, index: Path):
        super().__init__(daemon=True)
        self.index, self.ids, self.done = index, {}, threading.Event()

    def snapshot(self) -> None:
        version = (self.index / "CURRENT").read_text().strip()
        if version not in self.ids:
            ids = set()
            for side in ("images", "texts"):
                lines = (self.index / version / side / "items.jsonl").read_text().splitlines()
                ids |= {json.loads(line)["id"] for line in lines if line}
            self.ids[version] = ids

    def run(self) -> None:
        while not self.done.is_set():
            self.snapshot()
            time.sleep(0.02)


def live_updates(index: Path, run, out: Path, minimum_queries: int = 500, clients: int = 16) -> dict:
    copy = _index_copy(index, out / "live-index")
    adds = _image_folders(run, out / "live-images", [50, 50])
    test_ids = [item.id for item in run.dataset.split("test")]
    removes = [test_ids[0:10], test_ids[10:20]]
    texts = [item.texts[0] for item in run.dataset.split("test")]
    watcher = VersionWatcher(copy)
    watcher.snapshot()
    first = (copy / "CURRENT").read_text().strip()
    watcher.start()
    server = Server(copy)
    updates: list[dict] = []
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        for argv in (["add", str(copy), str(adds[0])], ["remove", str(copy), *removes[0]],
                     ["add", str(copy), str(adds[1])], ["remove", str(copy), *removes[1]]):
            started = time.perf_counter()
            done = subprocess.run([*XMODAL, "index", *argv], capture_output=True, text=True)
            seconds = time.perf_counter() - started
            updates.append({"command": f"index {argv[0]}", "rc": done.returncode, "seconds": seconds})
        writing.clear()

    answers: list[dict] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        i = number
        while writing.is_set() or len(answers) < minimum_queries:
            started = time.perf_counter()
            try:
                status, body = post_json(server.url + "/search", {"text": texts[i % len(texts)], "k": 10})
            except OSError as error:
                status, body = 0, {"detail": str(error)}
            with lock:
                answers.append({"status": status, "ms": (time.perf_counter() - started) * 1000,
                                "version": body.get("version"), "ids": [hit["id"] for hit in body.get("hits", [])]})
            i += clients

    try:
        thread = threading.Thread(target=writer)
        started = time.perf_counter()
        thread.start()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        thread.join()
        wall = time.perf_counter() - started
        time.sleep(2)  # the server looks for new versions every 0.5 s
        health = json.loads(get(server.url + "/health")[1])
    finally:
        server.stop()
        watcher.done.set()
        watcher.join()
    final = (copy / "CURRENT").read_text().strip()
    wrong = [a for a in answers if a["status"] == 200
             and (a["version"] not in watcher.ids or not set(a["ids"]) <= watcher.ids[a["version"]]
                  or len(a["ids"]) != 10)]
    served = sorted({a["version"] for a in answers if a["status"] == 200})
    latencies = [a["ms"] for a in answers]
    return {"queries": len(answers), "clients": clients, "errors": sum(a["status"] != 200 for a in answers),
            "not_from_a_complete_version": len(wrong), "versions_answered_from": served,
            "first_version": first, "final_version": final,
            "health_after": {key: health[key] for key in ("version", "items")},
            "final_images": _image_count(copy), "updates": updates, "seconds": wall,
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95)}


def nine_megabyte_png() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1740, 1740, 3), dtype=np.uint8)  # noise: PNG cannot compress it
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def uploads_and_health(index: Path, out: Path, uploads: int = 20, rounds: int = 2) -> dict:
    content = nine_megabyte_png()
    server = Server(_index_copy(index, out / "upload-index"))
    health_ms: list[float] = []
    statuses: dict[str, int] = {}
    stop = threading.Event()

    def poll_health() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = get(server.url + "/health")[0]
            except OSError:
                status = 0
            health_ms.append((time.perf_counter() - started) * 1000 if status == 200 else float("inf"))
            time.sleep(0.1)

    def upload(_: int) -> int:
        try:
            return post_file(server.url + "/search", "image", "big.png", content, {"k": 10})[0]
        except OSError:
            return 0

    try:
        poller = threading.Thread(target=poll_health)
        poller.start()
        started = time.perf_counter()
        for _ in range(rounds):
            with concurrent.futures.ThreadPoolExecutor(uploads) as pool:
                for status in pool.map(upload, range(uploads)):
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
        wall = time.perf_counter() - started
        stop.set()
        poller.join()
    finally:
        server.stop()
    return {"upload_bytes": len(content), "uploads": uploads, "rounds": rounds, "statuses": statuses,
            "seconds": wall, "health_requests": len(health_ms), "health_p50_ms": percentile(health_ms, 50),
            "health_p95_ms": percentile(health_ms, 95), "health_max_ms": max(health_ms)}


def integrity_cost(index: Path, out: Path) -> dict:
    import xmodal.search.index as index_module
    from xmodal.search.index import SearchIndex
    from xmodal.search.versions import file_table

    data = np.random.default_rng(0).bytes(256 * 2**20)
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    sha_seconds = time.perf_counter() - started
    started = time.perf_counter()
    zlib.crc32(data)
    crc_seconds = time.perf_counter() - started
    version = index / (index / "CURRENT").read_text().strip()
    table = file_table(version)

    def open_seconds(repeats: int = 5) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            SearchIndex.open(index).close()
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    checked = open_seconds()
    real_verify = index_module.verify
    index_module.verify = lambda *args, **kwargs: None
    try:
        unchecked = open_seconds()
    finally:
        index_module.verify = real_verify
    return {"sha256_mb_s": 256 / sha_seconds, "crc32_mb_s": 256 / crc_seconds,
            "index_files": len(table), "index_bytes": sum(entry["size"] for entry in table.values()),
            "open_checked_s": checked, "open_unchecked_s": unchecked}


def part_trust(out: Path, index: Path) -> dict:
    from xmodal.api import load_run
    from xmodal.search.index import SearchIndex

    opened = SearchIndex.open(index)
    run = load_run(opened.run_folder)
    opened.close()
    trust = out / "trust"
    trust.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"index": f"{_image_count(index)} images (emoji test split), {run.config.model.name}"}
    figures["integrity"] = integrity_cost(index, trust)
    figures["writers"] = concurrent_writers(index, run, trust)
    figures["live"] = live_updates(index, run, trust)
    figures["uploads"] = uploads_and_health(index, trust)
    return figures


def report(trust: dict) -> list[str]:
    writers, live, uploads, cost = trust["writers"], trust["live"], trust["uploads"], trust["integrity"]
    trials = writers["trials"]
    added = [row["added"] for row in trials]
    expected = writers["writers"] * writers["each"]
    lines = ["", "## An index and a server you can trust (issue 27)", "",
             f"On a copy of the demo run's index ({trust['index']}; two-stage search, K=100).", "",
             f"**Concurrent writers.** {writers['writers']} `xmodal index add` processes started together, each "
             f"adding {writers['each']} distinct images, {len(trials)} trials on a fresh copy: "
             f"{sum(a == expected for a in added)} of {len(trials)} trials added all {expected} "
             f"(added per trial: {', '.join(map(str, added))}); "
             f"{sum(row['processes_saying_added'] for row in trials)} of {len(trials) * writers['writers']} processes "
             f"printed `added {writers['each']} image(s)`, {sum(len(row['failed']) for row in trials)} failed; "
             f"a trial took {np.median([row['seconds'] for row in trials]):.0f} s (median; the writers take turns "
             "under the index's lock).", "",
             f"**Queries during updates.** {live['queries']} queries from {live['clients']} clients while "
             + ", ".join(f"{u['command']} ({u['seconds']:.0f} s, exit {u['rc']})" for u in live["updates"])
             + f" ran: {live['errors']} errors, {live['not_from_a_complete_version']} answers not from a complete "
             f"version (every hit an id of the version the server named, 10 hits each); answers came from versions "
             f"{', '.join(live['versions_answered_from'])}; after the last update `/health` reported "
             f"{live['health_after']['version']} with {live['health_after']['items']['images']} images "
             f"(the index: {live['final_version']}, {live['final_images']} images). Query latency p50 "
             f"{live['p50_ms']:.0f} ms, p95 {live['p95_ms']:.0f} ms.", "",
             f"**Uploads and health.** {uploads['rounds']} rounds of {uploads['uploads']} concurrent "
             f"{uploads['upload_bytes'] / 2**20:.1f} MB PNG uploads to `/search` (statuses: "
             + ", ".join(f"{count} x {status}" for status, count in sorted(uploads["statuses"].items()))
             + f"; 503 is the cap of 8 uploads in progress) while `GET /health` was asked every 100 ms: "
             f"{uploads['health_requests']} health answers, p50 {uploads['health_p50_ms']:.0f} ms, "
             f"p95 {uploads['health_p95_ms']:.0f} ms, max {uploads['health_max_ms']:.0f} ms.", "",
             f"**Cost of checking files on open.** SHA-256 hashes {cost['sha256_mb_s']:.0f} MB/s on this machine "
             f"(zlib CRC-32: {cost['crc32_mb_s']:.0f} MB/s). Opening the demo index ({cost['index_files']} files, "
             f"{cost['index_bytes'] / 2**20:.1f} MB) takes {cost['open_checked_s'] * 1000:.0f} ms with every file's "
             f"SHA-256 checked and {cost['open_unchecked_s'] * 1000:.0f} ms without (median of 5). At that rate "
             f"a 1 GB exact index (1M 256-d vectors) costs about {1024 / cost['sha256_mb_s']:.1f} s more to open: "
             "xmodal checks every file on every open, once per version a server loads."]
    return lines
