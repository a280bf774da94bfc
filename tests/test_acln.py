"""ACLN: its losses by hand, the attention pooling of eqs. 7-9, the shared vs separate attention,
explain, per-group learning rates, and a toy task where only one region carries the label."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml
from PIL import Image

from engine_helpers import write_caption_csv, write_feature_dataset
from test_model_contract import make_case
from xmodal.cli import main
from xmodal.config import load_config
from xmodal.errors import XmodalError
from xmodal.losses.semantic import correlation_loss, label_cross_entropy
from xmodal.models.acln import ACLN
from xmodal.models.base import Batch, InputSpec
from xmodal.models.registry import create_model
from xmodal.nn.attention_pool import AttentionPool, uniform_weights
from xmodal.training.trainer import _set_lr, make_optimizers


def test_label_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [5.0, -5.0]])
    labels = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    # Row 0: -log(3/4); row 1 (two labels): targets 1/2, 1/2 -> log 2; row 2 has no label: left out.
    expected = (math.log(4 / 3) + math.log(2.0)) / 2
    assert label_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert label_cross_entropy(logits[2:], labels[2:]).item() == 0.0


def test_correlation_loss_is_one_minus_cosine():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    text = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    # cos = 1, 0, -1 -> 1 - cos = 0, 1, 2; mean 1.
    assert correlation_loss(image, text).item() == pytest.approx(1.0)
    assert correlation_loss(image[:1], text[:1]).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_pool_is_eqs_7_to_9_and_bounded():
    torch.manual_seed(0)
    pool = AttentionPool(6)
    local = torch.randn(3, 5, 6) * 50  # large inputs saturate the tanh
    mask = torch.tensor([[True] * 5, [True, True, True, False, False], [True] + [False] * 4])
    pooled, weights = pool(local, mask)
    logits = torch.tanh(local @ pool.vector.weight[0])
    expected = torch.softmax(logits.masked_fill(~mask, -math.inf), -1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(pooled, (expected.unsqueeze(-1) * local).sum(1))
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    valid = weights[0]
    assert valid.max() / valid.min() <= math.e ** 2 + 1e-4  # the tanh bound of eq. 7
    torch.testing.assert_close(uniform_weights(local, mask)[1], torch.tensor([1 / 3] * 3 + [0.0, 0.0]))


def _encode(model, batch):
    return model.encode_images(batch.images), model.encode_texts(batch.texts)


def test_shared_variant_uses_one_attention_vector_for_both_modalities():
    model, batch = make_case(ACLN, ("regions",), ("tokens",))
    model.eval()
    vectors = [name for name, _ in model.named_parameters() if "attention" in name]
    assert vectors == ["attention.vector.weight"]  # one W_a in R^{1 x d_a}
    before = _encode(model, batch)
    with torch.no_grad():
        model.attention.vector.weight.add_(torch.randn_like(model.attention.vector.weight))
    after = _encode(model, batch)
    for side in (0, 1):  # changing the one vector changes the attention of both modalities
        assert not torch.allclose(before[side]["attention"], after[side]["attention"])


def test_separate_variant_has_one_vector_per_modality():
    model, batch = make_case(ACLN, ("regions",), ("tokens",), "separate")
    model.eval()
    assert sorted(name for name, _ in model.named_parameters() if "attention" in name) == [
        "image_attention.vector.weight", "text_attention.vector.weight"]
    before = _encode(model, batch)
    with torch.no_grad():
        model.image_attention.vector.weight.add_(1.0)
    after = _encode(model, batch)
    assert not torch.allclose(before[0]["attention"], after[0]["attention"])
    torch.testing.assert_close(before[1]["attention"], after[1]["attention"])


def test_baseline_averages_and_has_no_attention_to_explain():
    model, batch = make_case(ACLN, ("regions",), ("words",), "baseline")
    model.eval()
    images, texts = _encode(model, batch)
    assert not [name for name, _ in model.named_parameters() if "attention" in name]
    regions = batch.images["regions"].shape[1]
    torch.testing.assert_close(images["attention"], torch.full_like(images["attention"], 1 / regions))
    assert model.explain(images, texts) is None


@pytest.mark.parametrize("variant", [None, "separate"])
def test_explain_weights_sum_to_one_over_regions_and_words(variant):
    model, batch = make_case(ACLN, ("regions",), ("words",), variant)
    model.eval()
    images, texts = _encode(model, batch)
    attention = model.explain(images, texts)
    image, text = attention.maps["image"], attention.maps["text"]
    assert image.axes == ("region",) and text.axes == ("word",)
    assert image.weights.shape[0] == batch.images["regions"].shape[1]
    assert text.weights.shape[0] == int(batch.texts["lengths"][0])  # padding is not shown
    assert image.weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert text.weights.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_retrieval_representations():
    model, batch = make_case(ACLN, ("regions",), ("tokens",))
    model.eval()
    images, _ = _encode(model, batch)
    torch.testing.assert_close(images["embedding"].sum(1), torch.ones(len(images["embedding"])))  # probabilities
    assert images["embedding"].shape[1] == model.spec.n_classes
    model.params.retrieve_with = "global"
    images, texts = _encode(model, batch)
    assert images["embedding"].shape[1] == model.params.dim
    scores = model.similarity(images, texts)
    expected = torch.nn.functional.cosine_similarity(images["global"][:, None], texts["global"][None], dim=-1)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_without_labels_the_triplet_trains_the_attended_global_features():
    """Not in the paper: on unlabelled data (mosaic-flickr8k) eq. 12 is off and eq. 11 becomes VSE++'s triplet."""
    from dataclasses import replace

    model, batch = make_case(ACLN, ("regions",), ("tokens",))
    spec = replace(model.spec, n_classes=0)
    unlabelled = {"semantic": False, "correlation": "triplet", "retrieve_with": "global"}
    with pytest.raises(XmodalError, match="set model.params.semantic=false"):
        create_model("acln", spec)
    with pytest.raises(XmodalError, match="retrieve_with=global and correlation=triplet"):
        create_model("acln", spec, {"semantic": False})
    torch.manual_seed(0)
    plain = create_model("acln", spec, unlabelled)
    assert plain.image_head is None and not ACLN.labels_needed(plain.params) and ACLN.labels_needed(model.params)
    batch = Batch(batch.images, batch.texts, batch.items, None)
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        terms = plain.loss(batch)
        assert set(terms) == {"total", "correlation"}
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(float(terms["total"].detach()))
    assert losses[-1] < 0.5 * losses[0]
    plain.eval()
    images, texts = _encode(plain, batch)
    torch.testing.assert_close(images["embedding"], images["global"])


