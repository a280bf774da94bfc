"""BSSAN's variants (Table II rows) beside `dual`, and BSSAN's speed: batched pairs and two-stage search.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bssan.py --dataset flickr8k \\
        [--seeds 0 1 2] [--variants w2r o2w no_reg full] [--text words] [--no-dual] \\
        [--out /tmp/bssan-bench] [--two-stage-seeds 0] [--set train.epochs=4 ...]

Each variant trains ``bssan/<dataset>`` (the CPU config) as ``bssan-<variant>``; the best
checkpoint (validation rsum, two-stage K = 20) is scored on the test split exhaustively (every
pair through BSSAN) and by two-stage search with K in {10, 50, 100}, each timed (only for the
seeds named by ``--two-stage-seeds``, default all: it costs about as much as the exhaustive
ranking again). ``dual`` trains
``dual/<dataset>``. Per-run results are kept in ``OUT/<run>/test.json`` (a finished run is
reused; delete its folder to retrain). The speed section (pairs per second of one batched
``similarity`` block against pair-by-pair calls) is measured once, on the first full run.
The tables are written to ``OUT/bssan-<dataset>.md`` and printed.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch
from common import REPO, mean_std, metric_row, train_and_measure

from xmodal.eval.metrics import direction_metrics
from xmodal.eval.protocol import encode_split, score_matrix
from xmodal.factory import load_trained
from xmodal.models.base import take
from xmodal.search import two_stage_scores

DATA = {"flickr8k": REPO.parent / "shared" / "data" / "flickr8k-1k", "emoji": REPO.parent / "shared" / "data" / "emoji"}
SHORTLISTS = (10, 50, 100)
KEYS = [("i2t", "r@1"), ("i2t", "r@5"), ("i2t", "r@10"), ("i2t", "medr"), ("t2i", "r@1"), ("t2i", "r@5"),
        ("t2i", "r@10"), ("t2i", "medr"), ("", "rsum")]
HEADER = ("| model | R@1 i2t | R@5 i2t | R@10 i2t | medr i2t | R@1 t2i | R@5 t2i | R@10 t2i | medr t2i | rsum | "
          "epochs (best) | train s |\n" + "| --- " * 12 + "|")


@torch.no_grad()
def test_metrics(run_dir: Path, shortlists: tuple[int, ...] = SHORTLISTS) -> dict:
    """Exhaustive and two-stage (K in ``shortlists``) test metrics of a run's best checkpoint, with seconds."""
    run = load_trained(run_dir)
    split = run.data.split("test")
    images, texts = encode_split(run.model, split, run.device)
    truth = split.ground_truth()
    started = time.perf_counter()
    exhaustive = score_matrix(run.model, images, texts)
    result = {"exhaustive": direction_metrics(exhaustive, exhaustive, truth), "n_images": exhaustive.shape[0],
              "n_texts": exhaustive.shape[1]}
    result["exhaustive"]["seconds"] = time.perf_counter() - started
    if run.model.name != "bssan":
        return result
    for k in shortlists:
        started = time.perf_counter()
        matrices = two_stage_scores(run.model, images, texts, k)
        seconds = time.perf_counter() - started
        result[f"k{k}"] = direction_metrics(*matrices, truth) | {"seconds": seconds}
    return result


@torch.no_grad()
def pair_speed(run_dir: Path, block_images: int = 10, single_pairs: int = 300) -> dict:
    """Pairs per second: one ``similarity`` call on block_images x all test texts, against 1 x 1 calls."""
    run = load_trained(run_dir)
    images, texts = encode_split(run.model, run.data.split("test"), run.device)
    block = take(images, slice(0, block_images))
    started = time.perf_counter()
    run.model.similarity(block, texts)
    batched = block_images * len(texts["lengths"]) / (time.perf_counter() - started)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, len(images["embedding"]), (single_pairs,), generator=generator).tolist()
    cols = torch.randint(0, len(texts["lengths"]), (single_pairs,), generator=generator).tolist()
    started = time.perf_counter()
    for i, j in zip(rows, cols):
        run.model.similarity(take(images, slice(i, i + 1)), take(texts, slice(j, j + 1)))
    single = single_pairs / (time.perf_counter() - started)
    return {"batched_pairs_per_s": batched, "single_pairs_per_s": single, "ratio": batched / single,
            "block": f"{block_images} x {len(texts['lengths'])}", "single_pairs": single_pairs}


def row(name: str, runs: list[dict], which: str) -> str:
    cells = metric_row(name, [run[which] for run in runs], KEYS)
    epochs = "/".join(f"{run['epochs']} ({run['best_epoch']})" for run in runs)
    return f"{cells} {epochs} | {mean_std([run['train_seconds'] for run in runs], digits=0)} |"


