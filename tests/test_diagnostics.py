"""xmodal.eval.diagnostics: relative attention entropy, per-row Spearman, top-k changes of a rerank."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.eval.diagnostics import relative_entropy, spearman_rows, topk_changes


def test_relative_entropy_is_one_for_uniform_zero_for_one_hot_and_respects_the_mask():
    weights = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [1.0, 0, 0, 0]])
    mask = torch.tensor([[True] * 4, [True] * 4, [True, True, False, False], [True, False, False, False]])
    values = relative_entropy(weights, mask)
    assert values[:3].tolist() == pytest.approx([1.0, 0.0, 1.0])  # row 3: uniform over its 2 valid words
    assert math.isnan(values[3])  # one valid position: undefined
    mixed = relative_entropy(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    expected = -(0.7 * math.log(0.7) + 3 * 0.1 * math.log(0.1)) / math.log(4)
    assert float(mixed) == pytest.approx(expected)


def test_spearman_rows_per_query():
    a = torch.tensor([[0.1, 0.5, 0.3, 0.9], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 5.0, 3.0, 9.0], [4.0, 3.0, 2.0, 1.0]])
    assert spearman_rows(a, b).tolist() == pytest.approx([1.0, -1.0])
    c = torch.tensor([[0.0, 1.0, 3.0, 2.0]])  # ranks 0 1 3 2 vs 0 1 2 3: 1 - 6*2/(4*15) = 0.8
    assert float(spearman_rows(c, torch.tensor([[0.0, 1.0, 2.0, 3.0]]))) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="shapes differ"):
        spearman_rows(a, b[:, :3])


def test_topk_changes_counts_queries_and_replaced_items():
    before = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    after = torch.tensor([[4.0, 3.0, 2.0, 1.0],  # unchanged
                          [3.0, 4.0, 2.0, 1.0],  # same top-2 set, other order
                          [1.0, 3.0, 2.0, 4.0]])  # item 0 replaced by item 3
    changes = topk_changes(before, after, k=2)
    assert changes["order"] == pytest.approx(2 / 3)
    assert changes["set"] == pytest.approx(1 / 3)
    assert changes["replaced"] == pytest.approx(1 / 3)


def test_score_variance_split_separates_row_column_and_interaction_effects():
    from xmodal.eval.diagnostics import score_variance_split

    rows = torch.tensor([[1.0], [-1.0]])  # an image effect of variance 1
    assert score_variance_split(rows.expand(2, 3).clone()) == pytest.approx({"image": 1, "text": 0, "interaction": 0})
    columns = torch.tensor([[2.0, -2.0]])
    assert score_variance_split(columns.expand(3, 2).clone()) == pytest.approx({"image": 0, "text": 1,
                                                                                "interaction": 0})
    identity = torch.eye(4)  # matching only: after removing the means, what is left is interaction
    assert score_variance_split(identity) == pytest.approx({"image": 0, "text": 0, "interaction": 1})
    # Mixed by hand: a_i = (+1, -1), b_j = (+2, -2), e = +-0.5 in a checkerboard:
    # variances 1, 4 and 0.25 of 5.25 in all.
    mixed = rows + columns + 0.5 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert score_variance_split(mixed) == pytest.approx({"image": 1 / 5.25, "text": 4 / 5.25,
                                                         "interaction": 0.25 / 5.25})


def test_module_grad_norms_are_per_module_and_add_up_in_squares():
    from xmodal.eval.diagnostics import module_grad_norms

    model = torch.nn.Module()
    model.a = torch.nn.Linear(1, 1, bias=False)
    model.b = torch.nn.Linear(1, 1, bias=False)
    model.unused = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.a.weight.fill_(3.0)
        model.b.weight.fill_(4.0)
    x = torch.tensor([[1.0]])
    loss = (model.a(x) * model.b(x)).sum()  # d/da = b = 4, d/db = a = 3
    norms = module_grad_norms(model, loss)
    assert norms == pytest.approx({"a": 4.0, "b": 3.0, "total": 5.0})
    assert model.a.weight.grad is None  # measured without touching .grad (an optimiser step is unaffected)
