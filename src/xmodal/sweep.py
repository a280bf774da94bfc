"""Grid search over any model's config: one base config, a grid of dotted keys, one run per point.

Each point of the grid (``{"model.params.alpha": [0.1, 1], "optim.lr": [1e-4, 1e-3]}`` gives
four) is trained on the train split into ``out/<point>``, its best checkpoint scored on one split
(validation by default), and the points ranked by one metric. The table goes to
``out/sweep.md`` and ``out/sweep.json``. A point whose folder already holds a run of the same
config is resumed (a finished one is only re-scored), so an interrupted sweep can be re-run.

    python -m xmodal.sweep --config gpldan/wikipedia-features --out runs/grid \\
        --grid model.params.alpha=0.1,1,10 --grid model.params.beta=0,0.1,1 --metric map
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import math
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from xmodal.api import load_run
from xmodal.config import RunConfig, apply_overrides, dump_config, parse_override, read_config, validate_config
from xmodal.errors import XmodalError
from xmodal.factory import train_config
from xmodal.logs import configure_logging
from xmodal.training.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

Grid = Mapping[str, Sequence[Any]]


@dataclass
class SweepPoint:
    """One trained grid point: its settings, its score on the sweep's split, and every metric."""

    name: str
    settings: dict[str, Any]
    score: float
    metrics: dict
    run: str
    best_epoch: int


def expand_grid(grid: Grid) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    if not grid:
        return [{}]
    empty = [key for key, values in grid.items() if not len(values)]
    if empty:
        raise XmodalError(f"grid key {empty[0]!r} has no values")
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw["model"]["params"]["alpha"] = value`` for ``key = "model.params.alpha"``."""
    *path, last = key.split(".")
    node = raw
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise XmodalError(f"grid key {key!r}: {part} is a value, not a section")
    node[last] = value


def point_config(base: Mapping[str, Any], settings: Mapping[str, Any]) -> RunConfig:
    raw = copy.deepcopy(dict(base))
    for key, value in settings.items():
        set_dotted(raw, key, value)
    return validate_config(raw, "sweep point " + point_name(settings))


def point_name(settings: Mapping[str, Any]) -> str:
    """A folder name for a point: ``alpha=0.1,beta=1`` (last part of each key)."""
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in settings.items()]
    name = ",".join(parts) or "base"
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in name)


def metric_value(metrics: dict, metric: str) -> float:
    """A number from :func:`evaluate_split`'s output.

    ``rsum``; ``map``, ``map@50`` ... as the mean of the i2t and t2i values; ``i2t.map@50`` for one
    direction.
    """
    if metric in metrics and not isinstance(metrics[metric], dict):
        return float(metrics[metric])
    if "." in metric:
        direction, name = metric.split(".", 1)
        return float(metrics[direction][name])
    if metric not in metrics.get("i2t", {}):
        raise XmodalError(f"unknown metric {metric!r}; choose rsum, or one of {', '.join(metrics.get('i2t', {}))} "
                          "(mean of i2t and t2i), or i2t.<name> / t2i.<name>")
    return (metrics["i2t"][metric] + metrics["t2i"][metric]) / 2


def train_point(config: RunConfig, run_dir: Path) -> None:
    """Train ``config`` into ``run_dir``; resume a run of the same config, replace a different one."""
    same = (run_dir / "config.yaml").is_file() and (run_dir / "config.yaml").read_text() == dump_config(config)
    if run_dir.exists() and not same:
        shutil.rmtree(run_dir)
    train_config(config, run_dir, resume=same)


def score_run(run_dir: Path, splits: Sequence[str] = ("val",), checkpoint: str = "best") -> dict[str, dict]:
    """Metrics of a run's checkpoint on each split, as ``xmodal eval --split SPLIT --json`` gives them."""
    run = load_run(run_dir, checkpoint)
    return {split: run.evaluate(split) for split in splits}


def best_epoch(run_dir: Path) -> int:
    return int(load_checkpoint(run_dir / "checkpoints" / "best.pt")["best_epoch"])


def run_sweep(base: Mapping[str, Any] | Path, grid: Grid, out: Path, *, metric: str = "map",
              split: str = "val") -> list[SweepPoint]:
    """Train every grid point on the train split, score each on ``split``, best first."""
    raw = read_config(base) if isinstance(base, (str, Path)) else dict(base)
    out = Path(out)
    points = []
    for settings in expand_grid(grid):
        config = point_config(raw, settings)
        run_dir = out / point_name(settings)
        train_point(config, run_dir)
        metrics = score_run(run_dir, (split,))[split]
        points.append(SweepPoint(point_name(settings), settings, metric_value(metrics, metric), metrics,
                                 str(run_dir), best_epoch(run_dir)))
        logger.info("sweep point %s: %s %s %.4f", points[-1].name, split, metric, points[-1].score)
    points.sort(key=lambda p: -p.score if not math.isnan(p.score) else math.inf)
    write_table(points, out, metric, split)
    return points


TABLE_METRICS = ("i2t.map", "t2i.map", "i2t.map@50", "t2i.map@50", "rsum")


def format_table(points: Sequence[SweepPoint], metric: str, split: str) -> str:
    """Markdown: one row per point, best first, with its settings, score and the usual metrics."""
    keys = list(points[0].settings) if points else []
    extra = [m for m in TABLE_METRICS if points and _has(points[0].metrics, m)]
    header = [*(key.rsplit(".", 1)[-1] for key in keys), f"{split} {metric}", *extra, "best epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in points:
        cells = [str(point.settings[key]) for key in keys] + [f"{point.score:.4f}"]
        cells += [f"{metric_value(point.metrics, m):.4f}" for m in extra] + [str(point.best_epoch)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _has(metrics: dict, metric: str) -> bool:
    try:
        metric_value(metrics, metric)
    except (KeyError, XmodalError):
        return False
    return True


def write_table(points: Sequence[SweepPoint], out: Path, metric: str, split: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(format_table(points, metric, split))
    (out / "sweep.json").write_text(json.dumps({"metric": metric, "split": split,
                                                "points": [asdict(p) for p in points]}, indent=1))


def parse_grid(entries: Sequence[str]) -> dict[str, list[Any]]:
    """``["model.params.alpha=0.1,1"]`` -> ``{"model.params.alpha": [0.1, 1.0]}`` (YAML scalars)."""
    grid: dict[str, list[Any]] = {}
    for entry in entries:
        if "=" not in entry:
            raise XmodalError(f"--grid {entry!r}: expected KEY=V1,V2,...")
        key, values = entry.split("=", 1)
        grid[key.strip()] = [parse_override(f"{key}={value}")[1] for value in values.split(",")]
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xmodal.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="repeatable")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--metric", default="map")
    parser.add_argument("--split", default="val")
    parser.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0)
    args = parser.parse_args(argv)
    configure_logging(args.verbosity)
    try:
        raw = apply_overrides(read_config(args.config), args.overrides)
        points = run_sweep(raw, parse_grid(args.grid), args.out, metric=args.metric, split=args.split)
    except XmodalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(points, args.metric, args.split), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
