"""BSSAN's training objective (Huang et al., TIP 2019, eqs. 7, 17, 18): hinge ranking losses on
one sampled negative text per pair, and an L2 regulariser.

Readings chosen where the paper is open:

- Eqs. 7 and 17 sum the hinge ``max(0, M - Y_i + Y_i^-)`` over the n pairs; eq. 17 prints
  ``Y_i`` where the O2W score ``Y'_i`` is meant (its second line has ``f_o2w``), read as ``Y'_i``.
- A training step sees a batch of B pairs, and eq. 18 adds ``delta L_reg`` once: the objective of
  a batch is ``(sum_i hinge_1 + lambda sum_i hinge_2 + delta L_reg) / B``, i.e. eq. 18 with the
  sums over the batch, divided by B so the learning rate does not depend on the batch size
  (:func:`bssan_objective`). With B = 128 and delta = 0.01 the regulariser then acts as a
  weight decay of 2 delta / B = 1.6e-4 on the weights it covers.
- ``L_reg`` ("an L2-norm regularizer") is the squared Frobenius norm summed over the weight
  matrices of the two networks (:func:`squared_l2`); biases and batch norm are left out.
- The negative ``T_i^-`` is one text, drawn uniformly from the batch's texts of other images
  (:func:`sample_negatives`): another caption of the same image is never a negative.
- Beyond the paper, a pair may have several negatives (BSSAN's ``negatives="both"`` adds a
  negative image ``V_i^-`` for ``T_i``, the mirror of eq. 7): their hinges are summed per pair.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def sampled_hinge(positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """``sum_i max(0, margin - positive_i + negative_i)`` (eqs. 7, 17): one negative per pair
    (``negative [B]``), or several (``negative [B, K]``: the hinges of each pair summed)."""
    if negative.shape[: positive.dim()] != positive.shape or negative.dim() > positive.dim() + 1:
        raise ValueError(f"positive {tuple(positive.shape)} and negative {tuple(negative.shape)} scores differ")
    if negative.dim() > positive.dim():
        positive = positive.unsqueeze(-1)
    return (margin - positive + negative).clamp_min(0).sum()


def squared_l2(parameters: Iterable[Tensor]) -> Tensor:
    """``L_reg`` of eq. 18: the sum of squared entries of the given weights."""
    return torch.stack([(weight**2).sum() for weight in parameters]).sum()


def bssan_objective(w2r: tuple[Tensor, Tensor] | None, o2w: tuple[Tensor, Tensor] | None, regulariser: Tensor | None,
                    margin: float, lam: float, delta: float) -> dict[str, Tensor]:
    """Eq. 18 on a batch, divided by its size: named terms ``L1``, ``L2``, ``reg`` and their sum ``bssan``.

    ``w2r`` / ``o2w`` are (positive ``[B]``, negative ``[B]`` or ``[B, K]``) scores of a network, or None when the
    variant has no such network (BSSAN_o2w, BSSAN_w2r); ``regulariser`` is ``L_reg`` or None
    (BSSAN_no_reg). Each term is reported already weighted and divided by B.
    """
    pairs = len((w2r or o2w)[0])
    terms = {}
    if w2r is not None:
        terms["L1"] = sampled_hinge(*w2r, margin) / pairs
    if o2w is not None:
        terms["L2"] = lam * sampled_hinge(*o2w, margin) / pairs
    if regulariser is not None:
        terms["reg"] = delta * regulariser / pairs
    terms["bssan"] = torch.stack(list(terms.values())).sum()
    return terms


def sample_negatives(items: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For each pair, the index of a text of another item, drawn uniformly from the batch, ``[B]``.

    A batch whose texts all belong to one item has no negative: each pair then draws from all its
    texts (the hinge of such a pair only asks the model not to prefer one caption of its image).
    """
    others = (items[:, None] != items[None, :]).float()
    alone = others.sum(1) == 0
    others[alone] = 1.0
    return torch.multinomial(others, 1, generator=generator).squeeze(1)
