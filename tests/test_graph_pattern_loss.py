"""GPLDAN's graph pattern loss (section 2.2) and modality classifier losses (2.3): hand-checked values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xmodal.losses.adversarial import discriminator_loss, flipped_modality_loss
from xmodal.losses.graph_pattern import (
    cosine_distance_matrix,
    graph_pattern_loss,
    mutual_distance_preserving_loss,
    original_distance_target,
    pairwise_distance_loss,
    unpaired_distance_loss,
    unpaired_distance_preserving_loss,
)

OFF_DIAGONAL = ~torch.eye(2, dtype=torch.bool)
VT = torch.tensor([[0.2, 0.9], [0.7, 0.4]])
VV = torch.tensor([[0.0, 0.5], [0.5, 0.0]])
TT = torch.tensor([[0.0, 0.6], [0.6, 0.0]])
TARGET = torch.tensor([[0.0, 1.5], [1.5, 0.0]])


def test_cosine_distance_matrix_eq5():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    expected = torch.tensor([[1 - 1 / math.sqrt(2), 0.0], [1 - 1 / math.sqrt(2), 1.0]])
    torch.testing.assert_close(cosine_distance_matrix(x, y), expected)


def test_original_distance_target_is_geometric_mean_over_its_mean():
    # d_cos(u): (0,1)=1, (0,2)=(1,2)=1-1/sqrt2; d_cos(c): (0,1)=0, (0,2)=(1,2)=1.
    # d_ori = sqrt(product) = 0, s, s with s = sqrt(1-1/sqrt2); mean over the 6 ordered pairs = 2s/3.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    unpaired = ~torch.eye(3, dtype=torch.bool)
    target = original_distance_target(images, texts, unpaired)
    expected = torch.tensor([[0.0, 0.0, 1.5], [0.0, 0.0, 1.5], [1.5, 1.5, 0.0]])
    torch.testing.assert_close(target, expected, atol=1e-6, rtol=1e-5)
    assert float(target[unpaired].mean()) == pytest.approx(1.0)


def test_pairwise_distance_loss_eq4_is_mean_of_matching_pairs():
    assert float(pairwise_distance_loss(VT)) == pytest.approx(0.3)


@pytest.mark.parametrize("form, expected", [("abs", 0.7), ("squared", 0.5), ("signed", -0.7)])
def test_unpaired_distance_loss_eq6_forms(form, expected):
    # off-diagonal distances 0.9 and 0.7 against target 1.5: differences -0.6 and -0.8
    assert float(unpaired_distance_loss(VT, TARGET, OFF_DIAGONAL, form)) == pytest.approx(expected)


def test_unpaired_distance_loss_rejects_unknown_form():
    with pytest.raises(ValueError, match="unknown unpaired distance form"):
        unpaired_distance_loss(VT, TARGET, OFF_DIAGONAL, "cubic")


def test_unpaired_distance_preserving_loss_eq7_sums_three_graphs():
    # vt: 0.7; vv: |0.5-1.5| = 1.0; tt: |0.6-1.5| = 0.9
    assert float(unpaired_distance_preserving_loss(VT, VV, TT, TARGET, OFF_DIAGONAL)) == pytest.approx(2.6)


def test_mutual_distance_preserving_loss_eq8():
    # (0,1): |0.9-0.5| + |0.9-0.6| + |0.5-0.6| = 0.8;  (1,0): 0.2 + 0.1 + 0.1 = 0.4
    assert float(mutual_distance_preserving_loss(VT, VV, TT, OFF_DIAGONAL)) == pytest.approx(0.6)


def test_graph_pattern_loss_eq9_weights_the_terms():
    terms = graph_pattern_loss(VT, VV, TT, TARGET, OFF_DIAGONAL, alpha=2.0, beta=0.5)
    assert {k: round(float(v), 6) for k, v in terms.items()} == {"gpl": 5.8, "pdl": 0.3, "udp": 2.6, "mdp": 0.6}
    baseline = graph_pattern_loss(VT, VV, TT, TARGET, OFF_DIAGONAL, alpha=0.0, beta=0.0)
    assert float(baseline["gpl"]) == pytest.approx(0.3)


def test_printed_signed_eq6_ignores_its_targets():
    """With d normalised by its mean, the printed signed eq. 6 is mean(l_p) - 1: the targets cancel."""
    generator = torch.Generator().manual_seed(0)
    images, texts = torch.rand(6, 5, generator=generator), torch.rand(6, 4, generator=generator)
    unpaired = ~torch.eye(6, dtype=torch.bool)
    target = original_distance_target(images, texts, unpaired)
    distances = torch.rand(6, 6, generator=generator)
    signed = unpaired_distance_loss(distances, target, unpaired, "signed")
    assert float(signed) == pytest.approx(float(distances[unpaired].mean()) - 1.0, abs=1e-6)
    assert float(unpaired_distance_loss(distances, target, unpaired, "abs")) > 0.1


def _fit_free_embeddings(form: str, target: torch.Tensor, unpaired: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Minimise eq. 6 over free vectors: return the final loss and the reached distances."""
    generator = torch.Generator().manual_seed(1)
    points = nn.Parameter(torch.randn(len(target), 8, generator=generator))
    optimizer = torch.optim.Adam([points], lr=0.05)
    for _ in range(400):
        optimizer.zero_grad()
        loss = unpaired_distance_loss(cosine_distance_matrix(points, points), target, unpaired, form)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        distances = cosine_distance_matrix(points, points)
        return float(unpaired_distance_loss(distances, target, unpaired, form)), distances


