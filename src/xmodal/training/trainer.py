"""The training loop of a built run: optimiser, seeds, AMP, atomic checkpoints, resume, early stopping, DDP.

A run folder holds ``config.yaml`` (the resolved config), ``log.jsonl`` (one record per epoch),
``curves.png``, and ``checkpoints/last.pt`` + ``checkpoints/best.pt``. Resuming restores the
model, the optimiser and the random state, and every epoch's pair order depends only on
(seed, epoch), so a run killed and resumed ends where an uninterrupted one does.
"""

from __future__ import annotations

import json
import logging
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

from xmodal.config import OptimConfig, OptimizerConfig, RunConfig, dump_config
from xmodal.errors import XmodalError
from xmodal.eval.protocol import eval_settings, evaluate_split, headline
from xmodal.features.pipeline import FOLDER as PIPELINE_FOLDER
from xmodal.models.base import RetrievalModel
from xmodal.paths import atomic_directory, atomic_write_bytes
from xmodal.progress import progress
from xmodal.run import Run, record_data
from xmodal.training.checkpoint import load_checkpoint, save_checkpoint
from xmodal.training.curves import append_log, plot_curves, read_log
from xmodal.training.distributed import World
from xmodal.training.stopping import EarlyStopping

SEED_STRIDE = 1_000_003  # keeps (seed, epoch) streams apart
logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    epochs_run: int
    best_epoch: int
    best_metric: float
    metric: str
    stopped_early: bool


def make_optimizer(params: list[nn.Parameter] | list[dict], optim: OptimizerConfig) -> torch.optim.Optimizer:
    """An optimiser over ``params`` (tensors, or param-group dicts with their own ``lr``)."""
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
    main = [(name, p) for name, p in model.named_parameters() if p.requires_grad and id(p) not in auxiliary_ids]
    return {"total": make_optimizer(lr_groups(main, config.optim), config.optim), **optimizers}


def lr_groups(named: list[tuple[str, nn.Parameter]], optim: OptimConfig) -> list[dict]:
    """Param groups: one per ``optim.group_lr`` prefix (its own lr), then every other parameter (``optim.lr``).

    Each group keeps its configured lr as ``base_lr``, which the epoch decay scales.
    """
    groups = {prefix: [] for prefix in optim.group_lr}
    rest = []
    for name, parameter in named:
        prefix = next((prefix for prefix in optim.group_lr if name == prefix or name.startswith(prefix + ".")), None)
        (groups[prefix] if prefix is not None else rest).append(parameter)
    empty = [prefix for prefix, params in groups.items() if not params]
    if empty:
        modules = sorted({name.split(".")[0] for name, _ in named})
        raise XmodalError(f"optim.group_lr: no trainable parameter under {', '.join(map(repr, empty))}; "
                          f"the model's modules are {', '.join(modules)}")
    return ([{"params": params, "lr": optim.group_lr[prefix], "base_lr": optim.group_lr[prefix]}
             for prefix, params in groups.items()] + ([{"params": rest, "lr": optim.lr, "base_lr": optim.lr}]
                                                      if rest else []))


def training_autocast(config: RunConfig, device: torch.device):
    """bf16 autocast for the forward pass and loss on a GPU when ``train.amp``; nothing on a CPU."""
    if config.train.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)
    return torch.randperm(n, generator=generator).numpy()


def train_run(run: Run, out: Path, *, resume: bool = False, world: World | None = None) -> TrainResult:
    """Train a run that is already built (:func:`xmodal.factory.build_run` from a config, or
    :func:`xmodal.factory.make_run` from your own parts) into ``out``."""
    out, world = Path(out), world or World()
    last_path = check_out(out, resume)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "config.yaml", dump_config(run.config).encode())
        record_data(run, out)
        with atomic_directory(out / PIPELINE_FOLDER) as staging:  # what encoding new items needs: RUN/inputs/
            run.data.pipeline().save(staging)
        _write_skipped(run, out)
    if not run.model.trainable:
        return _fit_closed_form(run, run.config, out, world)
    return _train_loop(run, run.config, out, world, run.device, resume and last_path.exists())