def test_the_triplet_sums_the_batch_negatives_when_hardest_negative_is_off():
    """hardest_negative=False (mosaic configs: the max-violation triplet collapsed there) reaches the loss."""
    from dataclasses import replace

    from xmodal.losses.ranking import bidirectional_triplet

    model, batch = make_case(ACLN, ("regions",), ("tokens",))
    spec = replace(model.spec, n_classes=0)
    batch = Batch(batch.images, batch.texts, batch.items, None)
    common = {"semantic": False, "correlation": "triplet", "retrieve_with": "global"}
    losses = []
    for hardest in (True, False):
        torch.manual_seed(0)
        acln = create_model("acln", spec, {**common, "hardest_negative": hardest}).eval()
        images, texts = _encode(acln, batch)
        scores = torch.nn.functional.normalize(images["global"], dim=-1) @ torch.nn.functional.normalize(
            texts["global"], dim=-1).T
        expected = bidirectional_triplet(scores, batch.positives(), acln.params.margin, hardest)
        losses.append(acln.loss(batch)["correlation"])
        torch.testing.assert_close(losses[-1], expected)
    assert losses[1] > losses[0]  # the sum over negatives is larger than the hardest alone


def test_classifier_can_be_shared_between_modalities():
    model, _ = make_case(ACLN, ("regions",), ("tokens",))
    assert model.image_head is not model.text_head
    shared = create_model("acln", model.spec, {"shared_classifier": True})
    assert shared.image_head is shared.text_head


def test_group_lr_gives_parts_their_own_learning_rate():
    model, _ = make_case(ACLN, ("regions",), ("tokens",))
    config = load_config(None, ["optim.name=rmsprop", "optim.lr=4e-4", "optim.lr_decay_epochs=1",
                                "optim.group_lr={image_head: 4.0e-5}"],
                         base={"model": {"name": "acln"}, "data": {"dataset": "emoji"}})
    optimizer = make_optimizers(model, config)["total"]
    head, rest = optimizer.param_groups
    assert head["lr"] == pytest.approx(4e-5) and rest["lr"] == pytest.approx(4e-4)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.image_head.parameters()}
    assert len(head["params"]) + len(rest["params"]) == len(list(model.parameters()))
    _set_lr(optimizer, config, epoch=2)  # decay 0.1 per epoch scales each group's own rate
    assert head["lr"] == pytest.approx(4e-7) and rest["lr"] == pytest.approx(4e-6)
    config.optim.group_lr = {"image_classifier": 1e-5}
    with pytest.raises(XmodalError, match="no trainable parameter under 'image_classifier'.*image_head"):
        make_optimizers(model, config)


