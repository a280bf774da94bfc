"""A small synthetic feature dataset with learnable structure, for trainer and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def write_feature_dataset(folder: Path, n_train: int = 120, n_val: int = 40, n_test: int = 40,
                          n_classes: int = 4, seed: int = 0) -> Path:
    """``{split}_images/_texts/_labels.npy``: both sides are noisy views of a per-item code."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 8))
    folder.mkdir(parents=True, exist_ok=True)
    image_map, text_map = rng.normal(size=(8, 20)), rng.normal(size=(8, 12))
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = rng.integers(0, n_classes, n)
        codes = centres[labels] + 0.7 * rng.normal(size=(n, 8))
        np.save(folder / f"{split}_images.npy", (codes @ image_map + 0.3 * rng.normal(size=(n, 20))).astype(np.float32))
        np.save(folder / f"{split}_texts.npy", (codes @ text_map + 0.3 * rng.normal(size=(n, 12))).astype(np.float32))
        np.save(folder / f"{split}_labels.npy", labels)
    return folder


def write_dual_config(path: Path, data: Path, **train) -> Path:
    config = {
        "model": {"name": "dual", "params": {"dim": 16, "hidden": 32, "dropout": 0.2, "hardest_negative": False}},
        "data": {"dataset": "precomputed", "path": str(data)},
        "optim": {"name": "adam", "lr": 0.003},
        "train": {"epochs": 4, "batch_size": 32, "seed": 3, "early_stopping": {"metric": "map", "patience": 50},
                  **train},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def write_caption_csv(path: Path, rows: list[dict]) -> Path:
    """A CSV collection file with the columns ``image``, ``caption``, ``split`` and any other the rows
    have (``label``), one row per caption."""
    import csv

    columns = ["image", "caption", "split"]
    columns += [key for key in dict.fromkeys(key for row in rows for key in row) if key not in columns]
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
