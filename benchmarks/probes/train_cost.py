"""What one training step and one validation pass of a config cost, before training it for real.

    python -m benchmarks probe train-cost CONFIG --path DATA [--set KEY=VALUE ...] [--batches 5]

Builds the config's data and model as ``xmodal train`` does (one torch thread), then times
``--batches`` training steps (the loss forward, then backward with the optimiser step) on the
first batches of epoch 1, and one validation pass (the config's own ranking protocol). Prints
seconds per batch, batches per epoch and the epoch's estimate; the machine's other load shows in
the figures, so compare settings measured in one sitting. Used to size SCAN's CPU configs (the
pairwise loss scores every pair of a batch, so a batch costs the square of its size).
"""

from __future__ import annotations

import argparse
import time

import torch

from xmodal.config import load_config
from xmodal.eval.protocol import eval_settings, evaluate_split
from xmodal.factory import build_data, make_run
from xmodal.models.registry import create_model
from xmodal.training.trainer import epoch_order, make_optimizers, optimizer_step


def measure(config_name: str, path: str, overrides: list[str], batches: int) -> dict[str, float]:
    config = load_config(config_name, [f"data.path={path}", *overrides])
    data = build_data(config, torch.device("cpu"))
    run = make_run(config, data, create_model(config.model.name, data.spec, config.model.params))
    model, size = run.model, config.train.batch_size
    train, val = run.data.split("train"), run.data.split("val")
    optimizers = make_optimizers(model, config)
    order = epoch_order(train.n_texts, config.train.seed, 0)
    model.train()
    forward = step = 0.0
    for start in range(0, batches * size, size):
        batch = train.pair_batch(order[start:start + size])
        tick = time.perf_counter()
        terms = model.loss(batch)
        middle = time.perf_counter()
        optimizer_step(model, terms, optimizers, config.train.grad_clip)
        forward, step = forward + middle - tick, step + time.perf_counter() - middle
    tick = time.perf_counter()
    evaluate_split(model, val, torch.device("cpu"), **eval_settings(config.eval))
    per_batch = (forward + step) / batches
    steps = max(1, (train.n_texts - 1) // size + 1)
    return {"batch_size": size, "forward_s": forward / batches, "backward_and_step_s": step / batches,
            "batch_s": per_batch, "batches_per_epoch": steps, "validation_s": time.perf_counter() - tick,
            "epoch_estimate_s": per_batch * steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe train-cost")
    parser.add_argument("config")
    parser.add_argument("--path", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    figures = measure(args.config, args.path, args.overrides, args.batches)
    print("| " + " | ".join(figures) + " |")
    print("| " + " | ".join("---" for _ in figures) + " |")
    print("| " + " | ".join(f"{value:.2f}" if isinstance(value, float) else str(value)
                            for value in figures.values()) + " |")
