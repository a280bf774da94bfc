"""How finished runs would have stopped under other patiences, from their validation curves.

    python -m benchmarks probe early-stopping RUN [RUN ...] [--patience 1 2 3 5 10]

For each run folder: the validation curve its ``log.jsonl`` recorded (the config's headline
metric), then for each patience the epoch training would have stopped at and the epoch and score
it would have kept, by the trainer's own rule (:mod:`xmodal.training.stopping`). It reads logs
only and trains nothing, so it answers "would a longer patience have kept a better epoch?" for
runs already made: SCAN on the mosaics (issue 29) stopped at its first dip with patience 3.
A curve replayed past the run's last epoch is not known: a patience the run never reached says
so rather than guess.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xmodal.errors import XmodalError
from xmodal.training.curves import read_log
from xmodal.training.stopping import replay


def validation_curve(run_dir: Path) -> tuple[str, list[float]]:
    """The headline metric's name and its value after each epoch, from ``run_dir/log.jsonl``."""
    log = read_log(run_dir / "log.jsonl")
    if not log or not log[0].get("val"):
        raise XmodalError(f"{run_dir / 'log.jsonl'}: no validation scores (no log, or a run without a "
                          "validation split); give a trained run folder")
    (metric,) = log[0]["val"]
    return metric, [record["val"][metric] for record in log]


def stops(curve: list[float], patiences: list[int], ran_to_the_end: bool) -> dict[int, dict | None]:
    """For each patience: the stopping epoch and what it keeps, or None when the curve ends first
    without reaching the run's epochs (the run stopped earlier: what came next is unknown)."""
    found: dict[int, dict | None] = {}
    for patience in patiences:
        epoch, stopping = replay(curve, patience)
        reached = stopping.stopped or ran_to_the_end
        found[patience] = ({"stops_at": epoch, "stopped_early": stopping.stopped, "keeps": stopping.best_epoch,
                            "score": stopping.best} if reached else None)
    return found


def table(runs: list[Path], patiences: list[int], epochs: dict[Path, int]) -> list[str]:
    lines = ["| run | validation curve | " + " | ".join(f"patience {p}" for p in patiences) + " |",
             "| --- " * (2 + len(patiences)) + "|"]
    for run_dir in runs:
        metric, curve = validation_curve(run_dir)
        cells = []
        for found in stops(curve, patiences, len(curve) >= epochs[run_dir]).values():
            if found is None:
                cells.append("unknown (the run stopped first)")
            else:
                stop = f"stops after {found['stops_at']}" if found["stopped_early"] else "runs to the end"
                cells.append(f"{stop}, keeps {found['keeps']} ({found['score']:.1f})")
        shown = ", ".join(f"{value:.1f}" for value in curve)
        lines.append(f"| {run_dir} | {metric}: {shown} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    from xmodal.config import load_config

    parser = argparse.ArgumentParser(prog="python -m benchmarks probe early-stopping",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--patience", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    args = parser.parse_args(argv)
    epochs = {run_dir: load_config(run_dir / "config.yaml").train.epochs for run_dir in args.runs}
    print("\n".join(table(args.runs, args.patience, epochs)), flush=True)
