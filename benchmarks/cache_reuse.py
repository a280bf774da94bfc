"""How much work the feature cache saves when a collection changes a little: whole commands, timed.

Builds a collection of 2,000 images in a temporary folder (1,000 Flickr8k photos with their first
two captions, 1,000 emoji PNGs with their name and keywords; the images are copied there, never
into the repository) and times ``python -m xmodal.cli extract csv --path collection.csv
--encoders effnet,minilm`` as a subprocess, with ``XMODAL_HOME`` in the temporary folder:

  a   full extraction, empty cache
  a'  the same command again, nothing changed
  b   one caption edited
  c   10 images added
  e   the collection of (c) read as JSONL instead of CSV
  d   another empty cache: SIGKILL at about 80% of the image extraction, then the rerun

Every time includes the Python start, imports and model loading of a whole command.

    python -m benchmarks cache --out benchmarks/results/cache.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.plan import SHARED
from xmodal.paths import folder_bytes

COMMAND = ["-m", "xmodal.cli", "extract"]


def build_collection(root: Path, emoji_dir: Path, flickr_dir: Path, n_photos: int, n_emoji: int, extra: int
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Copy the images under ``root/images``; return the base (image, caption) rows and the extra ones."""
    images = root / "images"
    (images / "flickr").mkdir(parents=True)
    (images / "emoji").mkdir(parents=True)
    captions: dict[str, list[str]] = {}
    with open(flickr_dir / "captions.txt", newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            captions.setdefault(row["image"], []).append(row["caption"])
    rows: list[tuple[str, str]] = []
    for name in sorted(captions)[:n_photos]:
        shutil.copy2(flickr_dir / "Images" / name, images / "flickr" / name)
        rows += [(f"images/flickr/{name}", caption) for caption in captions[name][:2]]

    env = {**os.environ, "XMODAL_HOME": str(root / "setup-home")}
    listing = subprocess.run([sys.executable, "-c", (
        "import json, sys; from pathlib import Path; from xmodal.data.emoji import read_emoji\n"
        f"d = read_emoji(Path({str(emoji_dir)!r}))\n"
        "print(json.dumps([[str(i.image), list(i.texts)] for i in d.items]))")],
        env=env, capture_output=True, text=True, check=True)
    emoji = json.loads(listing.stdout)
    extra_rows: list[tuple[str, str]] = []
    for index, (path, texts) in enumerate(emoji[: n_emoji + extra]):
        target = images / "emoji" / Path(path).name
        shutil.copy2(path, target)
        (rows if index < n_emoji else extra_rows).extend((f"images/emoji/{target.name}", t) for t in texts)
    return rows, extra_rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    captions: dict[str, list[str]] = {}
    for image, caption in rows:
        captions.setdefault(image, []).append(caption)
    path.write_text("".join(json.dumps({"image": image, "captions": texts}) + "\n"
                            for image, texts in captions.items()), encoding="utf-8")


def run(home: Path, reader: str, listing: Path) -> dict:
    """One whole ``xmodal extract`` command; its wall time and what each extractor encoded."""
    env = {**os.environ, "XMODAL_HOME": str(home)}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *COMMAND, reader, "--path", str(listing), "--encoders", "effnet,minilm"],
                            env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"extract failed:\n{result.stderr}")
    encoded = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in ("effnet", "minilm"):  # "NAME extracted|cached SECONDS s ... PATH"
            manifest = json.loads((Path(fields[-1]) / "manifest.json").read_text())
            encoded[fields[0]] = 0 if fields[1] == "cached" else manifest["encoded"]
    return {"seconds": seconds, "encoded": encoded, "stdout": result.stdout}


def committed_images(home: Path) -> tuple[int, int]:
    """(images, shards) committed to the effnet store so far."""
    images = shards = 0
    for manifest in (home / "features" / "_store").glob("effnet-*/*/manifest.json"):
        try:
            images += len(json.loads(manifest.read_text())["keys"])
            shards += 1
        except (OSError, json.JSONDecodeError):
            pass
    return images, shards


