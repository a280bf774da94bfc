"""Shared by the benchmark scripts: train a config for several seeds and tabulate test metrics."""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable

from xmodal.config import load_config
from xmodal.eval.protocol import evaluate_split
from xmodal.factory import load_trained, with_resolved_paths
from xmodal.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("benchmarks")


def train_and_test(config: str | Path, out: Path, overrides: Iterable[str] = ()) -> dict:
    """Train ``config`` (a shipped name or a file) into a fresh ``out``; its best checkpoint's test metrics."""
    if out.exists():
        shutil.rmtree(out)
    train(load_config(config, list(overrides)), out)
    run = load_trained(out)
    return evaluate_split(run.model, run.data.split("test"), run.device, map_at=run.config.eval.map_at)


def train_and_measure(config: str | Path, run_dir: Path, overrides: list[str],
                      measure: Callable[[Path], dict]) -> dict:
    """Train into ``run_dir`` and return ``measure(run_dir)`` plus timings, kept in ``run_dir/test.json``.

    A run whose ``test.json`` exists is not trained again, so an interrupted benchmark resumes; a
    run whose training finished (``trained.json``) before an interrupted measurement is only measured.
    A run folder whose recorded ``config.yaml`` differs from what ``config`` and ``overrides`` give
    now (a changed default, a new override) is trained again.
    """
    done, trained_file = run_dir / "test.json", run_dir / "trained.json"
    wanted = with_resolved_paths(load_config(config, overrides))
    if (run_dir / "config.yaml").is_file() and load_config(run_dir / "config.yaml") != wanted:
        logger.warning("%s was trained with another config than %s asks for now: training it again", run_dir, config)
        done.unlink(missing_ok=True)
        trained_file.unlink(missing_ok=True)
    if done.exists():
        return json.loads(done.read_text())
    if not trained_file.exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        started = time.perf_counter()
        trained = train(wanted, run_dir)
        trained_file.write_text(json.dumps({"train_seconds": time.perf_counter() - started,
                                            "epochs": trained.epochs_run, "best_epoch": trained.best_epoch}))
    result = measure(run_dir) | json.loads(trained_file.read_text())
    done.write_text(json.dumps(result, indent=1))
    return result


def mean_std(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """"mean ± std" (one value: itself); "-" when any value is NaN (e.g. MAP of unlabelled data)."""
    values = [v * scale for v in values]
    if any(math.isnan(v) for v in values):
        return "-"
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
