"""Search engine figures (issue 17): scale of the vector backends, incremental updates, the served API.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks search [--parts serve update scale] \\
        [--out /tmp/xmodal-bench-search] [--vectors 1000000]

Parts (each keeps its figures in OUT/<part>.json, so a finished part is not run again; --fresh
reruns), then benchmarks/results/search.md is written from whatever parts exist:

* ``serve``: on emoji, the demo's model (GPLDAN, one stage) and SCANet (pairwise, two-stage search):
  the same text and image queries through ``xmodal search --json`` and through ``POST /search`` of
  ``xmodal serve``, compared; the bad inputs of the issue against the live server; then a load test
  (500 queries, 16 concurrent clients); and two-stage latency (SCANet reranking the top 100).
* ``update``: an index of 10,000 real Wikipedia sentences (the emoji ``dual`` run's MiniLM text side):
  add 100, remove 50, against rebuilding from scratch; ``update-check`` then compares the results
  of the two indexes it left.
* ``scale``: synthetic unit vectors (clustered), exact in three dtypes / faiss HNSW / faiss IVF-PQ
  with and without its refining stage / Milvus Lite: build time, size, latency one query at a time
  and in batches beside a bare product, recall@10 against exact (:mod:`benchmarks.search_scale`);
  ``scale-10m``: the same at ten million vectors for what fits one machine.
* ``warnings``: queries the run cannot read (``狗`` on an English run, ``qwxzv blorf``) flagged in
  the CLI, ``--json`` and the page (screenshots), and not on a Chinese TF-IDF run
  (:mod:`benchmarks.search_warnings`).
* ``batching``: the load test (32 concurrent clients with texts, 8 with image uploads) against one
  server answering queries one at a time (``--batch 1``) and in batches (``--batch 32``).
* ``languages``: Chinese queries over the whole emoji folder with the emoji-zh runs
  (:mod:`benchmarks.search_languages`).
* ``shards``: image extraction in one process against two (``xmodal extract --shard``;
  :mod:`benchmarks.search_shards`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import torch

from benchmarks.plan import REPO, SHARED
from benchmarks.search_languages import part_languages
from benchmarks.search_languages import report as languages_report
from benchmarks.search_scale import SCALE_READING, SETTINGS, part_scale
from benchmarks.search_scale import report as scale_report
from benchmarks.search_shards import part_shards
from benchmarks.search_shards import report as shards_report
from benchmarks.search_trust import part_trust
from benchmarks.search_trust import report as trust_report
from benchmarks.search_warnings import part_warnings
from benchmarks.search_warnings import report as warnings_report
from benchmarks.serving import XMODAL, Server, declared_length, get, percentile, post_file, post_json, post_raw

EMOJI = SHARED / "emoji"
WIKI_TEXTS = SHARED / "wikipedia" / "texts"


PARTS = ("serve", "trust", "warnings", "batching", "languages", "update", "update-check", "scale", "scale-10m",
         "shards")


def sh(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([*XMODAL, *argv], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"xmodal {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return done


def train_once(config: str, out: Path, *extra: str) -> Path:
    if not (out / "checkpoints" / "best.pt").is_file():
        shutil.rmtree(out, ignore_errors=True)
        sh("train", "-q", "--config", config, "--out", str(out), "--path", str(EMOJI), *extra)
    return out


def index_once(run: Path, collection: str, index: Path) -> Path:
    """``xmodal index build RUN --collection COLLECTION --out INDEX``, unless that index is already live."""
    if not (index / "CURRENT").is_file():
        sh("index", "build", str(run), "--collection", collection, "--out", str(index))
    return index


# -- serve ---------------------------------------------------------------------------------------


def compare_cli_and_api(index: Path, server: Server, texts: list[str], images: list[str]) -> dict:
    """Top-10 ids through both; a query the model cannot encode must be refused the same way by both."""
    same, checked, refused = 0, 0, 0
    for text in texts:
        done = subprocess.run([*XMODAL, "search", str(index), "--text", text, "-k", "10", "--json"],
                              capture_output=True, text=True)
        status, api = post_json(server.url + "/search", {"text": text, "k": 10})
        checked += 1
        if done.returncode == 2:  # a user error (e.g. no word of SCANet's graph): the API must say the same
            refused += 1
            same += status == 400 and api["detail"] in done.stderr
            continue
        cli = json.loads(done.stdout)["hits"]
        same += status == 200 and [h["id"] for h in cli] == [h["id"] for h in api["hits"]]
    for image in images:
        cli = json.loads(sh("search", str(index), "--image", image, "-k", "10", "--json").stdout)["hits"]
        status, api = post_file(server.url + "/search", "image", Path(image).name, Path(image).read_bytes(),
                                {"k": 10})
        checked += 1
        same += status == 200 and [h["id"] for h in cli] == [h["id"] for h in api["hits"]]
    return {"queries": checked, "same_ranking": int(same), "refused_by_both": refused}


def bad_inputs(server: Server) -> list[dict]:
    from PIL import Image

    huge = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(huge, format="PNG")
    cases = [
        ("empty query", lambda: post_json(server.url + "/search", {"text": ""})),
        ("10 MB query string", lambda: post_json(server.url + "/search", {"text": "a" * 10_000_000})),
        ("non-image upload", lambda: post_file(server.url + "/search", "image", "x.png", b"%PDF-1.4 not an image")),
        ("20,000 x 20,000 image", lambda: post_file(server.url + "/search", "image", "huge.png", huge.getvalue())),
        ("unknown item id", lambda: get(server.url + "/items/no-such-item")),
        ("path-like id ../../etc/passwd", lambda: get(server.url + "/items/..%2F..%2Fetc%2Fpasswd")),
        ("path-like thumbnail", lambda: get(server.url + "/thumbnails/..%2F..%2Fetc%2Fpasswd")),
        ("min_score a list", lambda: post_json(server.url + "/search", {"text": "a cat", "min_score": [1]})),
        ("min_score an object", lambda: post_json(server.url + "/search", {"text": "a cat", "min_score": {"a": 1}})),
        ("2,500 nested arrays (5 KB body)", lambda: post_raw(server.url + "/search", b"[" * 2500 + b"]" * 2500)),
        ("lone surrogate in the text", lambda: post_raw(server.url + "/search", b'{"text": "a\\ud800b"}')),
        ("Content-Length of 100 MB", lambda: declared_length(server.url, "/search", 100_000_000)),
    ]
    rows = []
    for name, call in cases:
        status, body = call()
        detail = body.get("detail", "") if isinstance(body, dict) else json.loads(body or b"{}").get("detail", "")
        rows.append({"case": name, "status": status, "detail": str(detail)[:120]})
    rows.append({"case": "then GET /health", "status": get(server.url + "/health")[0], "detail": ""})
    return rows


def load_test(server: Server, texts: list[str], n: int = 500, clients: int = 16,
              images: list[bytes] | None = None) -> dict:
    """``n`` queries from ``clients`` concurrent clients: the texts, or uploads of ``images`` when given."""
    def one(i: int) -> tuple[bool, float]:
        started = time.perf_counter()
        try:
            if images:
                status, _ = post_file(server.url + "/search", "image", "query.png", images[i % len(images)], {"k": 10})
            else:
                status, _ = post_json(server.url + "/search", {"text": texts[i % len(texts)], "k": 10})
        except OSError:
            status = 0
        return status == 200, time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    latencies = [seconds * 1000 for ok, seconds in results]
    return {"queries": n, "clients": clients, "errors": sum(not ok for ok, _ in results), "seconds": wall,
            "qps": n / wall, "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95)}


def two_stage_latency(index: Path, texts: list[str], n: int = 100) -> dict:
    from xmodal.errors import XmodalError
    from xmodal.search.engine import SearchEngine

    engine = SearchEngine.open(index)
    accepted = []
    for text in texts:  # the texts the model can encode (SCANet's graph lacks some emoji words)
        try:
            engine.encode_text(text)
        except XmodalError:
            continue
        accepted.append(text)
    accepted = accepted[:n]
    figures: dict = {"queries": len(accepted)}
    for shortlist in (10, 100):
        times = []
        for text in accepted:
            started = time.perf_counter()
            engine.search_text(text, 10, shortlist=shortlist)
            times.append((time.perf_counter() - started) * 1000)
        figures[f"K={shortlist}"] = {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95)}
    return figures


def demo_run(out: Path) -> Path:
    """``xmodal demo``'s run and index (GPLDAN on emoji), made once."""
    demo = out / "demo"
    if not (demo / "index" / "CURRENT").is_file():
        sh("demo", "--path", str(EMOJI), "--out", str(demo))
    return demo