def killed_run(home: Path, listing: Path, total: int, fraction: float) -> dict:
    """Start the command, SIGKILL it half a chunk after ``fraction`` of the images are committed."""
    env = {**os.environ, "XMODAL_HOME": str(home)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *COMMAND, "csv", "--path", str(listing), "--encoders",
                                "effnet,minilm"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    commits: list[float] = []
    shards_seen = 0
    while process.poll() is None:
        images, shards = committed_images(home)
        if shards > shards_seen:
            commits.append(time.perf_counter())
            shards_seen = shards
        if images >= fraction * total:
            interval = (commits[-1] - commits[0]) / max(len(commits) - 1, 1)
            time.sleep(interval / 2)  # in the middle of the next chunk
            process.send_signal(signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.1)
    else:
        raise SystemExit("the extraction finished before it could be killed")
    images, _ = committed_images(home)
    return {"seconds": time.perf_counter() - started, "committed": images}


def disk_mib(path: Path) -> float:
    return folder_bytes(path) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the collection and caches (default: a temp folder, "
                        "deleted afterwards)")
    parser.add_argument("--emoji", type=Path, default=SHARED / "emoji")
    parser.add_argument("--flickr", type=Path, default=SHARED / "flickr8k-1k")
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--emojis", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="xmodal-cache-bench-"))
    try:
        report = benchmark(work, args)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")


def benchmark(work: Path, args: argparse.Namespace) -> str:
    collection = work / "collection"
    collection.mkdir(parents=True)
    rows, extra = build_collection(collection, args.emoji, args.flickr, args.photos, args.emojis, 10)
    n_images = args.photos + args.emojis
    listing = collection / "collection.csv"
    home = work / "home"
    steps: list[tuple[str, str, dict]] = []

    write_csv(listing, rows)
    steps.append(("a", f"full extraction: {n_images} images, {len(rows)} captions, empty cache",
                  run(home, "csv", listing)))
    steps.append(("a'", "the same command again, nothing changed", run(home, "csv", listing)))
    edited = list(rows)
    edited[0] = (edited[0][0], edited[0][1] + " It is an edited caption.")
    write_csv(listing, edited)
    steps.append(("b", "one caption edited", run(home, "csv", listing)))
    write_csv(listing, edited + extra)
    steps.append(("c", f"10 images added ({len(extra)} captions)", run(home, "csv", listing)))
    jsonl = collection / "collection.jsonl"
    write_jsonl(jsonl, edited + extra)
    steps.append(("e", "the collection of (c) read as JSONL instead of CSV", run(home, "jsonl", jsonl)))
    store_mib = disk_mib(home / "features" / "_store")
    views_mib = disk_mib(home / "features") - store_mib

    write_csv(listing, rows)
    killed_home = work / "home-killed"
    killed = killed_run(killed_home, listing, n_images, 0.8)
    rerun = run(killed_home, "csv", listing)
    rerun["killed"] = killed
    steps.append(("d", f"empty cache, SIGKILL after {killed['seconds']:.1f} s with {killed['committed']} of "
                  f"{n_images} images committed; the rerun", rerun))

    full = steps[0][2]["seconds"]
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
             f"Python {platform.python_version()}, CPU only.", "",
             "| step | change | wall s | vs (a) | images encoded | texts encoded |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for step, what, result in steps:
        encoded = result["encoded"]
        lines.append(f"| {step} | {what} | {result['seconds']:.1f} | {result['seconds'] / full:.0%} | "
                     f"{encoded.get('effnet', '-')} | {encoded.get('minilm', '-')} |")
    total_d = killed["seconds"] + rerun["seconds"]
    lines += ["", f"(d) killed run + rerun together: {total_d:.1f} s ({total_d / full:.0%} of (a)).",
              f"Disk after (a)-(e): store {store_mib:.0f} MiB, dataset views {views_mib:.0f} MiB."]
    return "\n".join(lines)
