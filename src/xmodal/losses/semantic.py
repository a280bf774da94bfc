"""Semantic and pairwise-correlation losses of ACLN (Huang, Ye, Peng, 2017, eqs. 10-13)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def label_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross entropy on category labels (eq. 13), mean over the items that have a label.

    ``labels [B, C]`` is multi-hot. A single-label row is eq. 13 exactly; a row with several
    labels takes the normalised multi-hot vector as the target distribution (the usual softmax
    loss for multi-label data), so each of its labels gets ``1/k`` of the log-likelihood. Rows
    without a label are left out.
    """
    counts = labels.sum(1)
    labelled = counts > 0
    if not labelled.any():
        return logits.sum() * 0.0
    targets = labels[labelled] / counts[labelled, None]
    return nn.functional.cross_entropy(logits[labelled], targets)


def correlation_loss(image: Tensor, text: Tensor) -> Tensor:
    """Mean ``1 - cos`` of matching global features (eqs. 10-11).

    Eq. 10 prints the cosine itself as the "discrepancy"; minimising it would push pairs apart.
    Section 4.1 names Torch's CosineEmbeddingCriterion with margin 0, whose loss on a matching pair
    is ``1 - cos``, averaged over the batch (its default size averaging): that is what is computed.
    """
    return nn.functional.cosine_embedding_loss(image, text, torch.ones(len(image), device=image.device), margin=0.0)
