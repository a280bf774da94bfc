"""Issue 29's sharpness options for ACLN and JGCAR: a temperature on the attention logits (fixed or
learned), ACLN's logits without eq. 7's tanh, no dropout before ACLN's pooling, and -log P for JGCAR's
eq. 16. Each is off by default (the paper's form), and a default model saves what it saved before."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.features.inputs import make_spec
from xmodal.losses.birank import bi_rank_loss, ranking_probability
from xmodal.models import jgcar as jgcar_module
from xmodal.models.base import Batch
from xmodal.models.registry import create_model
from xmodal.nn.attention_pool import AttentionPool
from xmodal.nn.coattention import CoAttention
from xmodal.nn.temperature import Temperature


def test_a_fixed_temperature_divides_the_logits_and_is_not_saved():
    torch.manual_seed(0)
    local = torch.randn(2, 5, 8)
    plain, hot = AttentionPool(8), AttentionPool(8, temperature=0.25)
    hot.load_state_dict(plain.state_dict())  # the same W_a: no temperature in the saved state
    assert set(plain.state_dict()) == set(hot.state_dict()) == {"vector.weight"}
    logits = torch.tanh(plain.vector(local).squeeze(-1))  # eq. 7
    torch.testing.assert_close(hot.weights(local), torch.softmax(logits / 0.25, dim=-1))
    torch.testing.assert_close(plain.weights(local), torch.softmax(logits, dim=-1))


def test_linear_logits_drop_the_tanh_bound():
    torch.manual_seed(0)
    pool = AttentionPool(8, logits="linear")
    local = torch.randn(1, 49, 8) * 10
    weights = pool.weights(local)
    torch.testing.assert_close(weights, torch.softmax(pool.vector(local).squeeze(-1), dim=-1))
    assert weights.max() > math.exp(2) / (math.exp(2) + 48)  # beyond what tanh-bounded logits allow


def test_a_learned_temperature_is_a_parameter_that_gets_a_gradient():
    temperature = Temperature(2.0, learn=True)
    assert [name for name, _ in temperature.named_parameters()] == ["log_tau"]
    torch.testing.assert_close(temperature.inverse(), torch.tensor(0.5))
    temperature.inverse().backward()
    assert temperature.log_tau.grad is not None and temperature.log_tau.grad != 0
    with pytest.raises(ValueError, match="positive"):
        Temperature(0.0)


def _acln(**params):
    spec = make_spec({"regions": {"dim": 6, "regions": 4, "grid_side": 2}},
                     {"words": {"dim": 5, "vocab_size": 20, "word_vectors": torch.randn(20, 5)}}, n_classes=3)
    torch.manual_seed(0)
    return create_model("acln", spec, {"dim": 8, "hidden": 4} | params)


def test_acln_options_reach_its_attention_and_dropout():
    default, sharp = _acln(), _acln(attention_logits="linear", attention_temperature=0.5, pool_dropout=False)
    assert set(default.state_dict()) == set(sharp.state_dict())  # a default run loads as before
    assert default.attention.logits == "tanh" and sharp.attention.logits == "linear"
    torch.testing.assert_close(sharp.attention.temperature.inverse(), torch.tensor(2.0))
    pooled = [default.image_local[-1][-1], default.text_local[-1], sharp.image_local[-1][-1], sharp.text_local[-1]]
    assert [layer.p for layer in pooled] == [0.5, 0.5, 0.0, 0.0]  # the layers whose outputs eqs. 7-9 pool
    assert sharp.image_local[0][-1].p == 0.5  # the other layers keep the paper's dropout
    learned = _acln(attention="separate", learn_temperature=True)
    assert {"image_attention.temperature.log_tau", "text_attention.temperature.log_tau"} <= {
        name for name, _ in learned.named_parameters()}


def test_a_coattention_temperature_divides_eq_13_logits():
    torch.manual_seed(0)
    regions, words, mask = torch.randn(1, 4, 6), torch.randn(1, 3, 6), torch.ones(1, 3, dtype=torch.bool)
    plain = CoAttention(6, 5, regions=4)
    hot = CoAttention(6, 5, regions=4, temperature=0.2)
    hot.load_state_dict(plain.state_dict())
    base = plain.aligned(plain.images(regions), plain.texts(words, mask))
    sharp = hot.aligned(hot.images(regions), hot.texts(words, mask))
    for before, after in ((base.image_weights, sharp.image_weights), (base.text_weights, sharp.text_weights)):
        logits = before.log()  # the logits up to a constant
        torch.testing.assert_close(after, torch.softmax(logits / 0.2, dim=-1))


def test_neg_log_p_replaces_eq_16_one_minus_p_term_by_term():
    torch.manual_seed(0)
    cross, image_intra, text_intra = torch.rand(4, 4), torch.rand(4, 4), torch.rand(4, 4)
    positives = torch.eye(4, dtype=torch.bool)
    negatives, positive = ~positives, cross.diagonal()
    probabilities = [ranking_probability(positive, cross, negatives, 10.0, 2),
                     ranking_probability(positive, image_intra, negatives, 10.0, 2),
                     ranking_probability(positive, cross.T, negatives.T, 10.0, 2),
                     ranking_probability(positive, text_intra, negatives.T, 10.0, 2)]
    one_minus_p = bi_rank_loss(cross, image_intra, text_intra, positives, 10.0, 2)
    neg_log_p = bi_rank_loss(cross, image_intra, text_intra, positives, 10.0, 2, form="neg_log_p")
    torch.testing.assert_close(one_minus_p, sum((1 - p).mean() for p in probabilities))
    torch.testing.assert_close(neg_log_p, sum((-p.log()).mean() for p in probabilities))


def test_jgcar_options_reach_its_coattention_and_loss(monkeypatch):
    spec = make_spec({"regions": {"dim": 6, "regions": 4, "grid_side": 2}},
                     {"words": {"dim": 5, "vocab_size": 20, "word_vectors": torch.randn(20, 5)}}, n_classes=3)
    small = {"dim": 8, "phrase_dim": 8, "attention_dim": 4}
    default = create_model("jgcar", spec, small)
    sharp = create_model("jgcar", spec, small | {"attention_temperature": 0.5, "learn_temperature": True,
                                                 "coattention_loss": "neg_log_p"})
    assert set(sharp.state_dict()) - set(default.state_dict()) == {"coattention.temperature.log_tau"}
    torch.testing.assert_close(sharp.coattention.temperature.inverse(), torch.tensor(2.0))
    forms = []
    real = jgcar_module.bi_rank_loss
    monkeypatch.setattr(jgcar_module, "bi_rank_loss", lambda *args: forms.append(args[-1]) or real(*args))
    lengths = torch.tensor([3, 2, 4, 1, 3, 2])
    batch = Batch({"regions": torch.randn(6, 4, 6)}, {"ids": torch.randint(1, 20, (6, 4)), "lengths": lengths},
                  torch.arange(6), torch.nn.functional.one_hot(torch.arange(6) % 3, 3).float())
    terms = [model.loss(batch)["J_C"] for model in (default, sharp)]
    assert forms == ["one_minus_p", "neg_log_p"] and all(torch.isfinite(term) for term in terms)
