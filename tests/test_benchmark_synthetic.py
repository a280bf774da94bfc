"""The synthetic SCAN-precomputed generator writes what the scan-precomputed reader reads, in the field's layout."""

from __future__ import annotations

import numpy as np

from benchmarks.synthetic import CAPTIONS, PRESETS, generate
from xmodal.data.registry import read_dataset


def test_a_small_synthetic_set_reads_as_scan_precomputed(tmp_path):
    generate(tmp_path, {"train": 20, "dev": 5, "testall": 10}, vocab=50, regions=4, dim=8, topics=3)
    images = np.load(tmp_path / "testall_ims.npy", mmap_mode="r")
    assert images.shape == (10, 4, 8) and images.dtype == np.float16 and (images >= 0).all()
    dataset = read_dataset("scan-precomputed", tmp_path)
    counts = {split: sum(item.split == split for item in dataset.items) for split in ("train", "val", "test")}
    assert counts == {"train": 20, "val": 5, "test": 10}  # dev -> val, testall -> test (no test)
    assert all(len(item.texts) == CAPTIONS for item in dataset.items)
    assert PRESETS["coco"]["train"] == 113287 and PRESETS["coco"]["testall"] == 5000  # SCAN's COCO release
