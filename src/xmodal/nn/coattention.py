"""Parallel co-attention of JGCAR (Wang et al., MM 2018, section 2.3, eqs. 11-15).

For image regions ``V [N, d]`` and words ``S [T, d]`` of one pair:

- affinity ``A = S W_b V^T``, ``[T, N]`` (eq. 11);
- hidden states ``H^v = tanh(V W_v^T + b_v) * tanh(A^T S W_s^T)`` ``[N, l]`` and
  ``H^s = tanh(S W_s^T + b_s) * tanh(A V W_v^T)`` ``[T, l]`` (eq. 12, written row-major);
- attention ``a^v = softmax_n(H^v w_hv)``, ``a^s = softmax_t(H^s w_hs)`` over valid words (eq. 13);
- attended features ``v_bar = sum_n a^v(n) v(n)``, ``s_bar = sum_t a^s(t) s(t)`` (eq. 14);
- score = cosine(v_bar, s_bar) (eq. 15).

Everything that depends on one side only (``V W_b^T``, ``V W_v^T``, ``tanh(. + b) * w_h``) is
computed once per item (:meth:`CoAttention.images` / :meth:`CoAttention.texts`); the pair part
(:func:`attend`) is a handful of einsums over broadcast pair dimensions, so the same code scores
all pairs of two blocks (``[I, 1, ...]`` against ``[1, J, ...]``) or aligned pairs (``[P, ...]``).
Its largest intermediates have ``pairs x N x l`` and ``pairs x T x N`` elements, so
:meth:`CoAttention.all_pairs` groups the texts by length (each group cut to its longest text,
so short texts do not pay for long ones' padding) and walks the image block in chunks that keep
each intermediate under ``chunk_elements``; under autograd it checkpoints each chunk
(recomputed in backward) so a training batch of B x B pairs needs the memory of one chunk.

Deviations, both because a term is constant or undefined here: ``b_hv`` and ``b_hs`` of eq. 13
are dropped (a constant added to every logit cancels in the softmax), and ``b_s`` is one vector
shared by all word positions (the paper's ``b_s in R^{l x T}`` assumes a fixed length T); ``b_v``
keeps the paper's per-region form ``[N, l]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from xmodal.nn.pairs import PAIR_BUDGET, all_pairs
from xmodal.nn.temperature import Temperature


@dataclass
class Side:
    """One side's per-item tensors: features ``x [..., P, d]``, bilinear/projected forms, mask."""

    features: Tensor  # V or S
    keys: Tensor  # images: V W_b^T [..., N, d]; texts: S itself (A = S (V W_b^T)^T)
    projected: Tensor  # V W_v^T or S W_s^T, [..., P, l]
    gate: Tensor  # tanh(projected + b) * w_h, [..., P, l]: the self part of eq. 12 times eq. 13's w
    mask: Tensor | None = None  # texts: [..., T] valid words

    def take(self, index: Tensor | slice) -> "Side":
        mask = None if self.mask is None else self.mask[index]
        return Side(self.features[index], self.keys[index], self.projected[index], self.gate[index], mask)

    def unsqueeze(self, dim: int) -> "Side":
        mask = None if self.mask is None else self.mask.unsqueeze(dim)
        return Side(self.features.unsqueeze(dim), self.keys.unsqueeze(dim), self.projected.unsqueeze(dim),
                    self.gate.unsqueeze(dim), mask)

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.features, self.keys, self.projected, self.gate, self.mask)


@dataclass
class Attended:
    """Co-attentive features and attention weights of a set of pairs (shape ``[*pairs, ...]``)."""

    image: Tensor  # v_bar [*pairs, d]
    text: Tensor  # s_bar [*pairs, d]
    image_weights: Tensor  # a^v [*pairs, N]
    text_weights: Tensor  # a^s [*pairs, T]

    def scores(self) -> Tensor:
        """Eq. 15: cosine of the two attended features, ``[*pairs]``."""
        return nn.functional.cosine_similarity(self.image, self.text, dim=-1, eps=1e-8)


def _trim(texts: Side, width: int) -> Side:
    """The first ``width`` word positions of every tensor of a text side."""
    return Side(*(tensor[:, :width] for tensor in texts.tensors()))


def attend(images: Side, texts: Side) -> Attended:
    """Eqs. 11-14 for the pairs that the leading dimensions of the two sides broadcast to."""
    affinity = torch.einsum("...td,...nd->...tn", texts.keys, images.keys)  # eq. 11, [*, T, N]
    text_in_regions = torch.einsum("...tn,...tl->...nl", affinity, texts.projected)  # W_s S A
    regions_in_text = torch.einsum("...tn,...nl->...tl", affinity, images.projected)  # W_v V A^T
    image_logits = (torch.tanh(text_in_regions) * images.gate).sum(-1)  # eqs. 12-13, [*, N]
    text_logits = (torch.tanh(regions_in_text) * texts.gate).sum(-1)  # [*, T]
    text_logits = text_logits.masked_fill(~texts.mask, float("-inf"))
    image_weights, text_weights = image_logits.softmax(-1), text_logits.softmax(-1)
    image = torch.einsum("...n,...nd->...d", image_weights, images.features)  # eq. 14
    text = torch.einsum("...t,...td->...d", text_weights, texts.features)
    return Attended(image, text, image_weights, text_weights)