def test_trained_attention_finds_the_one_region_that_carries_the_label():
    """A toy task: 4 regions, only one (at a random place) holds the class pattern; 6 words, likewise."""
    generator = torch.Generator().manual_seed(0)
    n, classes, dim = 300, 3, 16
    patterns = torch.randn(classes, dim, generator=generator) * 3
    labels = torch.arange(n) % classes

    def local(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        values = torch.randn(n, count, dim, generator=generator)
        where = torch.randint(0, count, (n,), generator=generator)
        values[torch.arange(n), where] = patterns[labels] + 0.3 * torch.randn(n, dim, generator=generator)
        return values, where

    regions, region_at = local(4)
    tokens, token_at = local(6)
    spec = InputSpec(image="regions", text="tokens", image_dim=dim, text_dim=dim, image_regions=4, grid_side=2,
                     n_classes=classes)
    torch.manual_seed(0)
    model = create_model("acln", spec, {"dim": 32, "hidden": 16, "dropout": 0.0})
    batch = Batch({"regions": regions}, {"tokens": tokens, "lengths": torch.full((n,), 6)}, torch.arange(n),
                  torch.nn.functional.one_hot(labels, classes).float())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        model.loss(batch)["total"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        images, texts = _encode(model, batch)
    on_region = images["attention"][torch.arange(n), region_at].mean().item()
    on_word = texts["attention"][torch.arange(n), token_at].mean().item()
    # Uniform would be 0.25 and 0.17; the tanh bound allows at most e^2 / (e^2 + 3) = 0.71 and
    # e^2 / (e^2 + 5) = 0.60.
    assert on_region > 0.5 and on_word > 0.4


def _write_acln_config(path, data, dataset):
    config = {"model": {"name": "acln", "params": {"dim": 8, "hidden": 8}},
              "data": {"dataset": dataset, "path": str(data)}, "train": {"epochs": 1}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_says_in_one_line_when_the_data_lacks_local_features_or_labels(tmp_path, capsys):
    features = write_feature_dataset(tmp_path / "features")
    config = _write_acln_config(tmp_path / "a.yaml", features, "precomputed")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "model 'acln' needs image" in err and "regions" in err
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    csv = write_caption_csv(tmp_path / "c.csv", [{"image": "a.png", "caption": "a cat", "split": "train"}])
    config = _write_acln_config(tmp_path / "b.yaml", csv, "csv")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "model 'acln' trains with labels, but dataset" in err and "has none" in err


def test_a_variant_name_and_a_contradicting_parameter_are_an_error():
    model, _ = make_case(ACLN, ("regions",), ("tokens",))
    assert create_model("acln-baseline", model.spec, {"attention": "mean", "dim": 8}).params.dim == 8
    with pytest.raises(XmodalError, match="'acln-baseline' is the preset attention='mean', but model.params sets "
                                          "attention='shared'"):
        create_model("acln-baseline", model.spec, {"attention": "shared"})


def test_trains_and_evaluates_on_a_labelled_csv_collection(tmp_path, capsys):
    """Real encoders end to end: EfficientNet-Lite0 regions, GloVe words, CSV labels (one row multi-label)."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    rows = []
    for c, (colour, rgb) in enumerate(colours.items()):
        for i in range(6):
            name = f"{colour}{i}.png"
            image = Image.new("RGB", (64, 64), "white")
            image.paste(rgb, (8 + 4 * i, 8, 40 + 4 * i, 48))
            image.save(tmp_path / name)
            split = "train" if i < 4 else ("val" if i == 4 else "test")
            label = f"{colour};bright" if (c, i) == (0, 0) else colour
            rows.append({"image": name, "caption": f"a {colour} square on white", "split": split, "label": label})
    csv = write_caption_csv(tmp_path / "shapes.csv", rows)
    run = tmp_path / "run"
    args = ["--config", "acln/emoji", "--out", str(run), "--path", str(csv), "--set", "data.dataset=csv",
            "--set", "train.epochs=2", "--set", "train.batch_size=4", "--set", "model.params.dim=32"]
    assert main(["train", *args]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("acln on csv (test split, best checkpoint, exhaustive)")
    i2t_map = float(re.search(r"^i2t\s+([0-9.]+)", out, re.M).group(1))
    assert 0.0 < i2t_map <= 1.0  # 3 test images, 3 texts, one of each colour
