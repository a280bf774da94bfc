"""Measures of whether a pairwise (attention) score adds anything over a global cosine.

Used by ``python -m benchmarks probe jgcar-attention`` on JGCAR, usable on any model with attention
weights and a first-stage score:

- :func:`relative_entropy`: entropy of attention distributions divided by ``log`` of the number of
  valid positions (1 = uniform, 0 = all weight on one position);
- :func:`spearman_rows`: per-query Spearman rank correlation of two score matrices, over all
  candidates or over a shortlist;
- :func:`topk_changes`: how many queries' top-k lists a rerank changes;
- :func:`score_variance_split`: how much of a score matrix's variance is the image's, the text's,
  or their interaction's (only the interaction can match a text to its image);
- :func:`module_grad_norms`: the gradient norm of each top-level module for one loss, before any
  clipping.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def relative_entropy(weights: Tensor, mask: Tensor | None = None) -> Tensor:
    """``H(w) / log(n_valid)`` over the last dimension; NaN where fewer than 2 positions are valid.

    ``weights [..., P]`` are distributions (zero at masked positions); ``mask [..., P]`` marks the
    valid positions (all when None).
    """
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)
    valid = torch.full(weights.shape[:-1], weights.shape[-1], dtype=weights.dtype, device=weights.device) \
        if mask is None else mask.sum(-1).to(weights.dtype).expand(weights.shape[:-1])
    return torch.where(valid > 1, entropy / valid.clamp_min(2).log(), torch.full_like(entropy, math.nan))


def _ranks(scores: Tensor) -> Tensor:
    """Ranks (0 = lowest) along the last dimension; ties broken by position (continuous scores)."""
    return scores.argsort(-1).argsort(-1).to(torch.float64)


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """Spearman correlation of ``a[q]`` and ``b[q]`` for each row q: ``[Q]`` (NaN for a constant row)."""
    if a.shape != b.shape:
        raise ValueError(f"spearman_rows: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1))


def topk_changes(before: Tensor, after: Tensor, k: int = 10) -> dict[str, float]:
    """How a rerank changes each query's top ``k`` (rows of two ``[Q, C]`` score matrices).

    ``order``: fraction of queries whose ordered top-k list differs; ``set``: fraction whose top-k
    set differs; ``replaced``: mean number of top-k items that are new after the rerank.
    """
    k = min(k, before.shape[1])
    top_before, top_after = before.topk(k, dim=1).indices, after.topk(k, dim=1).indices
    kept = (top_after.unsqueeze(2) == top_before.unsqueeze(1)).any(2).sum(1)
    return {"order": (top_before != top_after).any(1).float().mean().item(),
            "set": (kept < k).float().mean().item(),
            "replaced": (k - kept).float().mean().item()}


def score_variance_split(scores: Tensor) -> dict[str, float]:
    """Shares of the variance of a full ``[I, T]`` score matrix, ``S = mu + a_i + b_j + e_ij``.

    ``image``: of the row effects a_i (an image scoring high against every text: it can only move
    images up or down a text's ranking as a whole); ``text``: of the column effects b_j; the
    ``interaction`` e_ij is the only part that can put a text's own image first. The three shares
    sum to 1 (the parts are orthogonal on a full matrix).
    """
    scores = scores.double()
    centred = scores - scores.mean()
    image = centred.mean(1, keepdim=True)
    text = centred.mean(0, keepdim=True)
    interaction = centred - image - text
    total = centred.pow(2).mean().clamp_min(1e-300)
    return {"image": float(image.pow(2).mean() / total), "text": float(text.pow(2).mean() / total),
            "interaction": float(interaction.pow(2).mean() / total)}


def module_grad_norms(model: nn.Module, loss: Tensor, retain_graph: bool = False) -> dict[str, float]:
    """L2 norm of the gradient of ``loss`` per top-level child module of ``model`` (and ``total``),
    before any clipping; modules the loss does not reach are left out. ``retain_graph`` keeps the
    graph for another loss of the same forward pass."""
    named = [(name, [p for p in module.parameters() if p.requires_grad]) for name, module in model.named_children()]
    named = [(name, params) for name, params in named if params]
    flat = [p for _, params in named for p in params]
    grads = torch.autograd.grad(loss, flat, allow_unused=True, retain_graph=retain_graph)
    norms, start, total = {}, 0, 0.0
    for name, params in named:
        chunk = [g for g in grads[start : start + len(params)] if g is not None]
        start += len(params)
        if chunk:
            squared = sum(float(g.pow(2).sum()) for g in chunk)
            norms[name], total = math.sqrt(squared), total + squared
    norms["total"] = math.sqrt(total)
    return norms