class CoAttention(nn.Module):
    """The parameters of eqs. 11-13 and batched scoring of image x text blocks."""

    def __init__(self, dim: int, hidden: int, regions: int, chunk_elements: int = PAIR_BUDGET, text_group: int = 32,
                 affinity_scale: float = 1.0, temperature: float = 1.0, learn_temperature: bool = False):
        super().__init__()
        self.affinity_scale = affinity_scale  # multiplies A of eq. 11 (1: the paper)
        # divides eq. 13's logits before the softmax (1, fixed: the paper); applied through w_h, which
        # every logit is linear in
        self.temperature = Temperature(temperature, learn_temperature)
        self.bilinear = nn.Linear(dim, dim, bias=False)  # W_b
        self.image_proj = nn.Linear(dim, hidden, bias=False)  # W_v
        self.text_proj = nn.Linear(dim, hidden, bias=False)  # W_s
        self.region_bias = nn.Parameter(torch.zeros(regions, hidden))  # b_v, one per region
        self.word_bias = nn.Parameter(torch.zeros(hidden))  # b_s, shared by positions
        self.image_score = nn.Parameter(torch.randn(hidden) / hidden**0.5)  # w_hv
        self.text_score = nn.Parameter(torch.randn(hidden) / hidden**0.5)  # w_hs
        self.hidden = hidden
        self.chunk_elements = chunk_elements  # bound on each pair intermediate (floats)
        self.text_group = text_group

    def images(self, regions: Tensor) -> Side:
        """Per-image tensors of ``V [B, N, d]``."""
        projected = self.image_proj(regions)
        gate = torch.tanh(projected + self.region_bias) * self.image_score * self.temperature.inverse()
        return Side(regions, self.bilinear(regions) * self.affinity_scale, projected, gate)

    def texts(self, words: Tensor, mask: Tensor) -> Side:
        """Per-text tensors of ``S [B, T, d]`` (zero at padding) with its ``mask [B, T]``."""
        projected = self.text_proj(words)
        gate = torch.tanh(projected + self.word_bias) * self.text_score * self.temperature.inverse()
        return Side(words, words, projected, gate, mask)

    def aligned(self, images: Side, texts: Side) -> Attended:
        """Image p with text p, for ``P`` pairs given as two sides of ``P`` items each."""
        return attend(images, texts)

    def all_pairs(self, images: Side, texts: Side, reduce: Callable[[Attended], tuple[Tensor, ...]]
                  ) -> tuple[Tensor, ...]:
        """``reduce`` of every image x text pair, ``[I, J, ...]`` outputs, in memory-bounded chunks.

        Texts are grouped by length (``text_group`` at a time, shortest first) and each group is
        cut to its longest text, so short texts do not pay for the padding of long ones.
        """
        order = texts.mask.sum(-1).argsort(stable=True)
        parts = []
        for group in order.split(self.text_group):
            width = max(1, int(texts.mask[group].sum(-1).max()))
            trimmed = texts.take(group)
            parts.append(self._image_chunks(images, _trim(trimmed, width), reduce))
        inverse = order.argsort()
        return tuple(torch.cat(outputs, dim=1).index_select(1, inverse) for outputs in zip(*parts))

    def _image_chunks(self, images: Side, texts: Side, reduce: Callable[[Attended], tuple[Tensor, ...]]
                      ) -> tuple[Tensor, ...]:
        """All pairs of ``images`` x one text group, in memory-bounded image chunks (:mod:`xmodal.nn.pairs`)."""
        text_side = texts.unsqueeze(0)

        def chunk(*tensors: Tensor) -> tuple[Tensor, ...]:
            return reduce(attend(Side(*tensors).unsqueeze(1), text_side))

        return all_pairs(chunk, images.tensors()[:4], len(texts.features),
                         self.pair_cost(texts.features.shape[1]), self.chunk_elements)

    def pair_cost(self, words: int) -> int:
        """Floats of the largest intermediate of one image x text pair (eqs. 11-13)."""
        regions = len(self.region_bias)
        return max(regions * self.hidden, words * regions, words * self.hidden)

    def all_scores(self, images: Side, texts: Side) -> Tensor:
        """Eq. 15 for every pair: ``[I, J]``."""
        return self.all_pairs(images, texts, lambda attended: (attended.scores(),))[0]

    def all_features(self, images: Side, texts: Side) -> tuple[Tensor, Tensor]:
        """``v_bar_{i|j}`` and ``s_bar_{j|i}`` of every pair: two ``[I, J, d]`` tensors."""
        image, text = self.all_pairs(images, texts, lambda attended: (attended.image, attended.text))
        return image, text