def _write_skipped(run: Run, out: Path) -> None:
    """``skipped.txt``: every record and image left out under --skip-bad, each with what was wrong."""
    bad = sorted(run.data.bad_items)
    if run.dataset.skipped or bad:
        lines = [f"# {len(run.dataset.skipped)} bad record(s) skipped while reading {run.dataset.name}:",
                 *run.dataset.skipped, f"# {len(bad)} unreadable image(s), by item id:", *bad]
        atomic_write_bytes(out / "skipped.txt", ("\n".join(lines) + "\n").encode())


def check_out(out: Path, resume: bool) -> Path:
    """``out``'s last checkpoint; refuses a folder that holds a run unless ``resume``."""
    last_path = out / "checkpoints" / "last.pt"
    if not resume and last_path.exists():
        raise XmodalError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    return last_path


def _fit_closed_form(run, config: RunConfig, out: Path, world: World) -> TrainResult:
    """Fit once per setting the model offers (:meth:`RetrievalModel.fit_choices`), keep the best on val."""
    train_split = run.data.split("train")
    batch = train_split.pair_batch(np.arange(train_split.n_texts)).to(run.device)
    choices = run.model.fit_choices()
    if len(choices) > 1 and not run.data.has_split("val"):
        raise XmodalError(f"model {run.model.name!r} chooses {', '.join(choices[0])} on the validation split, and "
                          f"there is none: set data.val_fraction > 0, or fix it with --set model.params.<name>=VALUE")
    results = []
    for choice in choices:
        run.model.params = run.model.params.model_copy(update=choice)
        run.model.fit(batch.images, batch.texts, batch.items, batch.labels)
        metrics, score = {}, math.nan
        if run.data.has_split("val"):
            metrics = evaluate_split(run.model, run.data.split("val"), run.device, **eval_settings(config.eval))
            score = headline(metrics, run.metric)
        if choice:
            logger.info("%s: validation %s %.4f", " ".join(f"{k}={v}" for k, v in choice.items()), run.metric, score)
        results.append((score, choice, {k: v.clone() for k, v in run.model.state_dict().items()}, metrics))
    score, choice, weights, metrics = max(results, key=lambda result: result[0])
    if len(results) > 1:
        run.model.params = run.model.params.model_copy(update=choice)
        run.model.load_state_dict(weights)
        run.config.model.params.update(choice)  # the checkpoint's config names the setting kept
        logger.info("kept %s (best validation %s)", " ".join(f"{k}={v}" for k, v in choice.items()), run.metric)
    if world.is_main:
        atomic_write_bytes(out / "config.yaml", dump_config(run.config).encode())
        state = _state(run, {}, epoch=1, best=score, best_epoch=1, bad_epochs=0)
        save_checkpoint(out / "checkpoints" / "last.pt", state)
        save_checkpoint(out / "checkpoints" / "best.pt", state)
        (out / "log.jsonl").unlink(missing_ok=True)
        append_log(out / "log.jsonl", {"epoch": 1, "loss": {}, "val": {run.metric: score}, "metrics": metrics,
                                       "choices": [{"setting": c, "val": s} for s, c, _, _ in results]})
    return TrainResult(out, 1, 1, score, run.metric, False)


def _state(run, optimizers, *, epoch: int, best: float, best_epoch: int, bad_epochs: int) -> dict:
    model = run.model
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizers": {term: o.state_dict() for term, o in (optimizers or {}).items()},
            "epoch": epoch, "best_metric": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": run.config.model_dump(mode="json"),
            "inputs": {"image": list(run.data.spec.image_parts), "text": list(run.data.spec.text_parts)},
            "metric": run.metric}