def emoji_zh_index(out: Path) -> Path:
    """An index of the emoji test images by the ``dual/emoji-zh`` run (TF-IDF of Chinese names), made once."""
    return index_once(train_once("dual/emoji-zh", out / "dual-emoji-zh"), "split:test", out / "dual-emoji-zh-index")


def part_batching(out: Path, queries: int = 320, clients: int = 32, upload_clients: int = 8) -> dict:
    """The load test against the same server answering one query at a time and in batches: text
    queries from ``clients`` clients, then image uploads from ``upload_clients`` (the server's cap
    on uploads in progress, so none is turned away)."""
    from xmodal.api import load_run

    run = train_once("dual/emoji", out / "dual-emoji")
    index = index_once(run, "split:test", out / "dual-emoji-index")
    loaded = load_run(run)
    test = loaded.dataset.split("test")
    texts = [item.texts[0] for item in test]
    images = [Path(item.image).read_bytes() for item in test[:64]]
    figures: dict = {"index": f"dual/emoji (MiniLM sentence vectors, one stage), {len(texts)} test images",
                     "queries": queries, "clients": clients, "upload_clients": upload_clients,
                     "load_average": os.getloadavg()[0],  # other processes on the cores: the ratios, not the rates
                     "encoding": encoding_in_batches(loaded, texts[:8], [Path(item.image) for item in test[:8]])}
    for batch in (1, 32):
        server = Server(index, "--batch", str(batch))
        try:
            load_test(server, texts, n=clients, clients=clients)  # warm-up
            figures[f"batch {batch}"] = load_test(server, texts, n=queries, clients=clients)
            load_test(server, texts, n=upload_clients, clients=upload_clients, images=images)
            figures[f"images batch {batch}"] = load_test(server, texts, n=queries, clients=upload_clients,
                                                         images=images)
        finally:
            server.stop()
    return figures


