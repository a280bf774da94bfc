"""The ``shards`` part of ``python -m benchmarks search`` (issue 34): image extraction in one process
against the same images split over two (``xmodal extract --shard 0/2`` and ``1/2`` at once).

Each setting extracts the Flickr8k-1k photos' ``effnet`` features at 448 px from an empty
``XMODAL_HOME`` (so every image is decoded and encoded), each process with one torch thread, through
the real command line; the two-process setting's time runs from the start of both to the end of the
last, which builds the view. The figure only means something on an otherwise idle machine: the
report prints the load average seen before each setting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.plan import SHARED
from benchmarks.serving import XMODAL

FLICKR = SHARED / "flickr8k-1k"
RESOLUTION = 448


def timed_extraction(home: Path, shards: int) -> dict:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, "XMODAL_HOME": str(home), "OMP_NUM_THREADS": "1"}
    command = [*XMODAL, "extract", "flickr8k", "--path", str(FLICKR), "--encoders", "effnet",
               "--resolution", str(RESOLUTION)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    processes = [subprocess.Popen([*command, *(["--shard", f"{index}/{shards}"] if shards > 1 else [])], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for index in range(shards)]
    outputs = [process.communicate() for process in processes]
    seconds = time.perf_counter() - started
    for process, (_, err) in zip(processes, outputs):
        if process.returncode != 0:
            raise RuntimeError(f"xmodal extract failed:\n{err[-2000:]}")
    return {"processes": shards, "seconds": seconds, "load_before": load,
            "stdout": [out.strip() for out, _ in outputs]}


def part_shards(out: Path) -> dict:
    from xmodal.data.registry import read_dataset

    images = len(read_dataset("flickr8k", FLICKR).items)
    rows = [timed_extraction(out / f"shards-home-{n}", n) for n in (1, 2)]
    for row in rows:
        row["images_per_s"] = images / row["seconds"]
        shutil.rmtree(out / f"shards-home-{row['processes']}", ignore_errors=True)
    return {"images": images, "resolution": RESOLUTION, "rows": rows, "cores": os.cpu_count(),
            "python": sys.version.split()[0]}


def report(shards: dict) -> list[str]:
    one, two = shards["rows"]
    return ["", f"## Extraction over processes: {shards['images']:,} Flickr8k-1k photos at {shards['resolution']} px",
            "", "`xmodal extract flickr8k --encoders effnet` from an empty cache, one torch thread per process, "
            f"on this {shards['cores']}-core machine; two processes are `--shard 0/2` and `--shard 1/2` started "
            "together (the last to finish builds the view). Load average: the machine's 1-minute load just before "
            "each setting.", "",
            "| processes | seconds | images/s | load before |", "| --- | --- | --- | --- |",
            *[f"| {row['processes']} | {row['seconds']:.1f} | {row['images_per_s']:.1f} | {row['load_before']:.1f} |"
              for row in (one, two)],
            "", f"Two processes against one: **{one['seconds'] / two['seconds']:.2f}x** the throughput."]
