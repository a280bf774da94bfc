"""Masked pooling over sets and sequences."""

from __future__ import annotations

import torch
from torch import Tensor


def length_mask(lengths: Tensor, width: int) -> Tensor:
    """``[B, width]`` bool, True at the first ``lengths[b]`` positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values [B, T, D]`` over positions where ``mask [B, T]`` is True."""
    weights = mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)
