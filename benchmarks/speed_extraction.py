"""Feature extraction (images/s) against the bare EfficientNet-Lite0 forward pass, one run each.

Part ``extraction`` of ``python -m benchmarks speed``. For each source the pipeline is
:func:`xmodal.features.extract.extract` of the ``effnet`` features (decode with reduce-on-load,
resize, normalise, forward, write fp16 shards), forced to encode every image into a temporary
``XMODAL_HOME``; the bare pass is the network's ``extract_features`` on ready-made batches of the
same size and resolution. Sources: emoji (64 px PNGs from the Noto npm tarball), Flickr8k photos
(about 500 x 375 JPEGs) and a folder of generated 12-megapixel JPEGs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.plan import SHARED
from xmodal.data.collection import read_folder
from xmodal.data.records import Dataset
from xmodal.data.registry import read_dataset
from xmodal.encoders.image import EfficientNetLite0
from xmodal.features.extract import ExtractOptions, extract

BIG_SIZE = (4000, 3000)  # 12 megapixels, a phone camera's photo


def make_big_jpegs(folder: Path, count: int) -> Path:
    """``count`` smooth, camera-like 12-megapixel JPEGs (gradients plus noise, quality 90)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    small = (BIG_SIZE[1] // 8, BIG_SIZE[0] // 8)
    for index in range(count):
        path = folder / f"photo{index:03d}.jpg"
        if path.exists():
            continue
        base = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        coarse = np.asarray(Image.fromarray(base.astype(np.uint8)).resize(small[::-1], Image.Resampling.BICUBIC),
                            dtype=np.float32)
        detail = coarse + rng.normal(0, 12, coarse.shape)
        Image.fromarray(detail.clip(0, 255).astype(np.uint8)).resize(BIG_SIZE, Image.Resampling.BICUBIC) \
            .save(path, quality=90)
        (folder / f"photo{index:03d}.txt").write_text("a photo\n")
    return folder


def sources(count: int, scratch: Path) -> list[tuple[str, Dataset, int]]:
    """(name, dataset of ``count`` images, resolution) for each source that exists here."""
    found = []
    if (SHARED / "emoji").is_dir():
        emoji = read_dataset("emoji", SHARED / "emoji")
        found.append(("emoji (64 px PNG)", Dataset("emoji", emoji.items[:count]), 224))
    if (SHARED / "flickr8k-1k").is_dir():
        flickr = read_dataset("flickr8k", SHARED / "flickr8k-1k")
        found.append(("Flickr8k (~500 x 375 JPEG)", Dataset("flickr8k", flickr.items[:count]), 448))
    big = read_folder(make_big_jpegs(scratch / "big-jpegs", max(8, count // 4)))
    found.append(("generated 12-megapixel JPEG", big, 448))
    return found


def bare_images_per_second(resolution: int, batch_size: int, count: int, device: torch.device) -> float:
    encoder = EfficientNetLite0(resolution, device)
    batch = torch.randn(batch_size, 3, resolution, resolution, device=device).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        encoder.network.extract_features(batch)  # warm-up
        started, done = time.perf_counter(), 0
        while done < count:
            encoder.network.extract_features(batch)
            done += batch_size
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return done / (time.perf_counter() - started)


def extraction_rows(count: int, device: torch.device) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="xmodal-speed-") as scratch_name:
        scratch = Path(scratch_name)
        previous = os.environ.get("XMODAL_HOME")
        os.environ["XMODAL_HOME"] = str(scratch / "home")
        try:
            for name, dataset, resolution in sources(count, scratch):
                options = ExtractOptions(image_resolution=resolution, device=device)
                extract(dataset, "effnet", options)  # warm-up: loads the network once
                started = time.perf_counter()
                extract(dataset, "effnet", options, force=True)
                pipeline = len(dataset) / (time.perf_counter() - started)
                bare = bare_images_per_second(resolution, options.batch_size, len(dataset), device)
                rows.append({"source": name, "images": len(dataset), "resolution": resolution,
                             "batch": options.batch_size, "pipeline": pipeline, "bare": bare,
                             "ratio": pipeline / bare})
        finally:
            if previous is None:
                os.environ.pop("XMODAL_HOME", None)
            else:
                os.environ["XMODAL_HOME"] = previous
    return rows


def extraction_table(rows: list[dict]) -> list[str]:
    lines = ["| source | images | resolution | batch | pipeline images/s | bare forward images/s | pipeline / bare |",
             "| --- " * 7 + "|"]
    lines += [f"| {row['source']} | {row['images']} | {row['resolution']} | {row['batch']} | {row['pipeline']:.1f} | "
              f"{row['bare']:.1f} | {row['ratio']:.0%} |" for row in rows]
    return lines
