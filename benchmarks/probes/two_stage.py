"""Two-stage search against the model's own exhaustive ranking, for trained pairwise runs.

    python -m benchmarks probe two-stage RUN [RUN ...] [--ks 10 50 100] [--split test]

For each run (best checkpoint) the split is encoded once; then, one after the other in the same
process, it times (a) stage 1 alone: the global cosine of ``embed`` (what the shortlist is ranked
by), (b) exhaustive: the model's score of every image x text pair (evaluation's blocks), and (c)
two-stage for each K: the stage-1 top K of each query reranked by the model, both directions
(:func:`xmodal.eval.two_stage.two_stage_scores`). Each timing is the faster of two (the machine is
shared); metrics are computed outside the timed parts. Prints a markdown table per run: R@1/5/10,
rsum, rsum against exhaustive, pairs the model scored, seconds and the time against exhaustive.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import torch

from xmodal.api import load_run
from xmodal.eval.metrics import direction_metrics
from xmodal.eval.protocol import encode_split, score_matrix
from xmodal.eval.two_stage import cosine_scores, two_stage_scores

KEYS = [("i2t", "r@1"), ("i2t", "r@5"), ("i2t", "r@10"), ("t2i", "r@1"), ("t2i", "r@5"), ("t2i", "r@10")]


def best_time(compute: Callable[[], object], repeats: int = 2) -> tuple[object, float]:
    """The result of ``compute`` and its fastest wall time over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = compute()
        times.append(time.perf_counter() - started)
    return result, min(times)


@torch.no_grad()
def compare(run_dir: Path, ks: list[int], split_name: str = "test") -> dict[str, dict]:
    """Metrics, pairs scored by the model and seconds of each ranking of one run."""
    run = load_run(run_dir)
    model, split = run.model, run.split(split_name)
    images, texts = encode_split(model, split, run.device)
    if model.embed(images) is None:
        raise SystemExit(f"{run_dir}: model {model.name!r} has no global vector, so no first stage to compare")
    gt = split.ground_truth()
    first, seconds = best_time(lambda: cosine_scores(model.embed(images), model.embed(texts)))
    rows = {"stage 1 (global cosine)": direction_metrics(first, first, gt) | {"seconds": seconds, "pairs": 0}}
    scores, seconds = best_time(lambda: score_matrix(model, images, texts))
    rows["exhaustive"] = direction_metrics(scores, scores, gt) | {"seconds": seconds, "pairs": scores.numel()}
    for k in ks:
        (i2t, t2i), seconds = best_time(lambda k=k: two_stage_scores(model, images, texts, k))
        pairs = min(k, scores.shape[1]) * len(scores) + min(k, len(scores)) * scores.shape[1]
        rows[f"two-stage K = {k}"] = direction_metrics(i2t, t2i, gt) | {"seconds": seconds, "pairs": pairs}
    return rows


def table(name: str, rows: dict[str, dict]) -> list[str]:
    exhaustive = rows["exhaustive"]
    lines = [f"### {name}", "", "| ranking | pairs the model scored | R@1 i2t | R@5 i2t | R@10 i2t | R@1 t2i | "
             "R@5 t2i | R@10 t2i | rsum | rsum - exhaustive | seconds | time / exhaustive |", "| --- " * 12 + "|"]
    for method, row in rows.items():
        cells = " | ".join(f"{row[d][k]:.1f}" for d, k in KEYS)
        lines.append(f"| {method} | {row['pairs']:,} | {cells} | {row['rsum']:.1f} | "
                     f"{row['rsum'] - exhaustive['rsum']:+.1f} | {row['seconds']:.2f} | "
                     f"{row['seconds'] / exhaustive['seconds']:.3f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe two-stage", description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        print("\n".join(table(str(run_dir), compare(run_dir, args.ks, args.split))), flush=True)
