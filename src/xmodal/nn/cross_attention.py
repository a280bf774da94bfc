"""Stacked cross attention between two sets of unit vectors (SCAN, Lee et al., ECCV 2018, sections 3.1-3.2).

One side attends, the other is attended: in SCAN's text-image formulation (t-i) each word
attends over the regions, in its image-text formulation (i-t) each region over the words. With
``s[q, c]`` the cosine of attending item q and attended item c (both sides l2-normalised, so a
dot product is the cosine):

1. ``s_bar = LeakyReLU(s)`` (slope 0.1, as the authors' code; the paper prints ``[s]_+``, slope 0)
   normalised to unit l2 norm over the *attending* axis q for each c: which of the attending items
   a context item fits best, relative to the others (the published code's "clipped_l2norm");
2. ``alpha[q, c] = softmax_c(lambda_1 * s_bar[q, c])`` over the attended axis, lambda_1 the inverse
   temperature (9 for t-i, 4 for i-t in the paper's best models);
3. the attended vector ``a_q = sum_c alpha[q, c] x_c`` and its relevance ``R_q = cos(y_q, a_q)``;
4. the pair's score pools R over the attending items: their mean (AVG) or
   ``log(sum_q exp(lambda_2 R_q)) / lambda_2`` (LSE, lambda_2 = 6 for t-i).

Every pair's score needs only ``s`` and each attended side's Gram matrix ``G = X X^T``:
``y_q . a_q = sum_c alpha[q, c] s[q, c]`` and ``|a_q|^2 = alpha_q^T G alpha_q``, so the
D-wide vectors meet once, in ``s``, and the per-pair cost of step 3 is ``Q x C x C``, not
``Q x C x D``. The functions take any leading dimensions; :func:`relevance` is a batched matrix
product when the attending items of all the pairs that share one attended item set are laid out
as one ``Q`` axis (SCAN's t-i: every word of every text against one image's regions).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-8  # as the authors' cosine and l2norm


def cross_attention(cosines: Tensor, attending_mask: Tensor, attended_mask: Tensor, temperature: float,
                    leaky_slope: float = 0.1) -> Tensor:
    """alpha ``[..., Q, C]`` (steps 1-2) from the cosines ``[..., Q, C]`` of attending x attended items.

    ``attending_mask [..., Q]`` and ``attended_mask [..., C]`` (bool) mark real items: padding
    takes no part in step 1's norm and gets no weight in step 2's softmax.
    """
    clipped = nn.functional.leaky_relu(cosines, leaky_slope)
    if not bool(attending_mask.all()):  # padding takes no part in the norm (skipped when there is none)
        clipped = clipped * attending_mask.unsqueeze(-1)
    # l2 over the attending axis. A padded attended item's column is all zero, and sqrt's gradient at
    # 0 is infinite: times the zero gradient its masked logits get, that is NaN, which reached every
    # weight in the first epoch of i-t training (attended words padded); clamping the sum keeps it 0.
    scale = temperature / (clipped.pow(2).sum(-2, keepdim=True).clamp_min(EPS * EPS).sqrt() + EPS)
    logits = clipped * scale  # one pass for the normalisation and lambda_1
    if not bool(attended_mask.all()):
        logits = logits.masked_fill(~attended_mask.unsqueeze(-2), float("-inf"))
    return torch.softmax(logits, dim=-1)


def relevance(alpha: Tensor, cosines: Tensor, attended_gram: Tensor) -> Tensor:
    """``R_q = cos(y_q, a_q)`` ``[..., Q]`` (step 3) from alpha and the cosines ``[..., Q, C]`` and the
    attended side's Gram matrix ``[..., C, C]`` of its unit vectors (the attending y_q are unit length)."""
    dot = (alpha * cosines).sum(-1)
    squared_norm = ((alpha @ attended_gram) * alpha).sum(-1)
    return dot / (squared_norm.clamp_min(EPS * EPS).sqrt() + EPS)  # finite gradient at a zero vector, as above


def pool_relevance(relevances: Tensor, mask: Tensor, aggregation: str, temperature: float) -> Tensor:
    """The pair score (step 4): mean of ``relevances [..., Q]`` over the real items, or LogSumExp."""
    if aggregation == "avg":
        return (relevances * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    if aggregation == "lse":
        return torch.logsumexp((temperature * relevances).masked_fill(~mask, float("-inf")), dim=-1) / temperature
    raise ValueError(f"aggregation {aggregation!r}: choose avg or lse")
