"""De-correlation of feature dimensions on the matrix covariance of a batch (JGCAR eq. 9).

Eq. 9 penalises the off-diagonal entries of the covariance, which scale with the square of the
features: any loss that is blind to the features' scale (cosine scores, as xmodal's JGCAR uses)
leaves shrinking them as the cheapest way to lower it. In JGCAR that shrank the text states S
(mean |s| 0.04 after 3 epochs, 0.22 with the fix), the affinities of eq. 11 with them, and left
the co-attention uniform (benchmarks/results/jgcar.md). ``normalise=True`` computes eq. 9 on unit-length feature
vectors (each region's or word's d-vector divided by its norm, as the cosine scores see them):
blind to scale, and bounded (at most 1/2), so it keeps eq. 9's weight of 1 in J_G meaningful.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def matrix_covariance(features: Tensor, mask: Tensor | None = None) -> Tensor:
    """``C [d, d]`` of ``features [B, P, d]``: covariance between dimensions, position by position.

    Eq. 9's ``C(d1, d2) = 1/N_b sum_k (V_k(d1, :) - mu_d1)^T (V_k(d2, :) - mu_d2)``: each
    position p (region or word) is centred on its own batch mean ``mu[p]``, so dimensions are
    compared only at the same position ("matrix co-variance"). ``mask [B, P]`` drops padding
    (a word position's mean is over the texts that reach it). Normalised by the number of valid
    (item, position) entries, not by ``N_b`` alone, so the scale does not grow with P (196
    regions vs a few words); that is the paper's C divided by P for a full mask.
    """
    weights = features.new_ones(features.shape[:2]) if mask is None else mask.to(features.dtype)
    weights = weights.unsqueeze(-1)  # [B, P, 1]
    mean = (features * weights).sum(0) / weights.sum(0).clamp_min(1.0)  # mu [P, d]
    centred = (features - mean) * weights
    return torch.einsum("bpd,bpe->de", centred, centred) / weights.sum().clamp_min(1.0)


def decorrelation_loss(features: Tensor, mask: Tensor | None = None, normalise: bool = False) -> Tensor:
    """Eq. 9 for one modality: ``(||C||_F^2 - ||diag(C)||^2) / 2``, the off-diagonal energy.

    ``normalise``: on unit-length feature vectors, so scaling the features does not change the loss
    (module docstring).
    """
    if normalise:
        features = nn.functional.normalize(features, dim=-1)
    covariance = matrix_covariance(features, mask)
    return 0.5 * (covariance.square().sum() - covariance.diagonal().square().sum())
