"""JGCAR's losses on small inputs whose values are worked out by hand (eqs. 6-9, 16)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xmodal.losses.birank import bi_rank_loss, coattentive_scores, ranking_probability
from xmodal.losses.decorrelation import decorrelation_loss, matrix_covariance
from xmodal.losses.intra_modal import intra_modal_triplet, label_relations
from xmodal.losses.ranking import bidirectional_triplet
from xmodal.losses.triplet import bidirectional_mean_triplet, triplet_over_sets


def test_triplet_over_sets_averages_every_valid_triplet():
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.8, 0.75]])
    positives = torch.tensor([[True, False, False], [False, True, False]])
    # Row 0: 0.2 - 0.9 + {0.5, 0.1} < 0. Row 1: 0.2 - 0.8 + 0.2 < 0 and 0.2 - 0.8 + 0.75 = 0.15.
    assert float(triplet_over_sets(scores, positives, ~positives, 0.2)) == pytest.approx(0.15 / 4)
    nothing = torch.zeros_like(positives)
    assert float(triplet_over_sets(scores, nothing, ~positives, 0.2)) == 0.0


def test_cross_modal_triplet_both_directions_eq6():
    scores = torch.tensor([[0.5, 0.6], [0.1, 0.7]])
    positives = torch.eye(2, dtype=torch.bool)
    # image anchors: 0.2 - 0.5 + 0.6 = 0.3, 0.2 - 0.7 + 0.1 < 0 -> 0.15; text anchors: 0, 0.2 - 0.7 + 0.6 -> 0.05
    value = bidirectional_mean_triplet(scores, positives, 0.2)
    assert float(value) == pytest.approx(0.2)
    # With one negative per anchor the mean equals the summed form of losses.ranking.
    assert float(value) == pytest.approx(float(bidirectional_triplet(scores, positives, 0.2, hardest=False)))


def test_label_relations():
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]])
    items = torch.tensor([0, 1, 2, 3, 0])  # rows 0 and 4 are one item
    positives, negatives = label_relations(labels, items)
    assert positives.nonzero().tolist() == [[0, 1], [0, 4], [1, 0], [1, 2], [1, 4], [2, 1], [4, 0], [4, 1]]
    assert negatives.nonzero().tolist() == [[0, 2], [0, 3], [1, 3], [2, 0], [2, 3], [2, 4],
                                            [3, 0], [3, 1], [3, 2], [3, 4], [4, 2], [4, 3]]


def test_intra_modal_triplet_eq7_uses_cosines():
    embeddings = torch.tensor([[2.0, 0.0], [1.6, 1.2], [0.0, 3.0]])  # cosines 0.8 (0,1), 0 (0,2), 0.6 (1,2)
    labels = torch.tensor([[1, 0], [1, 0], [0, 1]])
    # Triplets (0, 1, 2): 0.5 - 0.8 + 0 < 0; (1, 0, 2): 0.5 - 0.8 + 0.6 = 0.3; no positive for 2.
    value = intra_modal_triplet(embeddings, labels, torch.arange(3), margin=0.5)
    assert float(value) == pytest.approx(0.15)


def test_matrix_covariance_centres_each_position_and_masks_padding():
    features = torch.tensor([[[1.0, 2.0], [0.0, 1.0], [5.0, 5.0]],
                             [[3.0, 0.0], [2.0, 1.0], [100.0, -100.0]]])  # [B=2, P=3, d=2]
    mask = torch.tensor([[True, True, True], [True, True, False]])  # the last entry is padding
    # Centred: position 0 -> (-1, 1), (1, -1); position 1 -> (-1, 0), (1, 0); position 2 -> (0, 0).
    # Sum of outer products [[4, -2], [-2, 2]] over 5 valid entries.
    covariance = matrix_covariance(features, mask)
    torch.testing.assert_close(covariance, torch.tensor([[0.8, -0.4], [-0.4, 0.4]]))
    assert float(decorrelation_loss(features, mask)) == pytest.approx(0.5 * 2 * 0.4**2)
    # Without a mask: four entries over the first two positions.
    torch.testing.assert_close(matrix_covariance(features[:, :2]), torch.tensor([[1.0, -0.5], [-0.5, 0.5]]))
    assert float(decorrelation_loss(features[:, :2])) == pytest.approx(0.25)


def test_raw_decorrelation_falls_by_shrinking_but_unit_decorrelation_does_not():
    # The cause of JGCAR's uniform co-attention: with cosine scores nothing anchors the features'
    # scale, and raw eq. 9 falls 10^4-fold when the features shrink 10-fold; on unit vectors shrinking gains nothing.
    torch.manual_seed(0)
    features = torch.randn(6, 4, 5) @ torch.randn(5, 5)  # correlated dimensions
    mask = torch.rand(6, 4) > 0.3
    raw, small = decorrelation_loss(features, mask), decorrelation_loss(0.1 * features, mask)
    assert float(small) == pytest.approx(1e-4 * float(raw), rel=1e-4)
    unit = decorrelation_loss(features, mask, normalise=True)
    assert float(decorrelation_loss(0.1 * features, mask, normalise=True)) == pytest.approx(float(unit), rel=1e-5)
    unit_vectors = nn.functional.normalize(features, dim=-1)
    assert float(unit) == pytest.approx(float(decorrelation_loss(unit_vectors, mask)), rel=1e-5)
    assert 0 < float(unit) <= 0.5  # ||C||_F <= trace C <= 1 for unit vectors


def softmax_share(positive: float, *negatives: float, gamma: float = 10.0) -> float:
    return math.exp(gamma * positive) / (math.exp(gamma * positive) + sum(math.exp(gamma * n) for n in negatives))


def test_ranking_probability_keeps_the_m_prime_hardest_negatives():
    candidates = torch.tensor([[0.5, 0.3, 0.1, -0.2], [0.9, 0.0, 0.95, 0.2]])
    negatives = torch.tensor([[False, True, True, True], [True, True, False, False]])
    value = ranking_probability(torch.tensor([0.5, 0.95]), candidates, negatives, gamma=10.0, m_prime=2)
    torch.testing.assert_close(value, torch.tensor([softmax_share(0.5, 0.3, 0.1), softmax_share(0.95, 0.9, 0.0)]))


def test_bi_rank_loss_eq16_both_directions():
    cross = torch.tensor([[0.6, 0.2], [0.4, 0.5]])
    image_intra = torch.tensor([[1.0, 0.3], [0.1, 1.0]])
    text_intra = torch.tensor([[1.0, 0.0], [0.7, 1.0]])
    image_queries = [2 - softmax_share(0.6, 0.2) - softmax_share(0.6, 0.3),
                     2 - softmax_share(0.5, 0.4) - softmax_share(0.5, 0.1)]
    text_queries = [2 - softmax_share(0.6, 0.4) - softmax_share(0.6, 0.0),
                    2 - softmax_share(0.5, 0.2) - softmax_share(0.5, 0.7)]
    value = bi_rank_loss(cross, image_intra, text_intra, torch.eye(2, dtype=torch.bool), gamma=10.0, m_prime=30)
    assert float(value) == pytest.approx(sum(image_queries) / 2 + sum(text_queries) / 2)


def test_bi_rank_loss_never_uses_a_positive_as_negative():
    cross = torch.tensor([[0.5, 0.9, 0.1], [0.9, 0.5, 0.1], [0.0, 0.2, 0.4]])
    intra = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    positives = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])  # pairs 0, 1 share
    value = bi_rank_loss(cross, intra, intra, positives, gamma=10.0, m_prime=30)
    # The positive columns (0 and 1 for queries 0 and 1) are left out of every negative set.
    image_queries = [2 - softmax_share(0.5, 0.1) - softmax_share(0.5, 0.0)] * 2 + [
        2 - softmax_share(0.4, 0.0, 0.2) - softmax_share(0.4, 0.0, 0.0)]
    text_queries = [2 - softmax_share(0.5, 0.0) - softmax_share(0.5, 0.0),
                    2 - softmax_share(0.5, 0.2) - softmax_share(0.5, 0.0),
                    2 - softmax_share(0.4, 0.1, 0.1) - softmax_share(0.4, 0.0, 0.0)]
    assert float(value) == pytest.approx(sum(image_queries) / 3 + sum(text_queries) / 3)


def test_coattentive_scores_condition_intra_scores_on_the_query_pair():
    image = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 3.0], [0.0, -1.0]]])  # v_bar_{i|j} at [i, j]
    text = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 5.0]]])  # s_bar_{j|i} at [i, j]
    cross, image_intra, text_intra = coattentive_scores(image, text)
    torch.testing.assert_close(cross, torch.tensor([[1.0, 0.0], [math.sqrt(0.5), -1.0]]))
    # image_intra[k, i] = cos(v_{k|k}, v_{i|k}): k=0 -> v_{0|0}=(1,0) vs (1,0), (3,3); k=1 -> (0,-1) vs (0,2), (0,-1)
    torch.testing.assert_close(image_intra, torch.tensor([[1.0, math.sqrt(0.5)], [-1.0, 1.0]]))
    # text_intra[k, j] = cos(s_{k|k}, s_{j|k}): k=0 -> (1,0) vs (1,0), (1,0); k=1 -> (0,5) vs (0,1), (0,5)
    torch.testing.assert_close(text_intra, torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