def test_signed_eq6_collapses_while_abs_matches_the_targets():
    generator = torch.Generator().manual_seed(2)
    images, texts = torch.randn(6, 5, generator=generator), torch.randn(6, 4, generator=generator)
    unpaired = ~torch.eye(6, dtype=torch.bool)
    target = original_distance_target(images, texts, unpaired)
    signed_loss, signed_distances = _fit_free_embeddings("signed", target, unpaired)
    abs_loss, abs_distances = _fit_free_embeddings("abs", target, unpaired)
    # signed: every unpaired distance driven to its floor 0 (all points collapse), loss at -mean(d) = -1,
    # the targets missed by about their mean
    assert signed_loss == pytest.approx(-1.0, abs=0.01)
    assert float(signed_distances[unpaired].max()) < 0.01
    assert float((signed_distances - target)[unpaired].abs().mean()) > 0.9
    # abs: bounded below by 0 and minimised where the distances match the targets
    assert 0.0 <= abs_loss < 0.05
    torch.testing.assert_close(abs_distances[unpaired], target[unpaired], atol=0.1, rtol=0)


class _Constant(nn.Module):
    """A 'discriminator' giving a fixed logit, so the cross-entropies have closed forms."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(logit))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit.expand(len(x), 1) + 0 * x[:, :1]


def test_modality_losses_eq10_eq11():
    discriminator = _Constant(math.log(3.0))  # P(image) = 0.75 for every feature
    images = torch.randn(4, 3, requires_grad=True)
    texts = torch.randn(5, 3, requires_grad=True)
    # eq. 10: images labelled 1, texts 0: -log 0.75 - log 0.25
    d_loss = discriminator_loss(discriminator, images, texts)
    assert float(d_loss.detach()) == pytest.approx(-math.log(0.75) - math.log(0.25))
    # eq. 11's term: flipped labels: -log 0.25 - log 0.75 (the same, by symmetry of this D)
    g_loss = flipped_modality_loss(discriminator, images, texts)
    assert float(g_loss.detach()) == pytest.approx(-math.log(0.25) - math.log(0.75))
    # eq. 10 trains D only: no gradient reaches the features; the flipped term reaches both
    d_loss.backward()
    assert images.grad is None and discriminator.logit.grad is not None
    d_grad = float(discriminator.logit.grad)
    discriminator.logit.grad = None
    g_loss.backward()
    assert images.grad is not None
    # d/dlogit of eq. 10 = (p - 1) + p = 0.5; of the flipped term = p + (p - 1) = 0.5 as well
    assert d_grad == pytest.approx(0.5) and float(discriminator.logit.grad) == pytest.approx(0.5)
