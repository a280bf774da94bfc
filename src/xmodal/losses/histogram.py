"""The global loss of Kumar, Carneiro and Reid (CVPR 2016) as SCANet uses it (Lu et al., eq. 10).

Over a set of matching pairs (positives: an image and a text of the same category) and
non-matching pairs (negatives), with scores in [0, 1]:

    Loss = (var+ + var-) + lambda * max(0, m - (mean+ - mean-))          (eq. 10)

so the two score histograms are pushed apart by at least the margin ``m`` and made narrow.
Readings chosen where the paper is silent: the variances are population variances (mean squared
deviation, no n - 1 correction, so a single pair has variance 0); a side with no pair contributes
no variance, and the mean term needs both sides (it is 0 when either is empty, since mean+ - mean-
is then undefined).
"""

from __future__ import annotations

import torch
from torch import Tensor

MARGIN = 0.6  # m (section 4.2, Table 4)
WEIGHT = 0.35  # lambda (section 4.2, Table 4)


def _mean_variance(scores: Tensor) -> tuple[Tensor, Tensor]:
    if scores.numel() == 0:
        zero = scores.new_zeros(())
        return zero, zero
    mean = scores.mean()
    return mean, (scores - mean).pow(2).mean()


def histogram_loss(positive: Tensor, negative: Tensor, margin: float = MARGIN,
                   weight: float = WEIGHT) -> dict[str, Tensor]:
    """Eq. 10 of the scores of matching (``positive``) and non-matching (``negative``) pairs, 1-d each.

    Returns ``"total"`` and its parts (``"variance"``, ``"gap"`` = mean+ - mean-) for the log.
    """
    mean_pos, var_pos = _mean_variance(positive.reshape(-1))
    mean_neg, var_neg = _mean_variance(negative.reshape(-1))
    variance = var_pos + var_neg
    if positive.numel() and negative.numel():
        gap = mean_pos - mean_neg
        hinge = torch.clamp_min(margin - gap, 0.0)
    else:
        gap = hinge = positive.new_zeros(())
    return {"total": variance + weight * hinge, "variance": variance.detach(), "gap": gap.detach()}
