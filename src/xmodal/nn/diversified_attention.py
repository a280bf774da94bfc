"""Diversified attention (GPLDAN, Chen et al., section 2.1): k chunk representations of an item,
weighted by attention maps of both items of a pair.

An item's common-space vector ``v`` in R^L is reshaped into k chunks of H = L/k dimensions
(``[k, H]`` here, the transpose of the paper's ``R^{H x k}``). Eq. 1 gives one weight per chunk,
``a = softmax((W2 tanh(W1 x))^T)`` over the k chunks. Self-attention (eq. 2) and co-attention
(eq. 3) both fuse the chunks of item i with the *sum* of two items' weights,
``F(x_i, y_j) = sum_m x_i[m] (a_i[m] + b_j[m])``, so the cosine of ``F(x_i, y_j)`` and
``F(y_j, x_i)`` - the two share the weights ``w_ij = a_i + b_j`` - expands into k x k products:

    cos = w^T (X_i Y_j^T) w / sqrt(w^T (X_i X_i^T) w * w^T (Y_j Y_j^T) w)

:func:`pair_cosine` evaluates that for every pair of two blocks in a few einsums, with the k x k
Gram matrices ``X_i X_i^T`` precomputed per item (:func:`chunk_gram`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-12


class ChunkAttention(nn.Module):
    """Eq. 1: one softmax weight per chunk, ``softmax_k(W2 tanh(W1 x_m))``, with D = H/2, no biases."""

    def __init__(self, chunk_dim: int):
        super().__init__()
        hidden = max(chunk_dim // 2, 1)
        self.w1 = nn.Linear(chunk_dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, 1, bias=False)

    def forward(self, chunks: Tensor) -> Tensor:
        """``chunks [n, k, H]`` -> weights ``[n, k]`` summing to 1 over k."""
        return torch.softmax(self.w2(torch.tanh(self.w1(chunks))).squeeze(-1), dim=-1)


def split_chunks(vectors: Tensor, k: int) -> Tensor:
    """``[n, L]`` -> ``[n, k, L/k]``: the k representations of each item (reshape, section 2.1)."""
    n, length = vectors.shape
    if length % k:
        raise ValueError(f"common-space size {length} is not divisible by k={k}")
    return vectors.view(n, k, length // k)


def chunk_gram(chunks: Tensor) -> Tensor:
    """``[n, k, H]`` -> ``[n, k, k]``: inner products of an item's chunks with each other."""
    return torch.einsum("imh,inh->imn", chunks, chunks)


def fuse(chunks: Tensor, weights: Tensor) -> Tensor:
    """Eqs. 2-3 for one item each: ``sum_m chunks[:, m] * weights[:, m]`` -> ``[n, H]``."""
    return torch.einsum("nmh,nm->nh", chunks, weights)


def pair_cosine(x: Tensor, x_weights: Tensor, x_gram: Tensor,
                y: Tensor, y_weights: Tensor, y_gram: Tensor) -> Tensor:
    """``[I, J]``: cosine of ``F(x_i, y_j)`` and ``F(y_j, x_i)`` for every pair (eqs. 2-3, 5).

    ``x [I, k, H]``, ``x_weights [I, k]``, ``x_gram [I, k, k]`` (and the same for ``y``). Memory is
    O(I J k^2): the chunk cross products of all pairs, never the fused vectors of all pairs.
    """
    w = x_weights[:, None, :] + y_weights[None, :, :]  # [I, J, k]: a_i + b_j
    cross = torch.einsum("imh,jnh->ijmn", x, y)  # [I, J, k, k]
    dot = torch.einsum("ijm,ijmn,ijn->ij", w, cross, w)
    x_norm2 = torch.einsum("ijm,imn,ijn->ij", w, x_gram, w)
    y_norm2 = torch.einsum("ijm,jmn,ijn->ij", w, y_gram, w)
    return dot / (x_norm2 * y_norm2).clamp_min(EPS).sqrt()
