"""SCANet: the histogram loss (eq. 10), Chebyshev graph convolution (eq. 1), stacked co-attention
(eqs. 4-9) and its block score against pairs computed one by one, variants, and CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml

from engine_helpers import write_caption_csv, write_feature_dataset
from xmodal.cli import main
from xmodal.encoders.graph import build_graph
from xmodal.errors import XmodalError
from xmodal.features.kinds import torch_sparse
from xmodal.losses.histogram import histogram_loss
from xmodal.models.base import Batch, InputSpec, take
from xmodal.models.registry import create_model
from xmodal.nn.graph_conv import ChebyshevConv, GraphTextModel, chebyshev_terms, rescaled_laplacian
from xmodal.nn.sequence import KimCNN, WordLSTM

# -- eq. 10 ---------------------------------------------------------------------------------------


def test_histogram_loss_hand_checked():
    # mean+ = 0.8, var+ = (0.01 + 0.01) / 2 = 0.01; mean- = 0.4, var- = (0.04 + 0 + 0.04) / 3
    positive, negative = torch.tensor([0.9, 0.7]), torch.tensor([0.2, 0.4, 0.6])
    terms = histogram_loss(positive, negative, margin=0.6, weight=0.35)
    variance = 0.01 + 0.08 / 3
    assert float(terms["variance"]) == pytest.approx(variance)
    assert float(terms["gap"]) == pytest.approx(0.4)
    assert float(terms["total"]) == pytest.approx(variance + 0.35 * (0.6 - 0.4))


def test_histogram_loss_hinge_is_zero_past_the_margin_and_empty_sides_are_safe():
    terms = histogram_loss(torch.tensor([0.9, 0.9]), torch.tensor([0.1, 0.1]), margin=0.6, weight=0.35)
    assert float(terms["total"]) == pytest.approx(0.0)  # gap 0.8 > m, no variance
    only_positive = histogram_loss(torch.tensor([0.2, 0.6]), torch.tensor([]))
    assert float(only_positive["total"]) == pytest.approx(0.04)  # variance only: no mean- to compare with
    scores = torch.tensor([0.5, 0.6, 0.4], requires_grad=True)
    histogram_loss(scores[:1], scores[1:])["total"].backward()
    assert scores.grad[0] < 0 and scores.grad[1:].sum() > 0  # pushes mean+ up and mean- down


# -- eq. 1 ------------------------------------------------------------------------------------------


def small_graph(n: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    graph = build_graph([f"w{i}" for i in range(n)], rng.normal(size=(n, 5)).astype(np.float32), k=2)
    return graph, torch_sparse(graph.laplacian)


def test_normalised_laplacian_and_rescaling_against_dense():
    graph, laplacian = small_graph()
    adjacency = graph.adjacency.toarray().astype(np.float64)
    degree = adjacency.sum(1)
    dense = np.eye(len(adjacency)) - adjacency / np.sqrt(np.outer(degree, degree))
    np.testing.assert_allclose(graph.laplacian.toarray(), dense, atol=1e-6)
    assert graph.lambda_max == pytest.approx(np.linalg.eigvalsh(dense).max(), abs=1e-5)
    rescaled = rescaled_laplacian(laplacian, graph.lambda_max)
    assert rescaled.is_sparse
    np.testing.assert_allclose(rescaled.to_dense().numpy(), 2 * dense / graph.lambda_max - np.eye(len(dense)),
                               atol=1e-6)
    assert np.linalg.eigvalsh(rescaled.to_dense().double().numpy()).max() == pytest.approx(1.0, abs=1e-5)


def test_chebyshev_convolution_equals_dense_reference():
    graph, laplacian = small_graph()
    rescaled = rescaled_laplacian(laplacian, graph.lambda_max)
    dense = rescaled.to_dense().double()
    x = torch.rand(4, 7, dtype=torch.float64)
    conv = ChebyshevConv(order=3)
    with torch.no_grad():
        conv.theta.copy_(torch.tensor([0.5, -1.5, 2.0]))
    # eq. 1 with T_0 = I, T_1 = L~, T_2 = 2 L~ T_1 - T_0, applied to each text's signal (rows)
    t2 = 2 * dense @ dense - torch.eye(7, dtype=torch.float64)
    expected = (0.5 * torch.eye(7, dtype=torch.float64) - 1.5 * dense + 2.0 * t2) @ x.T
    got = conv(x.float(), rescaled)
    torch.testing.assert_close(got.double(), expected.T, atol=1e-5, rtol=1e-5)
    terms = chebyshev_terms(rescaled, x.float(), 4)  # T_3 = 2 L~ T_2 - T_1
    torch.testing.assert_close(terms[3].double(), x @ (2 * dense @ t2 - dense).T, atol=1e-5, rtol=1e-5)


def test_graph_text_model_has_three_parameters_per_layer_and_keeps_the_graph_sparse():
    graph, laplacian = small_graph()
    model = GraphTextModel(laplacian, graph.lambda_max, layers=2, order=3)
    assert [tuple(p.shape) for p in model.parameters()] == [(3,), (3,)]  # "only 3 parameters" per layer
    assert model.laplacian.is_sparse and "laplacian" not in model.state_dict()  # from the data, not trained
    x = torch.zeros(2, 7)
    x[0, 1] = 3.0
    out = model(x)  # untrained: identity filters, ReLU
    torch.testing.assert_close(out, x)
    with torch.no_grad():
        model.convs[0].theta.copy_(torch.tensor([0.0, 1.0, 0.0]))  # one hop: spreads to neighbours
    spread = model(x)[0]
    neighbours = set(graph.adjacency[1].indices.tolist())
    assert {int(v) for v in spread.nonzero()} <= neighbours | {1}
    assert float(model(x)[1].detach().abs().sum()) == 0.0  # a zero signal stays zero


# -- the model -------------------------------------------------------------------------------------

N_VERTICES, IMAGE_DIM, DIM = 12, 9, 8


def make_spec(text: str = "bow") -> InputSpec:
    graph, laplacian = small_graph(N_VERTICES, seed=1)
    parts = {"image.global": {"dim": IMAGE_DIM},
             "text.bow": {"dim": N_VERTICES, "vertices": graph.vertices, "laplacian": laplacian,
                          "lambda_max": graph.lambda_max}}
    if text == "bow":
        return InputSpec(image="global", text="bow", image_dim=IMAGE_DIM, text_dim=N_VERTICES,
                         image_parts=("global",), text_parts=("bow",), parts=parts)
    vectors = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    return InputSpec(image="global", text="words", image_dim=IMAGE_DIM, text_dim=6, vocab_size=20,
                     word_vectors=vectors, image_parts=("global",), text_parts=("words",))


def make_model(**params):
    torch.manual_seed(0)
    return create_model("scanet", make_spec(), {"dim": DIM} | params)


def make_batch(n: int = 10, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 4, (n, N_VERTICES), generator=generator).float()
    items = torch.arange(n)
    return Batch({"features": torch.randn(n, IMAGE_DIM, generator=generator)}, {"bow": counts}, items,
                 torch.nn.functional.one_hot(items % 3, 3).float())


def reference_score(model, image_features: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """One pair, eqs. 2-9 and section 3.4 written out step by step (1-d vectors, no batching)."""
    image_features = image_features / image_features.pow(2).mean().sqrt()  # image_norm="rms"
    f_i = model.image_fc.weight @ image_features + model.image_fc.bias  # eq. 3
    signal = torch.log1p(counts)
    laplacian = model.graph.laplacian.to_dense()
    for conv in model.graph.convs:  # eq. 1, K = 3, dense
        t0, t1 = signal, laplacian @ signal
        t2 = 2 * laplacian @ t1 - t0
        signal = torch.relu(conv.theta[0] * t0 + conv.theta[1] * t1 + conv.theta[2] * t2)
    f_t = model.text_fc.weight @ signal + model.text_fc.bias  # eq. 2
    n = len(f_t)
    for layer in model.coattention:  # eqs. 4-9, each layer reading the previous layer's outputs
        p_t = torch.softmax(torch.relu(layer.text.weight @ f_t + layer.text.bias), 0) * n
        p_i = torch.softmax(torch.relu(layer.image.weight @ f_i + layer.image.bias), 0) * n
        f_t, f_i = p_i * f_t, p_t * f_i
    return torch.sigmoid(model.score.weight[0] @ (f_t * f_i) + model.score.bias[0])


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_block_similarity_equals_the_equations_pair_by_pair(layers):
    model = make_model(layers=layers).eval()
    batch = make_batch(6)
    with torch.no_grad():
        block = model.similarity(model.encode_images(batch.images), model.encode_texts(batch.texts))
        expected = torch.stack([torch.stack([reference_score(model, batch.images["features"][i], batch.texts["bow"][j])
                                             for j in range(6)]) for i in range(6)])
    assert block.shape == (6, 6)
    torch.testing.assert_close(block, expected, atol=1e-5, rtol=1e-4)


def test_block_is_scored_in_chunks_without_changing_the_scores(monkeypatch):
    model = make_model(layers=2).eval()
    batch = make_batch(9)
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        whole = model.similarity(images, texts)
        import xmodal.nn.pairs as pairs

        monkeypatch.setattr(pairs, "PAIR_BUDGET", 9 * model.pair_cost() * 2)  # two image rows per chunk
        monkeypatch.setattr(pairs.all_pairs, "__defaults__", (pairs.PAIR_BUDGET,))
        chunked = model.similarity(images, texts)
        single = model.similarity(take(images, slice(4, 5)), take(texts, slice(7, 8)))
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(single[0, 0], whole[4, 7])


def test_pair_scores_in_training_equal_the_block_without_dropout():
    model = make_model(layers=2, dropout=0.0).eval()
    batch = make_batch(5)
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        block = model.similarity(images, texts)
        image_index, text_index = torch.tensor([0, 3, 4]), torch.tensor([2, 2, 0])
        paired = model.pair_scores(take(images, image_index), take(texts, text_index))
    torch.testing.assert_close(paired, block[image_index, text_index])


def test_coattention_shapes_and_semantics():
    model = make_model(layers=2).eval()
    batch = make_batch(4)
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        assert images["embedding"].shape == (4, DIM) and images["attention"].shape == (4, DIM)
        # layer-1 attention reads one item alone: N * softmax sums to N, positive
        torch.testing.assert_close(images["attention"].sum(1), torch.full((4,), float(DIM)))
        image, text, weights = model.attend(images["embedding"][:, None], images["attention"][:, None],
                                            texts["embedding"][None], texts["attention"][None])
        assert image.shape == text.shape == (4, 4, DIM) and len(weights) == 2
        # eq. 6: layer 1 reweights the text by the image's attention and the image by the text's
        torch.testing.assert_close(weights[0][0][0, 1], images["attention"][0])
        # layer 2 (eqs. 7-8) attends from pair-dependent features: image 0's attention changes with the text
        assert not torch.allclose(weights[1][0][0, 0], weights[1][0][0, 1])
        # eq. 9 on the outputs of layer 1 (f~^(k-1) on both sides)
        torch.testing.assert_close(text[0, 1], weights[1][0][0, 1] * weights[0][0][0, 1] * texts["embedding"][1])
        torch.testing.assert_close(image[0, 1], weights[1][1][0, 1] * weights[0][1][0, 1] * images["embedding"][0])


def test_uniform_attention_is_the_identity_with_the_dimension_scale_and_shrinks_by_n_without():
    for scale, factor in (("dimension", 1.0), ("none", 1.0 / DIM)):
        model = make_model(layers=1, attention_scale=scale).eval()
        with torch.no_grad():
            model.coattention[0].image.weight.zero_()
            model.coattention[0].image.bias.zero_()
            f_t = torch.randn(3, DIM)
            attention = model._attention(model.coattention[0].image, torch.randn(3, DIM))
        torch.testing.assert_close(attention * f_t, factor * f_t)


def test_the_literal_softmax_scale_does_not_train_and_the_dimension_scale_does():
    """Why ``attention_scale="dimension"`` is the default: with p summing to 1 the k = 2 features reach
    the score at 1/N^2 of their size and the loss stays at its starting value."""
    batch = make_batch(12)
    results = {}
    for scale in ("none", "dimension"):
        model = make_model(layers=2, attention_scale=scale, dim=32, dropout=0.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        with torch.no_grad():
            before = float(model.eval().loss(batch)["total"])
        model.train()
        for _ in range(30):
            optimizer.zero_grad()
            model.loss(batch)["total"].backward()
            optimizer.step()
        with torch.no_grad():
            results[scale] = (before, float(model.eval().loss(batch)["total"]))
    assert results["none"][1] > 0.95 * results["none"][0]
    assert results["dimension"][1] < 0.5 * results["dimension"][0]


def test_training_pairs_are_balanced_label_matches():
    model = make_model(pairs=5)
    batch = make_batch(12)
    torch.manual_seed(1)
    image_index, text_index, matching = model.sample_pairs(batch)
    assert int(matching.sum()) == 5 and int((~matching).sum()) == 5
    same_class = (image_index % 3) == (text_index % 3)
    assert bool((same_class == matching).all())
    everything = make_model(pairs=1000).sample_pairs(batch)
    assert int(everything[2].sum()) == 48 and len(everything[2]) == 144  # 12 x 12: 3 classes of 4
    with pytest.raises(XmodalError, match="no labels"):
        model.loss(Batch(batch.images, batch.texts, batch.items, None))


def test_embed_is_the_layer0_projection_for_two_stage_search():
    model = make_model(layers=2).eval()
    batch = make_batch(4)
    with torch.no_grad():
        images = model.encode_images(batch.images)
        features = batch.images["features"]
        torch.testing.assert_close(model.embed(images), model.image_fc(features / features.pow(2).mean(1, True).sqrt()))


def test_image_norms_scale_the_vector_before_its_fc_layer():
    features = torch.tensor([[4.0, -1.0, 0.0, 9.0]])
    rooted = torch.tensor([[2.0, -1.0, 0.0, 3.0]])  # signed square root (the Hellinger map)
    expected = {"none": features, "rms": features / features.pow(2).mean().sqrt(),
                "sqrt-rms": rooted / rooted.pow(2).mean().sqrt()}
    spec = InputSpec(image="global", text="bow", image_dim=4, text_dim=N_VERTICES, image_parts=("global",),
                     text_parts=("bow",), parts=make_spec().parts)
    for norm, scaled in expected.items():
        torch.manual_seed(0)
        model = create_model("scanet", spec, {"dim": DIM, "image_norm": norm})
        torch.testing.assert_close(model.image_features({"features": features}), model.image_fc(scaled))


def test_explain_names_words_of_the_text_and_layers():
    model = make_model(layers=2).eval()
    batch = make_batch(3)
    counts = torch.zeros(1, N_VERTICES)
    counts[0, [2, 5]] = torch.tensor([1.0, 4.0])
    with torch.no_grad():
        attention = model.explain(model.encode_images(batch.images), model.encode_texts({"bow": counts}))
    assert set(attention.maps) == {"image p_I^1", "text p_T^1", "image p_I^2", "text p_T^2", "text words p_T^1",
                                   "text words p_T^2"}
    for name in ("image p_I^1", "text p_T^2"):
        assert attention.maps[name].axes == ("dimension",)
        assert float(attention.maps[name].weights.sum()) == pytest.approx(1.0, abs=1e-5)
    words = attention.maps["text words p_T^1"]
    assert words.labels["word"] == [model.vertices[2], model.vertices[5]]
    assert float(words.weights.sum()) == pytest.approx(1.0, abs=1e-5)
    assert make_model(layers=0).explain(model.encode_images(batch.images), model.encode_texts(batch.texts)) is None


@pytest.mark.parametrize("text_model", ["lstm", "cnn"])
def test_sequence_text_models_read_words(text_model):
    spec = make_spec("words")
    torch.manual_seed(0)
    model = create_model(f"scanet-{text_model}", spec, {"dim": DIM, "max_words": 4}).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 2, 0, 0, 0, 0]])
    lengths = torch.tensor([6, 2])
    with torch.no_grad():
        rep = model.encode_texts({"ids": ids, "lengths": lengths})
        truncated = model.encode_texts({"ids": ids[:, :4], "lengths": lengths.clamp_max(4)})
    assert rep["embedding"].shape == (2, DIM)
    torch.testing.assert_close(rep["embedding"], truncated["embedding"])  # only the first max_words count
    with pytest.raises(XmodalError, match="reads text input words or tokens"):
        create_model(f"scanet-{text_model}", make_spec("bow"), {"dim": DIM})
    with pytest.raises(XmodalError, match="reads text input bow"):
        create_model("scanet", spec, {"dim": DIM})


def test_lstm_and_cnn_encoders_ignore_padding():
    torch.manual_seed(0)
    vectors = torch.randn(1, 7, 6)
    padded = vectors.clone()
    padded[:, 3:] = torch.randn(1, 4, 6)  # other vectors past the length
    lengths = torch.tensor([3])
    for encoder in (WordLSTM(6, 5), KimCNN(6, 4)):
        torch.testing.assert_close(encoder(vectors, lengths), encoder(padded, lengths))
    one_word = KimCNN(6, 4)(vectors[:, :1], torch.tensor([1])).detach()  # shorter than every window
    assert KimCNN(6, 4).dim == 12 and one_word.shape == (1, 12) and math.isfinite(float(one_word.sum()))


def test_variants_pick_their_inputs():
    from xmodal.models.registry import parse_params, resolve

    cls, preset = resolve("scanet-lstm")
    assert cls.input_parts("text", parse_params(cls, preset)) == (("words", "tokens"),)
    assert cls.input_parts("text", parse_params(cls, {})) == (("bow",),)
    assert cls.input_parts("text") == (("bow", "words", "tokens"),)
    assert [parse_params(cls, resolve(f"scanet-k{k}")[1]).layers for k in range(4)] == [0, 1, 2, 3]


# -- CLI ---------------------------------------------------------------------------------------------


def _write_config(path: Path, data: Path, dataset: str) -> Path:
    config = {"model": {"name": "scanet", "params": {"dim": 8}}, "data": {"dataset": dataset, "path": str(data)},
              "train": {"epochs": 1, "batch_size": 4}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_names_missing_labels_and_missing_input(tmp_path: Path, capsys):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / f"im{i}.png")
    rows = [{"image": f"im{i}.png", "caption": f"a red cat {i}", "split": "train"} for i in range(4)]
    table = write_caption_csv(tmp_path / "captions.csv", rows)
    config = _write_config(tmp_path / "csv.yaml", table, "csv")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "a")]) == 2
    assert "model 'scanet' trains with labels, but dataset" in capsys.readouterr().err
    features = write_feature_dataset(tmp_path / "features")
    config = _write_config(tmp_path / "features.yaml", features, "precomputed")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "model 'scanet' needs text word counts on a word graph" in err and "provides only text global" in err


def write_topic_wikipedia(root: Path, n_train: int = 90, n_test: int = 45, seed: int = 0) -> Path:
    """A wikipedia-texts folder of 3 categories: articles drawn from each category's words, 6-d images."""
    rng = np.random.default_rng(seed)
    topics = [["cat", "dog", "horse", "cow", "sheep", "bird"], ["car", "truck", "train", "bus", "plane", "ship"],
              ["apple", "bread", "cheese", "milk", "rice", "soup"]]
    root.mkdir(parents=True)
    (root / "categories.list").write_text("animals\nvehicles\nfood\n")
    (root / "texts").mkdir()
    images, lines = [], {"train": [], "test": []}
    for i in range(n_train + n_test):
        label = i % 3
        words = rng.choice(topics[label], 8).tolist() + rng.choice(sum(topics, []), 3).tolist()
        (root / "texts" / f"t{i}.txt").write_text("the " + " ".join(words), encoding="utf-8")
        images.append(np.eye(6)[label] * 1.5 + rng.normal(size=6))
        lines["train" if i < n_train else "test"].append(f"t{i}\ti{i}\t{label + 1}")
    for split, name in (("train", "trainset"), ("test", "testset")):
        (root / f"{name}_txt_img_cat.list").write_text("\n".join(lines[split]) + "\n")
    images = np.array(images)
    scipy.io.savemat(root / "raw_features.mat", {"I_tr": images[:n_train], "I_te": images[n_train:],
                                                 "T_tr": np.ones((n_train, 2)), "T_te": np.ones((n_test, 2))})
    return root


@pytest.mark.parametrize("layers", [0, 2])
def test_trains_with_the_cli_on_articles_and_beats_chance(tmp_path: Path, capsys, layers):
    root = write_topic_wikipedia(tmp_path / "wiki")
    config = {"model": {"name": "scanet", "params": {"dim": 16, "layers": layers, "pairs": 64}},
              "data": {"dataset": "wikipedia-texts", "path": str(root), "val_fraction": 0.2},
              "optim": {"name": "adam", "lr": 3e-3},
              "train": {"epochs": 12, "batch_size": 24, "seed": 0, "early_stopping": {"metric": "map", "patience": 50}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"]["total"] < log[0]["loss"]["total"]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["i2t"]["map"] > 0.6 and metrics["t2i"]["map"] > 0.6  # 3 balanced classes: chance ~0.33