def encoding_in_batches(loaded, texts: list[str], images: list[Path]) -> dict:
    """In this process: milliseconds for the loaded run (``xmodal.api.load_run``) to encode the
    queries one at a time and as one batch, per kind (what batching can save before any search)."""
    figures = {}
    for kind, encode, queries in (("texts", loaded.encode_texts, texts), ("images", loaded.encode_images, images)):
        encode(queries[:1])  # warm-up
        started = time.perf_counter()
        for query in queries:
            encode([query])
        alone = time.perf_counter() - started
        started = time.perf_counter()
        encode(queries)
        figures[kind] = {"queries": len(queries), "alone_ms": alone * 1000,
                         "batch_ms": (time.perf_counter() - started) * 1000}
    return figures


def batching_report(figures: dict) -> list[str]:
    one, many = figures["batch 1"], figures["batch 32"]
    lines = ["", "## Concurrent queries answered in batches (`xmodal serve --batch`)", "",
             f"Index: {figures['index']}. {figures['queries']} text queries from {figures['clients']} concurrent "
             "clients, after a warm-up round; the same server started with `--batch 1` (one query on the model at a "
             "time) and `--batch 32` (the queries waiting for the model answered by one encoding batch and one "
             "backend search, `xmodal.search.batching`)."
             + (f" Load average when the part started: {figures['load_average']:.1f} on 2 cores (other jobs share "
                "them: compare the two servers, measured one after the other, not the rates across runs)."
                if "load_average" in figures else ""), "",
             "| server | errors | queries/s | p50 ms | p95 ms |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `--batch {size}` | {row['errors']} | {row['qps']:.1f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} |"
              for size, row in ((1, one), (32, many))]
    lines += ["", f"Batching answered {many['qps'] / one['qps']:.2f}x the queries per second of one at a time."]
    if "images batch 1" in figures:  # image uploads, measured from the same servers
        one, many = figures["images batch 1"], figures["images batch 32"]
        lines += ["", f"Image uploads (PNG of test emoji, `multipart/form-data`): {figures['queries']} from "
                  f"{figures['upload_clients']} concurrent clients (the server's cap on uploads in progress), the same "
                  "two servers.", "", "| server | errors | uploads/s | p50 ms | p95 ms |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| `--batch {size}` | {row['errors']} | {row['qps']:.1f} | {row['p50_ms']:.0f} | "
                  f"{row['p95_ms']:.0f} |" for size, row in ((1, one), (32, many))]
        lines += ["", f"Batching answered {many['qps'] / one['qps']:.2f}x the uploads per second of one at a time."]
    if "encoding" in figures:
        parts = [f"{kind} {row['alone_ms']:.0f} ms one at a time against {row['batch_ms']:.0f} ms in one batch "
                 f"({row['alone_ms'] / row['batch_ms']:.2f}x)" for kind, row in figures["encoding"].items()]
        lines += ["", f"Where the gain comes from: encoding {figures['encoding']['texts']['queries']} queries in the "
                  f"benchmark's process (one torch thread): {'; '.join(parts)}. Batching pays where the encoder's cost "
                  "per query shrinks in a batch (MiniLM over short texts); a convolution over a 224 px image costs "
                  "no less per image in a batch on this CPU, so uploads gain at most the shared backend search."]
    return lines


