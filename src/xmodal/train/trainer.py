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

from xmodal.config import OptimizerConfig, RunConfig, dump_config
from xmodal.device import resolve_device
from xmodal.errors import XmodalError
from xmodal.eval.protocol import eval_settings, evaluate_split, headline
from xmodal.models.base import RetrievalModel
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


def make_optimizer(params: list[nn.Parameter], optim: OptimizerConfig) -> torch.optim.Optimizer:
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if optim.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)


def make_optimizers(model: RetrievalModel, config: RunConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimiser for "total" (every parameter outside the auxiliary parts), one per auxiliary term."""
    unknown = set(config.optim.auxiliary) - set(model.auxiliary)
    if unknown:
        raise XmodalError(f"optim.auxiliary: model {model.name!r} has no auxiliary term {', '.join(sorted(unknown))}; "
                          f"it has: {', '.join(model.auxiliary) or 'none'}")
    optimizers, auxiliary_ids = {}, set()
    for term, module_name in model.auxiliary.items():
        params = [p for p in getattr(model, module_name).parameters() if p.requires_grad]
        auxiliary_ids |= {id(p) for p in params}
        optimizers[term] = make_optimizer(params, config.optim.auxiliary.get(term, config.optim))
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in auxiliary_ids]
    return {"total": make_optimizer(main, config.optim), **optimizers}


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
        metrics = evaluate_split(run.model, run.data.split("val"), run.device, **eval_settings(config.eval))
        score = headline(metrics, run.metric)
    if world.is_main:
        state = _state(run, {}, epoch=1, best=score, best_epoch=1, bad_epochs=0)
        save_checkpoint(out / "checkpoints" / "last.pt", state)
        save_checkpoint(out / "checkpoints" / "best.pt", state)
        (out / "log.jsonl").unlink(missing_ok=True)
        append_log(out / "log.jsonl", {"epoch": 1, "loss": {}, "val": {run.metric: score}, "metrics": metrics})
    return TrainResult(out, 1, 1, score, run.metric, False)


def _state(run, optimizers, *, epoch: int, best: float, best_epoch: int, bad_epochs: int) -> dict:
    model = run.model
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizers": {term: o.state_dict() for term, o in (optimizers or {}).items()},
            "epoch": epoch, "best_metric": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "rng": torch.get_rng_state(), "config": run.config.model_dump(mode="json"),
            "inputs": {"image": run.data.spec.image, "text": run.data.spec.text}, "metric": run.metric}


def _train_loop(run, config: RunConfig, out: Path, world: World, device: torch.device, resume: bool) -> TrainResult:
    model, train_cfg = run.model, config.train
    optimizers = make_optimizers(model, config)
    if world.distributed and model.auxiliary:
        raise XmodalError(f"model {model.name!r} trains adversarial parts with their own optimiser, which "
                          "multi-process training does not support yet; train it in one process")
    start_epoch, best, best_epoch, bad_epochs = 0, -math.inf, 0, 0
    last_path, best_path = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    if resume:
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        for term, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][term])
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
        _set_lr(optimizers["total"], config, epoch)
        order = epoch_order(train_split.n_texts, train_cfg.seed, epoch)[world.rank :: world.size]
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        model.train()
        starts = range(0, len(order) - 1, per_rank_batch)  # a last batch of one pair has no negatives
        for start in progress(starts, total=len(starts), desc=f"epoch {epoch + 1}/{train_cfg.epochs}", unit="batch"):
            batch = train_split.pair_batch(order[start : start + per_rank_batch]).to(device)
            with autocast:
                terms = network(batch)
            _step(model, terms, optimizers, train_cfg.grad_clip)
            for key, value in terms.items():
                sums[key] += float(value.detach())
            steps += 1
        metrics = evaluate_split(model, val_split, device, **eval_settings(config.eval))
        score = headline(metrics, run.metric)
        improved = score > best
        if improved:
            best, best_epoch, bad_epochs = score, epoch + 1, 0
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= train_cfg.early_stopping.patience
        if world.is_main:
            state = _state(run, optimizers, epoch=epoch + 1, best=best, best_epoch=best_epoch, bad_epochs=bad_epochs)
            save_checkpoint(last_path, state)
            if improved:
                shutil.copyfile(last_path, best_path.with_suffix(".tmp"))
                best_path.with_suffix(".tmp").replace(best_path)
            record = {"epoch": epoch + 1, "loss": {k: v / max(steps, 1) for k, v in sums.items()},
                      "val": {run.metric: score}, "metrics": metrics, "lr": optimizers["total"].param_groups[0]["lr"],
                      "seconds": round(time.perf_counter() - started, 3), "best_epoch": best_epoch,
                      "steps": steps, "world_size": world.size}
            append_log(out / "log.jsonl", record)
            plot_curves(read_log(out / "log.jsonl"), out / "curves.png", run.metric)
        epochs_run = epoch + 1
        if stopped_early:
            break
    return TrainResult(out, epochs_run, best_epoch, best, run.metric, stopped_early)


def _step(model: RetrievalModel, terms: dict, optimizers: dict[str, torch.optim.Optimizer], clip: float) -> None:
    """One update: "total" trains the main parameters, each auxiliary term its own part.

    With auxiliary parts, every term's gradient is taken with respect to its own parameters
    only, all before any step, so the gradient "total" sends into an adversary (e.g. through a
    flipped-label loss) never moves it, and no step changes weights another term still needs.
    """
    if len(optimizers) == 1:
        optimizer = optimizers["total"]
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        _clip_and_step(optimizer, clip)
        return
    grads = {}
    for term, optimizer in optimizers.items():
        grads[term] = torch.autograd.grad(terms[term], _params(optimizer), retain_graph=True, allow_unused=True)
    for term, optimizer in optimizers.items():
        for parameter, grad in zip(_params(optimizer), grads[term]):
            parameter.grad = grad
        _clip_and_step(optimizer, clip)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _clip_and_step(optimizer: torch.optim.Optimizer, clip: float) -> None:
    if clip:
        nn.utils.clip_grad_norm_(_params(optimizer), clip)
    optimizer.step()


def _json_line(record: dict) -> str:
    return json.dumps(record) + "\n"


def _set_lr(optimizer: torch.optim.Optimizer, config: RunConfig, epoch: int) -> None:
    decay_every = config.optim.lr_decay_epochs
    factor = config.optim.lr_decay ** (epoch // decay_every) if decay_every else 1.0
    for group in optimizer.param_groups:
        group["lr"] = config.optim.lr * factor
