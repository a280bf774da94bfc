"""Hinge triplet losses averaged over every valid (anchor, positive, negative) triplet."""

from __future__ import annotations

from torch import Tensor


def triplet_over_sets(scores: Tensor, positives: Tensor, negatives: Tensor, margin: float) -> Tensor:
    """Mean over valid triplets of ``[margin - s(a, p) + s(a, n)]_+``.

    ``scores [A, C]`` scores each anchor row against candidate columns; ``positives`` and
    ``negatives`` (bool ``[A, C]``) say which candidates are each anchor's positives and
    negatives. Every (a, p, n) with ``positives[a, p]`` and ``negatives[a, n]`` counts once, as
    the sums of JGCAR eqs. 6-8 do; the mean (not the sum) keeps the term's scale independent of
    the batch size. 0 when there is no valid triplet.
    """
    if not (scores.shape == positives.shape == negatives.shape):
        raise ValueError(f"scores {tuple(scores.shape)}, positives {tuple(positives.shape)} and "
                         f"negatives {tuple(negatives.shape)} must have one shape")
    anchors, targets = positives.nonzero(as_tuple=True)  # one row per (anchor, positive) pair
    cost = (margin - scores[anchors, targets][:, None] + scores[anchors]).clamp_min(0)  # [pairs, C]
    valid = negatives[anchors]
    return (cost * valid).sum() / valid.sum().clamp_min(1)


def bidirectional_mean_triplet(scores: Tensor, positives: Tensor, margin: float) -> Tensor:
    """Cross-modal triplet loss both ways (JGCAR eq. 6), non-matching pairs as negatives.

    ``scores [n_img, n_txt]``; image anchors rank texts (rows), text anchors rank images (columns).
    """
    return (triplet_over_sets(scores, positives, ~positives, margin)
            + triplet_over_sets(scores.T, positives.T, ~positives.T, margin))