def part_serve(out: Path) -> dict:
    from xmodal.api import load_run

    demo = demo_run(out)
    scanet_index = index_once(train_once("scanet/emoji", out / "scanet-emoji"), "split:test",
                              out / "scanet-emoji-index")
    run = load_run(demo)
    items = run.dataset.split("test")
    texts = [item.texts[0] for item in items][::40][:8]
    images = [str(item.image) for item in items][::40][:8]
    figures: dict = {}
    for name, index in (("gpldan (the demo model; co-attention over chunks, two-stage K=100)", demo / "index"),
                        ("scanet (pairwise, two-stage K=100)", scanet_index)):
        server = Server(index)
        try:
            figures[name] = {"cli_vs_api": compare_cli_and_api(index, server, texts, images)}
            if name.startswith("gpldan"):
                figures[name]["bad_inputs"] = bad_inputs(server)
            accepted = [text for text in (item.texts[0] for item in items)
                        if post_json(server.url + "/search", {"text": text, "k": 1})[0] == 200]
            figures[name]["load"] = load_test(server, accepted) | {"distinct_texts": len(accepted)}
        finally:
            server.stop()
    figures["two_stage_latency_scanet"] = two_stage_latency(scanet_index, [item.texts[0] for item in items])
    figures["collection"] = f"emoji test split: {len(items)} images, {sum(len(i.texts) for i in items)} texts"
    return figures


# -- update --------------------------------------------------------------------------------------


def wikipedia_sentences(n: int) -> list[str]:
    from xmodal.data.texts import read_document

    sentences: list[str] = []
    for path in sorted(WIKI_TEXTS.glob("*.xml")):
        for sentence in re.split(r"(?<=[.!?])\s+", read_document(path)):
            words = sentence.split()
            if 6 <= len(words) <= 40:
                sentences.append(" ".join(words))
                if len(sentences) == n:
                    return sentences
    raise RuntimeError(f"only {len(sentences)} sentences found")


