"""The training loop: optimiser, seeds, AMP, atomic checkpoints, resume, early stopping, DDP.

A run folder holds ``config.yaml`` (the resolved config), ``log.jsonl`` (one record per epoch),
``curves.png``, and ``checkpoints/last.pt`` + ``checkpoints/best.pt``. Resuming restores the
model, the optimiser and the random state, and every epoch's pair order depends only on
(seed, epoch), so a run killed and resumed ends where an uninterrupted one does.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xmodal.config import RunConfig, dump_config
from xmodal.device import resolve_device
from xmodal.errors import XmodalError
from xmodal.eval.protocol import evaluate_split, headline
from xmodal.paths import atomic_write_bytes
from xmodal.progress import progress
from xmodal.train.checkpoint import load_checkpoint, save_checkpoint
from xmodal.train.curves import append_log, plot_curves, read_log
from xmodal.train.distributed import World, init_world, local_device, shutdown
from xmodal.train.setup import build_run

SEED_STRIDE = 1_000_003  # keeps (seed, epoch) streams apart


@dataclass
class TrainResult:
    out: Path
    epochs_run: int
    best_epoch: int
    best_metric: float
    metric: str
    stopped_early: bool


def make_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    optim = config.optim
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if optim.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)
    return torch.randperm(n, generator=generator).numpy()


def train(config: RunConfig, out: Path, *, resume: bool = False) -> TrainResult:
    out = Path(out)
    last_path = out / "checkpoints" / "last.pt"
    if not resume and last_path.exists():
        raise XmodalError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    device = resolve_device(config.train.device)
    world = init_world(device)
    device = local_device(device)
    try:
        torch.manual_seed(config.train.seed)
        run = build_run(config, device)
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "config.yaml", dump_config(config).encode())
        if not run.model.trainable:
            return _fit_closed_form(run, config, out, world)
        return _train_loop(run, config, out, world, device, resume and last_path.exists())
    finally:
        shutdown(world)


def _fit_closed_form(run, config: RunConfig, out: Path, world: World) -> TrainResult:
    train_split = run.data.split("train")
    batch = train_split.pair_batch(np.arange(train_split.n_texts)).to(run.device)
    run.model.fit(batch.images, batch.texts, batch.items, batch.labels)
    metrics, score = {}, math.nan
    if run.data.has_split("val"):  # nothing to choose between for a closed-form fit; report only
        metrics = evaluate_split(run.model, run.data.split("val"), run.device, **_eval_kwargs(config))
        score = headline(metrics, run.metric)
    if world.is_main:
        state = _state(run, None, epoch=1, best=score, best_epoch=1, bad_epochs=0)
        save_checkpoint(out / "checkpoints" / "last.pt", state)
        save_checkpoint(out / "checkpoints" / "best.pt", state)
        (out / "log.jsonl").unlink(missing_ok=True)
        append_log(out / "log.jsonl", {"epoch": 1, "loss": {}, "val": {run.metric: score}, "metrics": metrics})
    return TrainResult(out, 1, 1, score, run.metric, False)


def _state(run, optimizer, *, epoch: int, best: float, best_epoch: int, bad_epochs: int) -> dict:
    model = run.model
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "epoch": epoch, "best_metric": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "rng": torch.get_rng_state(), "config": run.config.model_dump(mode="json"),
            "inputs": {"image": run.data.spec.image, "text": run.data.spec.text}, "metric": run.metric}


def _eval_kwargs(config: RunConfig) -> dict:
    return {"map_at": config.eval.map_at, "image_block": config.eval.image_block, "text_block": config.eval.text_block}


def _train_loop(run, config: RunConfig, out: Path, world: World, device: torch.device, resume: bool) -> TrainResult:
    model, train_cfg = run.model, config.train
    optimizer = make_optimizer(model, config)
    start_epoch, best, best_epoch, bad_epochs = 0, -math.inf, 0, 0
    last_path, best_path = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    if resume:
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start_epoch, best, best_epoch, bad_epochs = (state["epoch"], state["best_metric"], state["best_epoch"],
                                                     state["bad_epochs"])
        if world.is_main:  # drop log lines of an epoch whose checkpoint never landed
            kept = [r for r in read_log(out / "log.jsonl") if r["epoch"] <= start_epoch]
            atomic_write_bytes(out / "log.jsonl", "".join(_json_line(r) for r in kept).encode())
    elif world.is_main:
        (out / "log.jsonl").unlink(missing_ok=True)
    network: nn.Module = model
    if world.distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if train_cfg.amp and device.type == "cuda"
                else nullcontext())
    train_split, val_split = run.data.split("train"), run.data.split("val")
    per_rank_batch = max(2, train_cfg.batch_size // world.size)
    stopped_early = bad_epochs >= train_cfg.early_stopping.patience
    epochs_run = start_epoch
    for epoch in range(start_epoch, train_cfg.epochs if not stopped_early else start_epoch):
        started = time.perf_counter()
        _set_lr(optimizer, config, epoch)
        order = epoch_order(train_split.n_texts, train_cfg.seed, epoch)[world.rank :: world.size]
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        model.train()
        starts = range(0, len(order) - 1, per_rank_batch)  # a last batch of one pair has no negatives
        for start in progress(starts, total=len(starts), desc=f"epoch {epoch + 1}/{train_cfg.epochs}", unit="batch"):
            batch = train_split.pair_batch(order[start : start + per_rank_batch]).to(device)
            with autocast:
                terms = network(batch)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if train_cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            for key, value in terms.items():
                sums[key] += float(value.detach())
            steps += 1
        metrics = evaluate_split(model, val_split, device, **_eval_kwargs(config))
        score = headline(metrics, run.metric)
        improved = score > best
        if improved:
            best, best_epoch, bad_epochs = score, epoch + 1, 0
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= train_cfg.early_stopping.patience
        if world.is_main:
            state = _state(run, optimizer, epoch=epoch + 1, best=best, best_epoch=best_epoch, bad_epochs=bad_epochs)
            save_checkpoint(last_path, state)
            if improved:
                shutil.copyfile(last_path, best_path.with_suffix(".tmp"))
                best_path.with_suffix(".tmp").replace(best_path)
            record = {"epoch": epoch + 1, "loss": {k: v / max(steps, 1) for k, v in sums.items()},
                      "val": {run.metric: score}, "metrics": metrics, "lr": optimizer.param_groups[0]["lr"],
                      "seconds": round(time.perf_counter() - started, 3), "best_epoch": best_epoch}
            append_log(out / "log.jsonl", record)
            plot_curves(read_log(out / "log.jsonl"), out / "curves.png", run.metric)
        epochs_run = epoch + 1
        if stopped_early:
            break
    return TrainResult(out, epochs_run, best_epoch, best, run.metric, stopped_early)


def _json_line(record: dict) -> str:
    return json.dumps(record) + "\n"


def _set_lr(optimizer: torch.optim.Optimizer, config: RunConfig, epoch: int) -> None:
    decay_every = config.optim.lr_decay_epochs
    factor = config.optim.lr_decay ** (epoch // decay_every) if decay_every else 1.0
    for group in optimizer.param_groups:
        group["lr"] = config.optim.lr * factor
