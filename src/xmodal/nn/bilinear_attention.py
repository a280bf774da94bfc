"""Bilinear attention and an LSTM run over many pairs at once (BSSAN, Huang et al., TIP 2019).

:class:`BilinearAttention` is the attention of BSSAN's eqs. 1-2 (word to regions) and 9-10
(object to words): for a query ``q`` and keys ``k_j``, ``e_j = tanh(q^T W k_j + b)`` and the
weights are ``softmax_j(e_j)``. The bilinear form is split so the per-item part is computed once
per item: ``W k_j`` (:meth:`BilinearAttention.keys`, in the query's space) or ``q^T W``
(:meth:`BilinearAttention.queries`, in the key's space), whichever space is narrower; the pair
part is then one contraction (:meth:`BilinearAttention.logits`) over broadcast pair dimensions.

``tanh`` bounds every logit to [-1, 1], so the weights of D keys can differ by at most a factor
e^2 (about 7.4): with 196 regions the printed eq. 2 cannot attend sharply. ``scale`` multiplies
the logits after tanh, before the softmax (1: as printed), the same knob as ACLN's
``attention_scale``. ``inner_scale`` multiplies ``q^T W k`` before the bias and tanh (1: as
printed): raw CNN features put most logits where tanh is flat, unit-length ones put them all near
0, and neither learns where to look; a scale brings them to where tanh has a slope.

:func:`lstm_last_states` runs an ``nn.LSTM``'s single layer over sequences whose input gate
pre-activations ``W_ih x_t + b`` were already computed (for BSSAN's W2R they are a sum of a
per-image and a per-text part, eq. 3 being linear in the regions), and returns each sequence's
state after its last real step. Sequences are ordered by length so each step updates only the
prefix still running (what ``pack_padded_sequence`` does inside ``nn.LSTM``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BilinearAttention(nn.Module):
    """``e = scale * tanh(inner_scale * q^T W k + b)`` over keys (BSSAN eqs. 2, 10) and masked softmax weights
    (eqs. 1, 9)."""

    def __init__(self, query_dim: int, key_dim: int, scale: float = 1.0, inner_scale: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(query_dim, key_dim))  # W
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(()))  # b, one scalar (eq. 2 "the bias term")
        self.scale, self.inner_scale = scale, inner_scale

    def keys(self, keys: Tensor) -> Tensor:
        """``W k_j`` for keys ``[..., N, key_dim]`` -> ``[..., N, query_dim]`` (per item)."""
        return keys @ self.weight.T

    def queries(self, queries: Tensor) -> Tensor:
        """``q^T W`` for queries ``[..., Q, query_dim]`` -> ``[..., Q, key_dim]`` (per item)."""
        return queries @ self.weight

    def pre_tanh(self, queries: Tensor, keys: Tensor) -> Tensor:
        """``inner_scale * q_i . k_j + b`` ``[..., Q, N]``: eq. 2's argument of tanh."""
        return self.inner_scale * torch.einsum("...qd,...nd->...qn", queries, keys) + self.bias

    def logits(self, queries: Tensor, keys: Tensor) -> Tensor:
        """``scale * tanh(inner_scale * q_i . k_j + b)`` ``[..., Q, N]`` for queries and keys already in one space."""
        return self.scale * torch.tanh(self.pre_tanh(queries, keys))

    @staticmethod
    def weights(logits: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Softmax over the last axis, padding keys (``key_mask`` False) excluded."""
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask.unsqueeze(-2), float("-inf"))
        return logits.softmax(-1)


def lstm_last_states(gates: Tensor, lengths: Tensor, lstm: nn.LSTM) -> Tensor:
    """Hidden state of each sequence after its last real step, ``[P, H]``.

    ``gates [P, T, 4H]`` are the input parts of the gate pre-activations, ``W_ih x_t + b_ih +
    b_hh``, in ``nn.LSTM``'s order (input, forget, cell, output); ``lengths [P]`` (at least 1).
    The recurrent weights are ``lstm``'s first layer, forward direction.
    """
    count, steps, _ = gates.shape
    hidden = lstm.hidden_size
    lengths = lengths.clamp(1, steps)
    order = lengths.argsort(descending=True, stable=True)
    gates, lengths = gates[order], lengths[order]
    running = (lengths[None, :] > torch.arange(steps, device=lengths.device)[:, None]).sum(1).tolist()
    h = gates.new_zeros(count, hidden)
    c = gates.new_zeros(count, hidden)
    weight = lstm.weight_hh_l0
    for step, active in enumerate(running):
        if active == 0:
            break
        pre = gates[:active, step] + h[:active] @ weight.T
        i, f, g, o = pre.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c[:active] + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        # Not in place: autograd keeps the states of every step.
        c = torch.cat([c_new, c[active:]]) if active < count else c_new
        h = torch.cat([h_new, h[active:]]) if active < count else h_new
    return h[order.argsort()]


def score_mlp(in_dim: int, hidden: list[int]) -> nn.Sequential:
    """``in_dim -> hidden... -> 1``: Linear, batch norm, tanh per hidden layer (BSSAN Table I, section V-B)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.Tanh()]
        in_dim = width
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)