def part_update(out: Path) -> dict:
    from xmodal.api import load_run
    from xmodal.search.collection import read_collection
    from xmodal.search.index import SearchIndex

    run_folder = train_once("dual/emoji", out / "dual-emoji")
    run = load_run(run_folder)
    sentences = wikipedia_sentences(10_100)
    base, extra = out / "base.txt", out / "extra.txt"
    base.write_text("\n".join(sentences[:10_000]) + "\n")
    extra.write_text("\n" * 10_000 + "\n".join(sentences[10_000:]) + "\n")  # ids line-10001 ... continue
    figures: dict = {}
    updated, rebuilt = out / "updated-index", out / "rebuilt-index"
    for folder in (updated, rebuilt):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    SearchIndex.build(run, read_collection(str(base)), updated)
    figures["build_10000_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with SearchIndex.updating(updated) as index:
        index.add(run, read_collection(str(extra)))
    figures["add_100_s"] = time.perf_counter() - started
    removed = [f"line-{n}" for n in range(1, 5001, 100)]  # 50 ids spread over the index
    started = time.perf_counter()
    with SearchIndex.updating(updated) as index:
        index.remove(removed)
    figures["remove_50_s"] = time.perf_counter() - started
    final = out / "final.txt"
    gone = set(removed)
    lines = ["" if f"line-{number}" in gone else text for number, text in enumerate(sentences, start=1)]
    final.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    SearchIndex.build(run, read_collection(str(final)), rebuilt)
    figures["rebuild_10050_s"] = time.perf_counter() - started
    return figures


def part_update_check(out: Path) -> dict:
    """The updated and the rebuilt index of ``update`` answer 20 image queries: same ids, scores within 1e-5."""
    from xmodal.search.engine import SearchEngine

    engines = [SearchEngine.open(out / name) for name in ("updated-index", "rebuilt-index")]
    queries = [str(item.image) for item in engines[0].run.dataset.split("test")][:20]
    equal, largest = 0, 0.0
    for image in queries:
        updated, rebuilt = [engine.search_image(image, 10) for engine in engines]
        difference = max(abs(a.score - b.score) for a, b in zip(updated, rebuilt))
        largest = max(largest, difference)
        equal += [h.id for h in updated] == [h.id for h in rebuilt] and difference <= 1e-5
    return {"items_after": len(engines[0].index.sides["texts"]), "queries": len(queries), "equal_results": equal,
            "largest_score_difference": largest}


# -- report --------------------------------------------------------------------------------------


def write_report(out: Path) -> None:
    parts = {name: json.loads((out / f"{name}.json").read_text()) for name in PARTS
             if (out / f"{name}.json").is_file()}
    lines = ["# Search engine: served API, incremental updates, backends at scale", "",
             f"Produced by `python -m benchmarks search` on this project's 2-core CPU (torch 1 thread), shared with "
             f"other training jobs; latencies move with that load. Parts run: {', '.join(parts) or 'none'}.", ""]
    serve = parts.get("serve")
    if serve:
        lines += ["## Served API on emoji (`xmodal serve`, 127.0.0.1)", "", f"Collection: {serve['collection']}.", "",
                  "| model | CLI = API ranking (top 10) | load: queries / clients | errors | p50 ms | p95 ms | "
                  "queries/s |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, figures in serve.items():
            if not isinstance(figures, dict) or "load" not in figures:
                continue
            same, load = figures["cli_vs_api"], figures["load"]
            refused = f", {same['refused_by_both']} refused by both" if same.get("refused_by_both") else ""
            lines.append(f"| {name} | {same['same_ranking']} of {same['queries']} (half text, half image queries"
                         f"{refused}) | "
                         f"{load['queries']} / {load['clients']} | {load['errors']} | {load['p50_ms']:.0f} | "
                         f"{load['p95_ms']:.0f} | {load['qps']:.1f} |")
        latency = serve["two_stage_latency_scanet"]
        lines += ["", "Two-stage search with SCANet (pairwise, k = 2 co-attention layers), one text query at a time "
                  f"through the library, {latency['queries']} queries:", "",
                  "| shortlist K | p50 ms | p95 ms |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} |" for k, v in latency.items() if k != "queries"]
        bad = next(f["bad_inputs"] for f in serve.values() if isinstance(f, dict) and "bad_inputs" in f)
        lines += ["", "Bad input against the live server (the demo model's index):", "",
                  "| request | status | message |", "| --- | --- | --- |"]
        lines += [f"| {row['case']} | {row['status']} | {row['detail']} |" for row in bad]
    if "trust" in parts:
        lines += trust_report(parts["trust"])
    if "warnings" in parts:
        lines += warnings_report(parts["warnings"])
    if "batching" in parts:
        lines += batching_report(parts["batching"])
    if "languages" in parts:
        lines += languages_report(parts["languages"])
    update = parts.get("update")
    if update and "update-check" in parts:
        update = update | parts["update-check"]
        lines += ["", "## Incremental update (real Wikipedia sentences, the emoji `dual` run's MiniLM text side)", "",
                  "| step | seconds |", "| --- | --- |",
                  f"| build 10,000 texts | {update['build_10000_s']:.1f} |",
                  f"| add 100 | {update['add_100_s']:.2f} |", f"| remove 50 | {update['remove_50_s']:.2f} |",
                  f"| rebuild the resulting 10,050 from scratch | {update['rebuild_10050_s']:.1f} |", "",
                  f"Add + remove took {(update['add_100_s'] + update['remove_50_s']):.1f} s against "
                  f"{update['rebuild_10050_s']:.1f} s for the rebuild; {update['equal_results']} of "
                  f"{update['queries']} image queries returned the same top 10 from both indexes (the same ids, "
                  f"scores within 1e-5; largest difference {update['largest_score_difference']:.1e}; "
                  f"{update['items_after']:,} texts each)."]
    for part in ("scale", "scale-10m"):
        if part in parts:
            lines += scale_report(parts[part])
    if "scale" in parts:
        lines += SCALE_READING
    if "shards" in parts:
        lines += shards_report(parts["shards"])
    (REPO / "benchmarks" / "results" / "search.md").write_text("\n".join(lines) + "\n")


def merged_rows(earlier: list[dict], now: list[dict]) -> list[dict]:
    """The earlier rows in their order, each replaced by today's row of the same backend, then new ones."""
    fresh = {row["name"]: row for row in now}
    known = {row["name"] for row in earlier}
    return [fresh.get(row["name"], row) for row in earlier] + [row for row in now if row["name"] not in known]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks search")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/xmodal-bench-search"))
    parser.add_argument("--vectors", type=int, default=1_000_000, help="the scale part's collection size")
    parser.add_argument("--backends", nargs="+", choices=list(SETTINGS), help="the scale parts' rows (default all)")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--device", default="cpu", help="the scale parts' exact backends: cpu or cuda")
    parser.add_argument("--reuse-built", action="store_true",
                        help="scale: load the faiss indexes the last run saved instead of building them again")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        saved = args.out / f"{part}.json"
        if saved.is_file() and not args.fresh:
            continue
        started = time.perf_counter()
        if part == "serve":
            figures = part_serve(args.out)
        elif part == "trust":
            figures = part_trust(args.out, demo_run(args.out) / "index")
        elif part == "update":
            figures = part_update(args.out)
        elif part == "update-check":
            figures = part_update_check(args.out)
        elif part == "batching":
            figures = part_batching(args.out)
        elif part == "languages":
            figures = part_languages(args.out, train_once, index_once)
        elif part == "warnings":
            figures = part_warnings(args.out, demo_run(args.out), emoji_zh_index(args.out))
        elif part == "shards":
            figures = part_shards(args.out)
        elif part == "scale":
            earlier = json.loads(saved.read_text()) if saved.is_file() else None
            figures = part_scale(args.out, args.vectors, names=args.backends, device=args.device,
                                 earlier=earlier if args.reuse_built else None)
            if args.backends and earlier:  # rows of the backends not run now keep their figures
                figures["rows"] = merged_rows(earlier["rows"], figures["rows"])
        else:  # scale-10m: what fits one 24 GB machine at ten million
            figures = part_scale(args.out, 10_000_000, names=args.backends or ["exact-bfloat16", "ivfpq"],
                                 device=args.device)
        figures["part_seconds"] = time.perf_counter() - started
        saved.write_text(json.dumps(figures, indent=1))
        print(f"{part}: done in {figures['part_seconds']:.0f} s", flush=True)
        write_report(args.out)
    write_report(args.out)
