"""How far a run's learned word embedding moved from where it started (issue 32).

    python -m benchmarks probe word-drift RUN [RUN ...]

A ``words`` model starts its embedding from GloVe, or, for words GloVe lacks, from a fixed random
draw at GloVe's scale (``data.unknown_words: random``, :func:`xmodal.features.kinds.word_rows`).
On a language GloVe does not cover, that table is all the model knows of its words, so whether
training moves it is the question: for each run, prints JSON with the embedding's parameter name,
the optimiser's learning rate for it, and the relative drift ``|e_trained - e_start| / |e_start|``
of each word's row (median and 90th percentile; padding and the unknown-word row left out). A
drift of a few per cent means the embedding is still, in effect, its starting draw.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from xmodal.nn.word_input import WordInput
from xmodal.trained import load_run
from xmodal.training.trainer import lr_groups

FIRST_WORD_ROW = 2  # rows 0 and 1: padding and the unknown word


def _learning_rate(model: torch.nn.Module, optim, parameter: torch.nn.Parameter) -> float:
    """The lr the trainer gives ``parameter`` (its ``optim.group_lr`` group's, or ``optim.lr``); 0 when frozen."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    for group in lr_groups(trainable, optim):
        if any(member is parameter for member in group["params"]):
            return float(group["lr"])
    return 0.0


def probe(run_dir: str) -> dict:
    loaded = load_run(run_dir)
    model, config = loaded.model.cpu(), loaded.config
    result = {"run": str(run_dir), "model": config.model.name, "unknown_words": config.data.unknown_words,
              "optimiser": config.optim.name, "embeddings": {}}
    for name, module in model.named_modules():
        if not isinstance(module, WordInput) or module.embedding is None:
            continue
        weight, start = module.embedding.weight.detach(), model.spec.word_vectors
        if start is None or start.shape != weight.shape:
            result["embeddings"][name] = {"start": "a torch draw, not the GloVe table: not recorded"}
            continue
        trained, start = weight[FIRST_WORD_ROW:], start[FIRST_WORD_ROW:]
        drift = ((trained - start).norm(dim=1) / start.norm(dim=1).clamp_min(1e-12)).numpy()
        result["embeddings"][name] = {
            "rows": len(drift), "lr": _learning_rate(model, config.optim, module.embedding.weight),
            "start_row_norm": float(start.norm(dim=1).mean()),
            "drift_median": float(np.median(drift)), "drift_p90": float(np.quantile(drift, 0.9))}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe word-drift")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args(argv)
    print(json.dumps([probe(run) for run in args.runs], indent=1))
