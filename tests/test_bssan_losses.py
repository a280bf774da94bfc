"""BSSAN's objective on small inputs whose values are worked out by hand (eqs. 7, 17, 18)."""

from __future__ import annotations

import pytest
import torch

from xmodal.losses.sampled_hinge import bssan_objective, sample_negatives, sampled_hinge, squared_l2


def test_sampled_hinge_sums_one_negative_per_pair_eq7():
    positive = torch.tensor([1.0, 0.2, 0.9])
    negative = torch.tensor([0.2, 0.5, 0.6])
    # margin 0.5: max(0, 0.5 - 1 + 0.2) = 0, 0.5 - 0.2 + 0.5 = 0.8, 0.5 - 0.9 + 0.6 = 0.2
    assert float(sampled_hinge(positive, negative, 0.5)) == pytest.approx(1.0)
    assert float(sampled_hinge(positive, negative, 0.0)) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        sampled_hinge(positive, negative[:2], 0.5)


def test_squared_l2_sums_squared_entries():
    assert float(squared_l2([torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0], [0.5]])])) == pytest.approx(14.25)


def test_objective_eq18_divided_by_the_batch():
    w2r = (torch.tensor([1.0, 0.2]), torch.tensor([0.2, 0.5]))  # hinges at M = 0.5: 0, 0.8
    o2w = (torch.tensor([0.0, 1.0]), torch.tensor([0.3, 0.0]))  # 0.8, 0
    terms = bssan_objective(w2r, o2w, torch.tensor(10.0), margin=0.5, lam=0.6, delta=0.01)
    assert float(terms["L1"]) == pytest.approx(0.8 / 2)
    assert float(terms["L2"]) == pytest.approx(0.6 * 0.8 / 2)
    assert float(terms["reg"]) == pytest.approx(0.01 * 10 / 2)
    assert float(terms["bssan"]) == pytest.approx((0.8 + 0.48 + 0.1) / 2)
    # Variants: BSSAN_w2r has no L2, BSSAN_no_reg no reg.
    assert set(bssan_objective(w2r, None, None, 0.5, 0.6, 0.01)) == {"L1", "bssan"}
    assert set(bssan_objective(None, o2w, torch.tensor(1.0), 0.5, 1.0, 0.01)) == {"L2", "reg", "bssan"}


def test_negatives_are_texts_of_other_items():
    items = torch.tensor([0, 0, 1, 2, 2, 3])
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        negatives = sample_negatives(items, generator)
        assert (items[negatives] != items).all()
    drawn = torch.stack([sample_negatives(items, generator) for _ in range(400)])
    assert set(drawn[:, 0].tolist()) == {2, 3, 4, 5}  # uniform over the other items' texts


def test_a_batch_of_one_item_still_draws_an_index():
    negatives = sample_negatives(torch.tensor([4, 4, 4]))
    assert negatives.shape == (3,) and negatives.max() < 3


def test_sampled_hinge_sums_several_negatives_per_pair():
    positive = torch.tensor([1.0, 0.0])
    negative = torch.tensor([[0.5, 1.5], [-2.0, 0.25]])  # hinges at M = 1: [0.5, 1.5], [0, 1.25]
    assert sampled_hinge(positive, negative, 1.0).item() == pytest.approx(0.5 + 1.5 + 0.0 + 1.25)
    with pytest.raises(ValueError, match="differ"):
        sampled_hinge(positive, torch.zeros(3, 2), 1.0)
