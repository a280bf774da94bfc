"""The floor: `cca` and `dual` on wikipedia-features and emoji, seeds 0-2, test split.

    XMODAL_HOME=... .venv/bin/python benchmarks/baselines.py [--seeds 0 1 2] [--out /tmp/bench]

Writes benchmarks/results/baselines.md (tables of mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import REPO, metric_row, train_and_test

WIKI = REPO.parent / "shared" / "data" / "wikipedia"
EMOJI = REPO.parent / "shared" / "data" / "emoji"
MAP_KEYS = [("i2t", "map"), ("t2i", "map"), ("i2t", "map@50"), ("t2i", "map@50")]
RECALL_KEYS = [("i2t", "r@1"), ("i2t", "r@5"), ("i2t", "r@10"), ("t2i", "r@1"), ("t2i", "r@5"), ("t2i", "r@10"),
               ("", "rsum"), ("i2t", "map"), ("t2i", "map")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("/tmp/xmodal-bench"))
    args = parser.parse_args()
    lines = ["# Baselines", "", "Test split, mean ± std over seeds " + ", ".join(map(str, args.seeds)) +
             ". Produced by `benchmarks/baselines.py`.", ""]

    lines += ["## wikipedia-features (published SIFT-BoW / LDA features, official 2173/693 split)", "",
              "| model | MAP@all i2t | MAP@all t2i | MAP@50 i2t | MAP@50 t2i |", "| --- | --- | --- | --- | --- |"]
    for model, seeds in (("cca", [0]), ("dual", args.seeds)):
        started = time.perf_counter()
        runs = [train_and_test(f"{model}/wikipedia-features", args.out / f"wiki-{model}-{s}",
                               [f"data.path={WIKI}", f"train.seed={s}"]) for s in seeds]
        label = model if model != "cca" else "cca (closed form, ridge chosen on validation, deterministic)"
        lines.append(metric_row(label, runs, MAP_KEYS))
        print(lines[-1], f"({time.perf_counter() - started:.0f} s)", flush=True)

    lines += ["", "## emoji (EfficientNet-Lite0 pooled 1280-d + MiniLM sentence 384-d; 382 test images, 764 texts)",
              "", "| model | R@1 i2t | R@5 i2t | R@10 i2t | R@1 t2i | R@5 t2i | R@10 t2i | rsum | MAP i2t | MAP t2i |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, extra, seeds in (("cca", [], [0]), ("dual", [], args.seeds),
                                ("dual", ["model.params.hardest_negative=false"], args.seeds)):
        runs = [train_and_test(f"{model}/emoji", args.out / f"emoji-{model}-{s}", [f"data.path={EMOJI}",
                                                                                  f"train.seed={s}", *extra])
                for s in seeds]
        label = {"cca": "cca (closed form, ridge chosen on validation)", "dual": "dual (VSE++ hardest negative)"}[model]
        if "model.params.hardest_negative=false" in extra:
            label = "dual (summed negatives)"
        lines.append(metric_row(label, runs, RECALL_KEYS))
        print(lines[-1], flush=True)
    (REPO / "benchmarks" / "results" / "baselines.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
