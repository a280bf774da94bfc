"""Intra-modal triplet loss with label-based positives and negatives (JGCAR eqs. 7-8)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xmodal.losses.triplet import triplet_over_sets


def label_relations(labels: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
    """Positives and negatives among the items of a batch, bool ``[B, B]`` each.

    Positives share at least one label or are the same item, the anchor itself excluded;
    negatives share no label and are different items ("instances with no identical label are
    the negatively correlated examples", section 3.1). ``labels [B, C]`` multi-hot.
    """
    shared = (labels.float() @ labels.float().T) > 0
    same = items[:, None] == items[None, :]
    itself = torch.eye(len(items), dtype=torch.bool, device=items.device)
    return (shared | same) & ~itself, ~(shared | same)


def intra_modal_triplet(embeddings: Tensor, labels: Tensor, items: Tensor, margin: float) -> Tensor:
    """Eq. 7 (images) or eq. 8 (texts) on one modality's global vectors ``[B, d]``, cosine scores."""
    unit = nn.functional.normalize(embeddings, dim=-1)
    positives, negatives = label_relations(labels, items)
    return triplet_over_sets(unit @ unit.T, positives, negatives, margin)
