"""Shared by the benchmark scripts: train a config for several seeds and tabulate test metrics."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Iterable

from xmodal.config import load_config
from xmodal.eval.protocol import evaluate_split
from xmodal.factory import load_trained
from xmodal.training.trainer import train

REPO = Path(__file__).resolve().parents[1]


def train_and_test(config: str | Path, out: Path, overrides: Iterable[str] = ()) -> dict:
    """Train ``config`` (a shipped name or a file) into a fresh ``out``; its best checkpoint's test metrics."""
    if out.exists():
        shutil.rmtree(out)
    train(load_config(config, list(overrides)), out)
    run = load_trained(out)
    return evaluate_split(run.model, run.data.split("test"), run.device, map_at=run.config.eval.map_at)


def mean_std(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def metric_row(name: str, runs: list[dict], keys: list[tuple[str, str]]) -> str:
    """A markdown row: one mean ± std cell per (direction, metric) key; MAP x1, recall in %."""
    cells = []
    for direction, key in keys:
        values = [run[direction][key] if direction else run[key] for run in runs]
        cells.append(mean_std(values, digits=3 if key.startswith("map") else 1))
    return f"| {name} | " + " | ".join(cells) + " |"
