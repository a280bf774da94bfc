"""GPLDAN benchmark: the alpha/beta grid on validation, Table 3's six rows, cca and dual, 3 seeds.

For each dataset: (1) the alpha x beta grid of the full model, trained on train and scored on
val (MAP@all, mean of both directions); (2) with the best alpha, beta, the six rows of the
paper's Table 3 for every seed; (3) ``cca`` (closed form, deterministic: fitted once) and ``dual``
from their own configs for every seed. Every trained run is scored on the test split (MAP@50 and
MAP@all, both directions) from its best checkpoint (chosen by validation MAP); the full model is
also trained without early stopping and scored at its last epoch: model selection without any
validation label.

Runs land in ``--out/<dataset>/...`` and are reused when their config has not changed, so an
interrupted benchmark picks up where it stopped. Tables go to ``--out/tables.md`` and stdout.

    XMODAL_HOME=/tmp/xh-gpldan .venv/bin/python benchmarks/gpldan.py --out /tmp/runs/bench-gpldan
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from xmodal.config import read_config
from xmodal.training.sweep import (
    format_table,
    metric_value,
    point_config,
    run_sweep,
    score_run,
    train_point,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SEEDS = (0, 1, 2)
GRID = {"model.params.alpha": [0.1, 0.3, 1.0, 3.0],
        "model.params.beta": [0.1, 0.3, 1.0]}  # beta > 0: Table 3's L_mdp rows need it on
DATASETS: dict[str, dict[str, Any]] = {
    "wikipedia-features": {"data.path": str(SHARED / "wikipedia")},
    "emoji": {"data.path": str(SHARED / "emoji")},
}
CONFIGS = {
    ("gpldan", "wikipedia-features"): "gpldan/wikipedia-features",
    ("gpldan", "emoji"): "gpldan/emoji",
    ("dual", "wikipedia-features"): "dual/wikipedia-features",
    ("dual", "emoji"): "dual/emoji",
    ("cca", "wikipedia-features"): "cca/wikipedia-features",
    ("cca", "emoji"): "cca/emoji",
}
_OFF = {"use_udp": False, "use_mdp": False, "use_classifier": False, "use_attention": False}
VARIANTS = {  # Table 3, each row adding to the one before
    "baseline (L_pdl)": _OFF,
    "+ L_mdp": _OFF | {"use_mdp": True},
    "+ L_udp": _OFF | {"use_udp": True},
    "+ L_mdp, L_udp": _OFF | {"use_udp": True, "use_mdp": True},
    "+ L_mdp, L_udp, MC": _OFF | {"use_udp": True, "use_mdp": True, "use_classifier": True},
    "+ L_mdp, L_udp, MC, DA (GPLDAN)": {},
}
COLUMNS = ("i2t.map@50", "t2i.map@50", "map@50", "i2t.map", "t2i.map", "map")


def base_raw(model: str, dataset: str) -> dict[str, Any]:
    raw = read_config(CONFIGS[(model, dataset)])
    return apply(raw, dict(DATASETS[dataset]))


def apply(raw: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return point_config(raw, settings).model_dump(mode="json")


def variant_settings(flags: dict[str, bool], alpha: float, beta: float, seed: int) -> dict[str, Any]:
    settings = {f"model.params.{key}": value for key, value in flags.items()}
    return settings | {"model.params.alpha": alpha, "model.params.beta": beta, "train.seed": seed}


def train_and_test(raw: dict[str, Any], settings: dict[str, Any], run_dir: Path,
                   checkpoints: tuple[str, ...] = ("best",)) -> dict[str, dict]:
    """Train one run (or reuse it) and return its test metrics per checkpoint."""
    started = time.perf_counter()
    train_point(point_config(raw, settings), run_dir)
    scores = {which: score_run(run_dir, ("test",), which)["test"] for which in checkpoints}
    print(f"  {run_dir.name}: {time.perf_counter() - started:.0f} s, test MAP@50 "
          f"{metric_value(scores['best'], 'map@50'):.4f}", flush=True)
    return scores


def summarise(runs: list[dict]) -> dict[str, str]:
    """mean ± std over seeds of every column."""
    row = {}
    for column in COLUMNS:
        values = [metric_value(run, column) for run in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        row[column] = f"{statistics.mean(values):.3f} ± {std:.3f}"
    return row


def benchmark_dataset(dataset: str, out: Path, seeds: tuple[int, ...]) -> dict[str, Any]:
    print(f"== {dataset}", flush=True)
    gpldan = base_raw("gpldan", dataset)
    grid = run_sweep(gpldan, GRID, out / "grid", metric="map", split="val")
    alpha, beta = grid[0].settings["model.params.alpha"], grid[0].settings["model.params.beta"]
    print(f"grid: best alpha={alpha} beta={beta} (val MAP {grid[0].score:.4f})", flush=True)
    rows: dict[str, list[dict]] = {}
    for name, flags in VARIANTS.items():
        rows[name] = [train_and_test(gpldan, variant_settings(flags, alpha, beta, seed),
                                     out / "variants" / f"{_slug(name)}-seed{seed}")["best"] for seed in seeds]
    # Label-free model selection: no early stopping, the last epoch of the fixed budget.
    fixed = {"train.early_stopping.patience": gpldan["train"]["epochs"]}
    rows["GPLDAN, fixed budget, last epoch (no val labels)"] = [
        train_and_test(gpldan, variant_settings({}, alpha, beta, seed) | fixed, out / "fixed-budget" / f"seed{seed}",
                       ("best", "last"))["last"] for seed in seeds]
    for model in ("dual", "cca"):
        raw = base_raw(model, dataset)
        model_seeds = seeds if model == "dual" else seeds[:1]  # cca: closed form, seed-free
        rows[model] = [train_and_test(raw, {"train.seed": seed}, out / model / f"seed{seed}")["best"]
                       for seed in model_seeds]
    return {"alpha": alpha, "beta": beta, "grid": format_table(grid, "map", "val"),
            "rows": {name: summarise(runs) for name, runs in rows.items()},
            "raw": {name: runs for name, runs in rows.items()}}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def tables(results: dict[str, Any]) -> str:
    lines = []
    for dataset, result in results.items():
        lines += [f"### {dataset}: test split, mean ± std over seeds "
                  f"(alpha={result['alpha']}, beta={result['beta']})", "",
                  "| method | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        lines += [f"| {name} | " + " | ".join(row[c] for c in COLUMNS) + " |" for name, row in result["rows"].items()]
        lines += ["", f"### {dataset}: alpha/beta grid (full model, seed 0, validation split)", "", result["grid"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-gpldan"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for dataset in args.datasets:
        started = time.perf_counter()
        results[dataset] = benchmark_dataset(dataset, args.out / dataset, tuple(args.seeds))
        results[dataset]["seconds"] = round(time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    text = tables(results)
    (args.out / "tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
