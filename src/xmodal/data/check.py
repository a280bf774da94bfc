"""`xmodal data info --check`: decode every image of a dataset, in worker processes, and list the bad ones.

Reading a dataset only checks that its image files exist; a truncated or oversized file is
found when extraction decodes it. This decodes each image exactly as extraction does (same
resize, same pixel limit) beforehand, so a user can fix a collection before spending an
extraction on it.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from xmodal.data.images import DEFAULT_MAX_PIXELS, load_rgb
from xmodal.data.records import Dataset
from xmodal.errors import DataError


@dataclass
class ImageCheck:
    checked: int
    bad: list[tuple[str, str]]  # (item id, what is wrong)


def _check_one(job: tuple[str, str, int, int]) -> tuple[str, str] | None:
    item_id, path, size, max_pixels = job
    try:
        load_rgb(Path(path), size, max_pixels)
    except DataError as error:
        return item_id, str(error)
    return None


def check_images(dataset: Dataset, *, size: int = 224, max_pixels: int = DEFAULT_MAX_PIXELS,
                 workers: int | None = None) -> ImageCheck:
    """Decode every image file of ``dataset``; feature-only datasets have none to check."""
    jobs = [(item.id, str(item.image), size, max_pixels) for item in dataset.items if isinstance(item.image, Path)]
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    if workers == 1:
        results = list(map(_check_one, jobs))
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_check_one, jobs, chunksize=max(1, len(jobs) // (workers * 8))))
    return ImageCheck(len(jobs), [result for result in results if result is not None])
