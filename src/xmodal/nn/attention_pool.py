"""Attention pooling: one learned vector scores every local feature of an item, softmax, weighted sum.

ACLN (Huang, Ye, Peng, 2017, section 3.2, eqs. 7-9): ``h_i = tanh(W_a x_i)``, ``a = softmax(h)``
over the item's local features, ``X_hat = sum_i a_i x_i``. The tanh bounds each logit to
[-1, 1], so two weights of one item differ by at most a factor e^2 ~ 7.4: with 49 image regions
the largest possible weight is about 0.13 (uniform: 0.02). Multiplying the bounded logits by 5
was measured on emoji and did not help (benchmarks/results/acln.md). Issue 29's options, each
off in the paper's reading: ``logits="linear"`` drops eq. 7's tanh, and a
:class:`~xmodal.nn.temperature.Temperature` (fixed or learned) divides the logits before eq. 8's
softmax, so a region can take any share of the weight.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from xmodal.nn.temperature import Temperature


class AttentionPool(nn.Module):
    """``[B, T, D]`` local features (+ mask) -> weights ``[B, T]`` and the pooled ``[B, D]`` (eqs. 7-9).

    ``W_a`` has no bias: a constant added to every logit cancels in the softmax (eq. 8).
    """

    def __init__(self, dim: int, logits: Literal["tanh", "linear"] = "tanh", temperature: float = 1.0,
                 learn_temperature: bool = False):
        super().__init__()
        self.vector = nn.Linear(dim, 1, bias=False)  # W_a in R^{1 x d_a}
        nn.init.normal_(self.vector.weight, std=1.0 / math.sqrt(dim))
        self.logits = logits
        self.temperature = Temperature(temperature, learn_temperature)

    def weights(self, local: Tensor, mask: Tensor | None = None) -> Tensor:
        logits = self.vector(local).squeeze(-1)
        if self.logits == "tanh":
            logits = torch.tanh(logits)  # eq. 7
        logits = logits * self.temperature.inverse()
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return torch.softmax(logits, dim=-1)  # eq. 8

    def forward(self, local: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        weights = self.weights(local, mask)
        return weighted_sum(weights, local), weights


def weighted_sum(weights: Tensor, local: Tensor) -> Tensor:
    """``sum_i a_i x_i`` per item (eq. 9): weights ``[B, T]``, local features ``[B, T, D]`` -> ``[B, D]``."""
    return torch.einsum("bt,btd->bd", weights, local)


def uniform_weights(local: Tensor, mask: Tensor | None = None) -> Tensor:
    """The weights of a plain mean over the valid positions (ACLN's "baseline", Table 2)."""
    if mask is None:
        mask = torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)
    valid = mask.to(local.dtype)
    return valid / valid.sum(-1, keepdim=True).clamp_min(1.0)
