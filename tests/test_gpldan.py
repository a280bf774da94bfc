"""GPLDAN: diversified attention (eqs. 1-3), its block score, the variants, unsupervised training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from engine_helpers import write_feature_dataset
from xmodal.cli import main
from xmodal.losses.graph_pattern import original_distance_target
from xmodal.models.base import Batch, InputSpec
from xmodal.models.registry import create_model, parse_params
from xmodal.nn.diversified_attention import ChunkAttention, chunk_gram, fuse, pair_cosine, split_chunks

SPEC = InputSpec(image="global", text="global", image_dim=12, text_dim=7)
SMALL = {"hidden": 32, "shared_hidden": 16, "dim": 16, "k": 4, "discriminator_hidden": 8}


def make_batch(n: int = 10, seed: int = 0, labels: bool = True) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    items = torch.arange(n)
    return Batch({"features": torch.rand(n, 12, generator=generator)},
                 {"features": torch.rand(n, 7, generator=generator)}, items,
                 torch.nn.functional.one_hot(items % 3, 3).float() if labels else None)


def make_model(**params):
    torch.manual_seed(0)
    return create_model("gpldan", SPEC, SMALL | params)


# -- diversified attention --------------------------------------------------------------------


def test_chunk_attention_eq1_hand_checked():
    attention = ChunkAttention(chunk_dim=2)  # D = H/2 = 1
    with torch.no_grad():
        attention.w1.weight.copy_(torch.tensor([[1.0, 0.0]]))
        attention.w2.weight.copy_(torch.tensor([[2.0]]))
    chunks = torch.tensor([[[0.0, 5.0], [1.0, 0.0], [-1.0, 3.0]]])  # one item, k = 3
    logits = torch.tensor([0.0, 2 * math.tanh(1.0), -2 * math.tanh(1.0)])
    torch.testing.assert_close(attention(chunks), torch.softmax(logits, 0)[None])


def test_chunk_attention_shapes_and_softmax_over_k():
    weights = ChunkAttention(chunk_dim=6)(torch.randn(5, 4, 6))
    assert weights.shape == (5, 4) and bool((weights > 0).all())
    torch.testing.assert_close(weights.sum(1), torch.ones(5))
    assert split_chunks(torch.arange(8.0)[None], 4).tolist() == [[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]]


def test_pair_cosine_hand_checked():
    # w = a + b = [0.75, 1.25]; Co(x, y) = [0.75, 1.25], Co(y, x) = [2, 0]; cos = 1.5 / (sqrt(2.125) * 2)
    x, a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[0.5, 0.5]])
    y, b = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), torch.tensor([[0.25, 0.75]])
    score = pair_cosine(x, a, chunk_gram(x), y, b, chunk_gram(y))
    assert float(score) == pytest.approx(0.75 / math.sqrt(2.125))


def test_pair_cosine_equals_fused_vectors_pair_by_pair():
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(5, 4, 6, generator=generator), torch.randn(7, 4, 6, generator=generator)
    a, b = torch.rand(5, 4, generator=generator).softmax(1), torch.rand(7, 4, generator=generator).softmax(1)
    block = pair_cosine(x, a, chunk_gram(x), y, b, chunk_gram(y))
    expected = torch.tensor([[float(torch.cosine_similarity(fuse(x[i:i + 1], a[i:i + 1] + b[j:j + 1]),
                                                            fuse(y[j:j + 1], a[i:i + 1] + b[j:j + 1])))
                              for j in range(7)] for i in range(5)])
    torch.testing.assert_close(block, expected, atol=1e-5, rtol=1e-4)


# -- the model ----------------------------------------------------------------------------------


def test_similarity_is_co_attention_cosine_of_both_items():
    model = make_model().eval()
    batch = make_batch()
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        scores = model.similarity(images, texts)
        for i, j in [(0, 0), (2, 5), (9, 1)]:
            weights = images["attention"][i:i + 1] + texts["attention"][j:j + 1]  # eq. 3: a_i^v + a_j^t
            co_image = fuse(split_chunks(images["embedding"][i:i + 1], 4), weights)
            co_text = fuse(split_chunks(texts["embedding"][j:j + 1], 4), weights)
            assert float(scores[i, j]) == pytest.approx(float(torch.cosine_similarity(co_image, co_text)), abs=1e-5)
    assert scores.shape == (10, 10)
    # the score depends on both items: the same image ranks texts with text-dependent weights
    assert not torch.allclose(images["attention"][0], images["attention"][1])


def test_self_attention_distances_are_symmetric_with_zero_diagonal():
    model = make_model().eval()
    with torch.no_grad():
        images = model.encode_images(make_batch().images)
        within = model._cosine(images, images)
    torch.testing.assert_close(within, within.T)
    torch.testing.assert_close(within.diagonal(), torch.ones(10))


def test_without_attention_the_score_is_plain_cosine():
    model = make_model(use_attention=False).eval()
    assert not any("attention" in name for name, _ in model.named_parameters())
    batch = make_batch()
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        expected = torch.nn.functional.normalize(images["embedding"], dim=1) @ \
            torch.nn.functional.normalize(texts["embedding"], dim=1).T
        torch.testing.assert_close(model.similarity(images, texts), expected)
    assert model.explain(images, texts) is None


def test_explain_gives_the_k_chunk_weights_of_both_items():
    model = make_model().eval()
    batch = make_batch(2)
    with torch.no_grad():
        attention = model.explain(model.encode_images(batch.images), model.encode_texts(batch.texts))
    image, text = attention.maps["image"], attention.maps["text"]
    assert image.axes == text.axes == ("chunk",)
    assert image.weights.shape == (4,) and text.weights.shape == (4,)
    assert float(image.weights.sum()) == pytest.approx(1.0)


def test_denoising_mask_only_in_training():
    model = make_model(mask=0.3)
    features = torch.ones(200, 12)
    model.train()
    masked = model._denoise(features)
    assert float((masked == 0).float().mean()) == pytest.approx(0.3, abs=0.03)
    model.eval()
    assert torch.equal(model._denoise(features), features)
    with torch.no_grad():
        images = make_batch().images
        torch.testing.assert_close(model.encode_images(images)["embedding"], model.encode_images(images)["embedding"])


def test_loss_terms_combine_as_eq9_and_eq11():
    model = make_model(alpha=2.0, beta=0.5, classifier_weight=0.1).eval()
    with torch.no_grad():
        terms = model.loss(make_batch())
    assert set(terms) == {"total", "pdl", "udp", "mdp", "adversarial", "discriminator"}
    expected = terms["pdl"] + 2.0 * terms["udp"] + 0.5 * terms["mdp"] + 0.1 * terms["adversarial"]
    assert float(terms["total"]) == pytest.approx(float(expected), rel=1e-6)
    assert 0 <= float(terms["pdl"]) <= 2 and float(terms["udp"]) > 0


@pytest.mark.parametrize("flags, weights", [
    ({"use_udp": False, "use_mdp": False, "use_classifier": False}, (0, 0, 0)),  # baseline
    ({"use_udp": False, "use_classifier": False}, (0, 1, 0)),  # + L_mdp
    ({"use_mdp": False, "use_classifier": False}, (1, 0, 0)),  # + L_udp
    ({"use_classifier": False}, (1, 1, 0)),  # + both
    ({}, (1, 1, 1)),  # + modality classifier
])
def test_table3_variants_switch_terms_off(flags, weights):
    model = make_model(alpha=2.0, beta=0.5, classifier_weight=0.1, **flags).eval()
    with torch.no_grad():
        terms = model.loss(make_batch())
    expected = (terms["pdl"] + weights[0] * 2.0 * terms["udp"] + weights[1] * 0.5 * terms["mdp"]
                + weights[2] * 0.1 * terms["adversarial"])
    assert float(terms["total"]) == pytest.approx(float(expected), rel=1e-6)


def test_gradients_of_total_and_discriminator_terms():
    model = make_model().train()
    terms = model.loss(make_batch())
    discriminator = list(model.discriminator.parameters())
    projector = [p for name, p in model.named_parameters() if not name.startswith("discriminator")]
    # eq. 10 is computed on detached features: it reaches the discriminator only
    grads = torch.autograd.grad(terms["discriminator"], projector + discriminator, retain_graph=True,
                                allow_unused=True)
    assert all(g is None for g in grads[:len(projector)]) and all(g is not None for g in grads[len(projector):])
    # eq. 11 (through the flipped-label term) reaches the projector and the discriminator
    grads = torch.autograd.grad(terms["total"], projector + discriminator, allow_unused=True)
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    # without the classifier, "total" sends nothing into the discriminator
    off_model = make_model(use_classifier=False).train()
    off = off_model.loss(make_batch())
    grads = torch.autograd.grad(off["total"], list(off_model.discriminator.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


class NoLabelBatch(Batch):
    """A batch whose labels cannot be read: any access fails the test."""

    @property
    def labels(self):
        raise AssertionError("GPLDAN read batch.labels")

    @labels.setter
    def labels(self, value) -> None:
        pass


def _train_steps(batch: Batch, steps: int = 5) -> dict[str, torch.Tensor]:
    model = make_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(5)  # the denoising masks
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(batch)["total"].backward()
        optimizer.step()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_unsupervised_labels_never_read_and_training_is_label_free():
    labelled = make_batch(labels=True)
    poisoned = NoLabelBatch(labelled.images, labelled.texts, labelled.items, labelled.labels)
    with_labels, without = _train_steps(labelled), _train_steps(poisoned)
    assert with_labels.keys() == without.keys()
    for name in with_labels:
        assert torch.equal(with_labels[name], without[name]), name
    assert make_model().needs_labels is False


def test_unpaired_pairs_exclude_texts_of_the_same_image():
    # items 0, 0, 1: the first two rows are the same object, so neither their distance nor its
    # target enters L_udp / L_mdp; the target's mean runs over the 4 truly unpaired entries
    batch = make_batch(3)
    batch.items = torch.tensor([0, 0, 1])
    unpaired = ~batch.positives()
    assert unpaired.sum() == 4
    target = original_distance_target(batch.images["features"], batch.texts["features"], unpaired)
    assert float(target[unpaired].mean()) == pytest.approx(1.0)


def test_params_are_validated():
    from xmodal.errors import XmodalError

    with pytest.raises(XmodalError, match="model.params.alpah"):
        parse_params(type(make_model()), {"alpah": 1.0})
    with pytest.raises(ValueError, match="divisible by k"):
        make_model(dim=18)


def test_trains_with_the_cli_and_beats_chance(tmp_path: Path, capsys):
    data = write_feature_dataset(tmp_path / "features")
    config = {
        "model": {"name": "gpldan", "params": SMALL | {"hidden": 64, "dim": 32, "alpha": 1.0, "beta": 0.1}},
        "data": {"dataset": "precomputed", "path": str(data)},
        "optim": {"name": "adam", "lr": 3e-3, "weight_decay": 1e-4,
                  "auxiliary": {"discriminator": {"name": "rmsprop", "lr": 5e-5}}},
        "train": {"epochs": 8, "batch_size": 32, "seed": 1, "early_stopping": {"metric": "map", "patience": 50}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and log[-1]["loss"]["pdl"] < log[0]["loss"]["pdl"]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["i2t"]["map"] > 0.4 and metrics["t2i"]["map"] > 0.4  # 4 balanced classes: chance ~0.25
