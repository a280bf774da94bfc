"""Two-stage retrieval against exhaustive co-attentive ranking on emoji test (JGCAR section 2.4).

    XMODAL_HOME=/tmp/xh-jgcar .venv/bin/python benchmarks/two_stage.py [--runs /tmp/jgcar-bench] \\
        [--models jgcar sgcar] [--seeds 0 1 2] [--ks 10 50 100]

Uses the runs trained by benchmarks/jgcar.py (``RUNS/<model>-s<seed>``). For each run the
test split is encoded once; then, in the same process and one after the other, it times
(a) exhaustive: the co-attentive score of every image x text pair (``score_matrix``, the
evaluation protocol's blocks), and (b) two-stage for each K: global cosine shortlist + co-attentive
rerank of the K candidates, both directions (``two_stage_scores``). Each is timed twice and the
faster time kept (the machine is shared). Metrics are computed outside the timed parts. Prints
a markdown table of R@1/5/10, rsum, the rsum difference to exhaustive, the seconds and the time
ratio, mean ± std over seeds, and writes it to ``RUNS/two_stage.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import torch
from common import mean_std

from xmodal.eval.metrics import direction_metrics
from xmodal.eval.protocol import encode_split, score_matrix
from xmodal.factory import load_trained
from xmodal.search import two_stage_scores

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
def compare(run_dir: Path, ks: list[int]) -> dict[str, dict]:
    """Metrics and seconds of exhaustive ranking and of two-stage search for each K, one run."""
    run = load_trained(run_dir)
    split = run.data.split("test")
    images, texts = encode_split(run.model, split, run.device)
    gt = split.ground_truth()
    scores, seconds = best_time(lambda: score_matrix(run.model, images, texts))
    rows = {"exhaustive": direction_metrics(scores, scores, gt) | {"seconds": seconds, "pairs": scores.numel()}}
    for k in ks:
        (i2t, t2i), seconds = best_time(lambda k=k: two_stage_scores(run.model, images, texts, k))
        pairs = k * (len(scores) + scores.shape[1])
        rows[f"K = {k}"] = direction_metrics(i2t, t2i, gt) | {"seconds": seconds, "pairs": pairs}
    return rows


def table(name: str, per_seed: list[dict[str, dict]]) -> list[str]:
    lines = [f"### {name}", "", "| ranking | co-attentive pairs scored | R@1 i2t | R@5 i2t | R@10 i2t | R@1 t2i | "
             "R@5 t2i | R@10 t2i | rsum | rsum - exhaustive | seconds | time / exhaustive |", "| --- " * 12 + "|"]
    for method in per_seed[0]:
        runs = [seed[method] for seed in per_seed]
        cells = [mean_std([run[d][k] for run in runs], digits=1) for d, k in KEYS]
        rsum = mean_std([run["rsum"] for run in runs], digits=1)
        gain = mean_std([run["rsum"] - seed["exhaustive"]["rsum"] for run, seed in zip(runs, per_seed)], digits=1)
        seconds = mean_std([run["seconds"] for run in runs], digits=1)
        ratio = mean_std([run["seconds"] / seed["exhaustive"]["seconds"] for run, seed in zip(runs, per_seed)],
                         digits=2)
        lines.append(f"| {method} | {runs[0]['pairs']} | " + " | ".join(cells) + f" | {rsum} | {gain} | {seconds} "
                     f"| {ratio} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, default=Path("/tmp/jgcar-bench"))
    parser.add_argument("--models", nargs="+", default=["jgcar", "sgcar"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    args = parser.parse_args()
    lines = [f"## Two-stage vs exhaustive co-attentive ranking, emoji test, seeds {', '.join(map(str, args.seeds))}",
             ""]
    for model in args.models:
        per_seed = [compare(args.runs / f"{model}-s{seed}", args.ks) for seed in args.seeds]
        lines += table(model.upper(), per_seed)
        print("\n".join(lines[-len(per_seed[0]) - 5 :]), flush=True)
    (args.runs / "two_stage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
