"""Ranking losses on an image x text score matrix of a batch."""

from __future__ import annotations

import torch
from torch import Tensor


def bidirectional_triplet(scores: Tensor, positives: Tensor, margin: float = 0.2, hardest: bool = True) -> Tensor:
    """Hinge triplet loss in both directions (VSE++, Faghri et al. 2018, eqs. 4-5).

    ``scores[i, j]`` is the score of image i and text j, ``positives[i, j]`` marks matching pairs
    (several texts of one image may share a batch). Each positive pair (i, j) is compared with
    the negatives of its row (texts for image i) and of its column (images for text j):
    ``[margin - s(i, j) + s(i, j')]_+``. With ``hardest`` only the hardest negative counts (max of
    violations, "MH" in VSE++), else they are summed ("SH"). Mean over positive pairs.
    """
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} differ in shape")
    positive_scores = scores[positives]  # [P]
    rows, cols = positives.nonzero(as_tuple=True)
    negative = torch.finfo(scores.dtype).min
    text_negatives = scores.masked_fill(positives, negative)[rows]  # [P, n_txt]: other texts of image i
    image_negatives = scores.T.masked_fill(positives.T, negative)[cols]  # [P, n_img]: other images of text j
    cost_text = (margin - positive_scores[:, None] + text_negatives).clamp_min(0)
    cost_image = (margin - positive_scores[:, None] + image_negatives).clamp_min(0)
    if hardest:
        return (cost_text.max(dim=1).values + cost_image.max(dim=1).values).mean()
    return (cost_text.sum(dim=1) + cost_image.sum(dim=1)).mean()