def _train_loop(run, config: RunConfig, out: Path, world: World, device: torch.device, resume: bool) -> TrainResult:
    model, train_cfg = run.model, config.train
    optimizers = make_optimizers(model, config)
    if world.distributed and model.auxiliary:
        raise XmodalError(f"model {model.name!r} trains adversarial parts with their own optimiser, which "
                          "multi-process training does not support yet; train it in one process")
    start_epoch, stopping = 0, EarlyStopping(train_cfg.early_stopping.patience)
    last_path, best_path = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    if resume:
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        for term, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][term])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start_epoch = state["epoch"]
        stopping = EarlyStopping(train_cfg.early_stopping.patience, state["best_metric"], state["best_epoch"],
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
    autocast = training_autocast(config, device)
    train_split = run.data.split("train")
    # Without a validation split (data.val_fraction 0 on a dataset that ships none) the run trains
    # for train.epochs on every training item and keeps the last epoch: the usual way to refit on
    # the whole train split once an epoch count has been chosen on a held-out part.
    val_split = run.data.split("val") if run.data.has_split("val") else None
    per_rank_batch = max(2, train_cfg.batch_size // world.size)
    epochs_run = start_epoch
    for epoch in range(start_epoch, train_cfg.epochs if not stopping.stopped else start_epoch):
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
            optimizer_step(model, terms, optimizers, train_cfg.grad_clip)
            for key, value in terms.items():
                sums[key] += float(value.detach())
            steps += 1
        if val_split is None:
            metrics, score, improved = {}, math.nan, True
            stopping.keep_unvalidated(epoch + 1)
        else:
            metrics = evaluate_split(model, val_split, device, **eval_settings(config.eval))
            score = headline(metrics, run.metric)
            improved = stopping.update(epoch + 1, score)
        if world.is_main:
            state = _state(run, optimizers, epoch=epoch + 1, best=stopping.best, best_epoch=stopping.best_epoch,
                           bad_epochs=stopping.bad_epochs)
            save_checkpoint(last_path, state)
            if improved:
                shutil.copyfile(last_path, best_path.with_suffix(".tmp"))
                best_path.with_suffix(".tmp").replace(best_path)
            record = {"epoch": epoch + 1, "loss": {k: v / max(steps, 1) for k, v in sums.items()},
                      "val": {run.metric: score} if val_split is not None else {}, "metrics": metrics,
                      "lr": optimizers["total"].param_groups[0]["lr"],
                      "seconds": round(time.perf_counter() - started, 3), "best_epoch": stopping.best_epoch,
                      "steps": steps, "world_size": world.size}
            append_log(out / "log.jsonl", record)
            plot_curves(read_log(out / "log.jsonl"), out / "curves.png", run.metric)
            logger.info(epoch_line(record, train_cfg.epochs, run.metric, stopping.best))
        epochs_run = epoch + 1
        if stopping.stopped:
            break
    return TrainResult(out, epochs_run, stopping.best_epoch, stopping.best, run.metric, stopping.stopped)


def epoch_line(record: dict, epochs: int, metric: str, best: float) -> str:
    """One line per epoch: loss terms, validation metrics, best so far, seconds."""
    losses = " ".join(f"{key} {value:.4f}" for key, value in record["loss"].items())
    metrics = record["metrics"]
    if not metrics:
        return f"epoch {record['epoch']}/{epochs}  loss: {losses}  (no validation split)  {record['seconds']:.1f} s"
    shown = [f"rsum {metrics['rsum']:.1f}"]
    if "map" in metrics["i2t"]:
        shown.append(f"map {metrics['i2t']['map']:.4f}/{metrics['t2i']['map']:.4f}")
    best_shown = f"{best:.1f}" if metric == "rsum" else f"{best:.4f}"
    return (f"epoch {record['epoch']}/{epochs}  loss: {losses}  val: {' '.join(shown)}  "
            f"best {metric} {best_shown} @{record['best_epoch']}  {record['seconds']:.1f} s")


def optimizer_step(model: RetrievalModel, terms: dict, optimizers: dict[str, torch.optim.Optimizer],
                   clip: float) -> None:
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
        group["lr"] = group.get("base_lr", config.optim.lr) * factor
