"""The softmax-like bi-directional ranking loss of JGCAR (eq. 16) on co-attentive features.

Reading of eq. 16 (the paper leaves parts implicit; each choice is marked):

- Query image ``i`` of batch pair k has the pair's text as its positive; ``alpha`` is the
  co-attentive cosine (eq. 15).
- Cross-modal set ``S_i``: the positive text and the M' hardest negative texts, i.e. the
  non-matching texts (other items) with the *highest* ``alpha(v_i | s)`` in the batch. The paper
  says "most dissimilar"; we read it as the hardest negatives, as in the issue, since the
  easiest ones carry almost no gradient.
- Intra-modal set ``V_i``: the numerator of eq. 16's second fraction is the positive
  cross-modal score; the other members are the M' hardest negative images ``i'`` scored by the
  cosine of the query image's co-attended feature ``v_bar_{i|j}`` and the negative image's
  ``v_bar_{i'|j}``, both attended by the query's positive text j. So the matched text must beat
  the most similar other images ("we directly use negative intra-modal and inter-modal pairs
  without searching for extra positively intra-modal pairs", end of 2.3).
  The literal reading of eq. 16 takes the denominator over ``V_i = {v_bar_i} + V_i^-``, so its
  first term would be ``exp(gamma cos(v_bar_i, v_bar_i)) = exp(gamma)`` rather than the positive's
  ``exp(gamma alpha+)``; the numerator (a cross-modal score) is then not a member of its own
  set and the "probability" cannot reach 1. We keep the positive in the denominator so that the
  term is a softmax share, like the cross-modal one. Either way, image-image cosines of
  co-attended features are high next to cross-modal ones, so this share stays near 0 and its
  gradient ``gamma P (1 - P)`` is small (benchmarks/results/jgcar.md).
- The loss of a query is ``2 - P_cross - P_intra`` (eq. 16); the sentence-to-images direction
  mirrors it, and J_C is the sum of the two directions' means over the batch's queries.
  ``form="neg_log_p"`` (issue 29, not in the paper) takes ``-log P_cross - log P_intra`` instead:
  the gradient of ``1 - P`` with respect to a logit is ``gamma P (1 - P)``, near 0 while P is
  small (at the start of training), where ``-log P``'s is ``gamma (1 - P)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


def ranking_probability(positive: Tensor, candidates: Tensor, negatives: Tensor, gamma: float,
                        m_prime: int) -> Tensor:
    """``exp(g s+) / (exp(g s+) + sum over the M' highest negatives exp(g s-))``, one per query row.

    ``positive [Q]``; ``candidates [Q, C]`` scores of each query's candidates; ``negatives
    [Q, C]`` bool marks the ones that may serve as negatives. Rows with fewer than M' negatives
    use all they have.
    """
    return ranking_log_probability(positive, candidates, negatives, gamma, m_prime).exp()


def ranking_log_probability(positive: Tensor, candidates: Tensor, negatives: Tensor, gamma: float,
                            m_prime: int) -> Tensor:
    """The log of :func:`ranking_probability`, computed stably."""
    masked = candidates.masked_fill(~negatives, float("-inf"))
    hardest = masked.topk(min(m_prime, masked.shape[1]), dim=1).values
    logits = gamma * torch.cat([positive[:, None], hardest], dim=1)
    return gamma * positive - logits.logsumexp(dim=1)


def coattentive_scores(image: Tensor, text: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """From ``v_bar_{i|j}`` and ``s_bar_{j|i}`` of every batch pair (``[B, B, d]`` each, image i,
    text j) the cross-modal scores ``alpha[i, j]``, and the intra-modal ones of each pair k's
    query: ``image_intra[k, i] = cos(v_bar_{k|k}, v_bar_{i|k})``,
    ``text_intra[k, j] = cos(s_bar_{k|k}, s_bar_{j|k})``.
    """
    image, text = nn.functional.normalize(image, dim=-1), nn.functional.normalize(text, dim=-1)
    cross = (image * text).sum(-1)
    own_image = image.diagonal(dim1=0, dim2=1).T  # [B, d]: v_bar_{k|k}
    own_text = text.diagonal(dim1=0, dim2=1).T
    image_intra = torch.einsum("kd,ikd->ki", own_image, image)
    text_intra = torch.einsum("kd,kjd->kj", own_text, text)
    return cross, image_intra, text_intra


def bi_rank_loss(cross: Tensor, image_intra: Tensor, text_intra: Tensor, positives: Tensor,
                 gamma: float = 10.0, m_prime: int = 30, form: Literal["one_minus_p", "neg_log_p"] = "one_minus_p"
                 ) -> Tensor:
    """Eq. 16 in both directions; batch pair k (image row k, text column k) is query k's positive.

    ``cross [B, B]`` image x text scores; ``image_intra``/``text_intra`` as returned by
    :func:`coattentive_scores`; ``positives [B, B]`` marks pairs of one item (never negatives).
    ``form``: each probability's term, ``1 - P`` (eq. 16) or ``-log P``.
    """
    negatives = ~positives
    positive = cross.diagonal()

    def term(candidates: Tensor, allowed: Tensor) -> Tensor:
        log_p = ranking_log_probability(positive, candidates, allowed, gamma, m_prime)
        return 1 - log_p.exp() if form == "one_minus_p" else -log_p

    image_query = term(cross, negatives) + term(image_intra, negatives)
    text_query = term(cross.T, negatives.T) + term(text_intra, negatives.T)
    return image_query.mean() + text_query.mean()