def tables(dataset: str, results: dict[str, list[dict]], seeds: str, speed: dict | None) -> list[str]:
    first = next(iter(results.values()))[0]
    lines = [f"## {dataset} test ({first['n_images']} images x {first['n_texts']} texts), exhaustive ranking, "
             f"mean ± std over seeds {seeds}", "", HEADER,
             *(row(name, runs, "exhaustive") for name, runs in results.items()), ""]
    bssan = {name: [run for run in runs if "k10" in run] for name, runs in results.items()}
    bssan = {name: runs for name, runs in bssan.items() if runs}
    if bssan:
        lines += ["## Two-stage search: global head's top K reranked by BSSAN (same checkpoints; seeds "
                  f"{', '.join(str(run['seed']) for run in next(iter(bssan.values())))})", "",
                  "| model | K | rsum | R@1 i2t | R@1 t2i | seconds (both directions) | exhaustive seconds |",
                  "| --- " * 7 + "|"]
        for name, runs in bssan.items():
            for k in SHORTLISTS:
                cells = [mean_std([run[f"k{k}"]["rsum"] for run in runs], digits=1),
                         mean_std([run[f"k{k}"]["i2t"]["r@1"] for run in runs], digits=1),
                         mean_std([run[f"k{k}"]["t2i"]["r@1"] for run in runs], digits=1),
                         mean_std([run[f"k{k}"]["seconds"] for run in runs], digits=1),
                         mean_std([run["exhaustive"]["seconds"] for run in runs], digits=1)]
                lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
        lines.append("")
    if speed:
        lines += ["## Batched similarity against pair-by-pair scoring (one run, bssan full)", "",
                  "| block | batched pairs/s | pair-by-pair pairs/s | ratio |", "| --- " * 4 + "|",
                  f"| {speed['block']} | {speed['batched_pairs_per_s']:.0f} | {speed['single_pairs_per_s']:.0f} | "
                  f"{speed['ratio']:.1f}x |", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=list(DATA), default="flickr8k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["w2r", "o2w", "no_reg", "full"])
    parser.add_argument("--text", default="words", choices=["words", "tokens"])
    parser.add_argument("--no-dual", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bssan-bench"))
    parser.add_argument("--two-stage-seeds", type=int, nargs="*", default=None,
                        help="seeds whose BSSAN runs are also ranked two-stage (default: every seed)")
    parser.add_argument("--report-only", action="store_true", help="tabulate the finished runs only, train nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every BSSAN variant (not dual)")
    args = parser.parse_args()
    names = args.variants if args.no_dual else ["dual", *args.variants]
    results: dict[str, list[dict]] = {}
    speed: dict | None = None
    speed_file = args.out / f"speed-{args.dataset}.json"
    for seed in args.seeds:
        for name in names:
            common = [f"data.path={DATA[args.dataset]}", f"train.seed={seed}"]
            if name == "dual":
                config, overrides, label = f"dual/{args.dataset}", common, "dual"
            else:
                config = f"bssan/{args.dataset}"
                overrides = [*common, f"model.name=bssan-{name}", f"data.text_input={args.text}", *args.overrides]
                label = f"bssan-{name}" + ("" if args.text == "words" else f" ({args.text})")
            slug = f"{args.dataset}-{label.replace(' ', '').replace('(', '-').replace(')', '')}-s{seed}"
            if args.report_only and not (args.out / slug / "test.json").exists():
                continue
            two_stage = args.two_stage_seeds is None or seed in args.two_stage_seeds
            measure = partial(test_metrics, shortlists=SHORTLISTS if two_stage else ())
            results.setdefault(label, []).append(train_and_measure(config, args.out / slug, overrides, measure)
                                                 | {"seed": seed})
            print(f"{label} seed {seed}:", row(label, results[label][-1:], "exhaustive"), flush=True)
            if name == "full" and speed is None and not args.report_only:
                speed = json.loads(speed_file.read_text()) if speed_file.exists() else pair_speed(args.out / slug)
                speed_file.write_text(json.dumps(speed, indent=1))
            lines = tables(args.dataset, results, ", ".join(map(str, args.seeds)), speed)
            (args.out / f"bssan-{args.dataset}.md").write_text("\n".join(lines) + "\n")
    if args.report_only and speed_file.exists():
        speed = json.loads(speed_file.read_text())
    print("\n".join(tables(args.dataset, results, ", ".join(map(str, args.seeds)), speed)))


if __name__ == "__main__":
    main()
