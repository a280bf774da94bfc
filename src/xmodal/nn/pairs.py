"""Scoring every image x text pair of two blocks in chunks that fit a memory budget.

Pairwise (attention) models compute each score from both items, so a block of I images x J
texts holds I x J x (the model's per-pair intermediate) floats at once. :func:`all_pairs` walks
the image block ``rows_per_chunk`` images at a time so that no chunk exceeds ``budget`` floats;
under autograd each chunk is checkpointed (recomputed in backward), so a training batch of B x B
pairs needs the memory of one chunk, not of all pairs. Every pairwise ``similarity`` goes through
here, and evaluation sizes its blocks with the same per-pair cost
(:meth:`xmodal.models.base.RetrievalModel.pair_cost`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# Floats one chunk of pair intermediates may hold: 2^23 (32 MiB in float32) keeps CPU caches and
# small GPUs comfortable; evaluation blocks use the same figure.
PAIR_BUDGET = 1 << 23


def rows_per_chunk(n_texts: int, pair_cost: int, budget: int = PAIR_BUDGET) -> int:
    """Image rows per chunk: ``rows x n_texts x pair_cost <= budget`` (at least one row)."""
    return max(1, budget // max(1, n_texts * pair_cost))


def all_pairs(score: Callable[..., tuple[Tensor, ...]], image_tensors: tuple[Tensor, ...], n_texts: int,
              pair_cost: int, budget: int = PAIR_BUDGET) -> tuple[Tensor, ...]:
    """``score(*image_chunk)`` for consecutive row chunks of ``image_tensors``, concatenated along rows.

    ``score`` closes over the text side and returns ``[rows, n_texts, ...]`` outputs; the image
    tensors share their first dimension. Checkpointed per chunk when gradients are on.
    """
    n_images = len(image_tensors[0])
    step = rows_per_chunk(n_texts, pair_cost, budget)
    parts = []
    for start in range(0, n_images, step):
        chunk = tuple(tensor[start : start + step] for tensor in image_tensors)
        if torch.is_grad_enabled():
            parts.append(checkpoint(score, *chunk, use_reentrant=False))
        else:
            parts.append(score(*chunk))
    return tuple(torch.cat(outputs) for outputs in zip(*parts))
