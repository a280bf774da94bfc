"""The text input kinds ``bow`` (counts on SCANet's word graph) and ``tfidf`` (word + character n-grams)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from test_feature_store import home, toy_dataset  # noqa: F401  (the fixture: a private home, fake encoders)
from xmodal.encoders.graph import build_graph, build_word_graph, knn_adjacency, normalized_laplacian, vertex_counts
from xmodal.encoders.tfidf import TfidfEncoder, _vectorizer
from xmodal.errors import XmodalError
from xmodal.features.extract import ExtractOptions, extract
from xmodal.features.inputs import ModelData
from xmodal.features.kinds import ExampleDims, get_kind


def unit(degrees: list[float]) -> np.ndarray:
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# -- the graph -------------------------------------------------------------------------------------


def test_knn_graph_joins_known_neighbours_symmetrically():
    # Two clusters of three directions: with k = 2 each vertex's neighbours are its cluster, two triangles.
    adjacency = knn_adjacency(unit([0, 10, 20, 90, 100, 110]), k=2).toarray()
    triangle = np.ones((3, 3)) - np.eye(3)
    expected = np.block([[triangle, np.zeros((3, 3))], [np.zeros((3, 3)), triangle]])
    np.testing.assert_array_equal(adjacency, expected)
    # k = 1 on 0, 10, 30 degrees: 0->10, 10->0, 30->10; symmetrised, 30 and 10 are joined both ways.
    np.testing.assert_array_equal(knn_adjacency(unit([0, 10, 30]), k=1).toarray(),
                                  [[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def test_laplacian_is_normalised_and_its_spectrum_within_0_and_2():
    graph = build_graph([f"w{i}" for i in range(6)], unit([0, 10, 20, 90, 100, 110]), k=2)
    assert graph.edges == 6
    eigenvalues = np.linalg.eigvalsh(graph.laplacian.toarray().astype(np.float64))
    np.testing.assert_allclose(eigenvalues, [0, 0, 1.5, 1.5, 1.5, 1.5], atol=1e-6)  # two triangles (K3)
    assert graph.lambda_max == pytest.approx(1.5, abs=1e-5)
    rng = np.random.default_rng(0)
    laplacian = normalized_laplacian(knn_adjacency(rng.normal(size=(80, 5)), k=8))
    dense = laplacian.toarray().astype(np.float64)
    np.testing.assert_allclose(dense, dense.T)
    eigenvalues = np.linalg.eigvalsh(dense)
    assert eigenvalues.min() > -1e-5 and eigenvalues.max() < 2 + 1e-5
    # An isolated vertex keeps 1 on the diagonal.
    assert normalized_laplacian(scipy.sparse.csr_matrix((2, 2))).toarray().tolist() == [[1, 0], [0, 1]]


def test_word_graph_takes_the_most_frequent_glove_words():
    texts = ["cat dog cat zzqxvw", "car truck cat", "dog bus"]
    graph = build_word_graph(texts, "toy", n_vertices=5, k=1)
    assert graph.vertices == ["cat", "dog", "bus", "car", "truck"]  # by frequency, ties alphabetical; no zzqxvw
    neighbours = {graph.vertices[i]: {graph.vertices[j] for j in graph.adjacency[i].indices} for i in range(5)}
    assert "dog" in neighbours["cat"] and "truck" in neighbours["car"]
    assert build_word_graph(texts, "toy", n_vertices=2).vertices == ["cat", "dog"]
    counts = vertex_counts(["cat cat dog", "zzqxvw"], graph.vertices).toarray()
    assert counts.tolist() == [[2, 1, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_word_graph_can_leave_stop_words_off_its_vertices():
    texts = ["the cat and the dog", "the car of the dog", "the bus"]
    assert build_word_graph(texts, "toy", n_vertices=3, k=1).vertices == ["the", "dog", "and"]
    assert build_word_graph(texts, "toy", n_vertices=3, k=1, drop_stop_words=True).vertices == ["dog", "bus", "car"]


def test_a_graph_without_glove_words_is_an_error_naming_the_dataset():
    with pytest.raises(XmodalError, match="dataset 'toy'.*no vertices.*tfidf"):
        build_word_graph(["我们 今天 很 高兴"], "toy")


def test_graph_extraction_caches_and_records_the_graph(home, tmp_path):  # noqa: F811
    dataset = toy_dataset(tmp_path / "imgs")
    first = extract(dataset, "graph", ExtractOptions())
    second = extract(dataset, "graph", ExtractOptions())
    assert not first.cached and second.cached and first.features.path == second.features.path
    manifest = second.features.manifest
    # Training texts "colour number i" / "a swatch i" for i < 3: seven GloVe words, each joined to every other.
    assert manifest["vertices"] == 7 and manifest["edges"] == 21 and manifest["build_seconds"] >= 0
    counts = second.features.sparse("bow")
    assert counts.shape == (8, 7) and counts.toarray().sum() == 8 * 3 - 2  # the test item's "3" is no vertex
    smaller = extract(dataset, "graph", ExtractOptions(graph_vertices=3))
    assert not smaller.cached and smaller.features.manifest["vertices"] == 3
    # "a" is an English stop word: without it the graph has six vertices, cached apart from the first.
    no_stop_words = extract(dataset, "graph", ExtractOptions(graph_stop_words=True))
    assert not no_stop_words.cached and no_stop_words.features.manifest["vertices"] == 6
    assert extract(dataset, "graph", ExtractOptions()).features.path == first.features.path


def test_bow_and_tfidf_inputs_read_and_encode_new_texts_the_same_way(home, tmp_path):  # noqa: F811
    dataset = toy_dataset(tmp_path / "imgs")
    data = ModelData(dataset, "global", ["bow"])
    part = data.spec.parts["text.bow"]
    assert data.spec.text_dim == part["dim"] == len(part["vertices"]) == 7
    assert part["laplacian"].is_sparse and part["laplacian"].shape == (7, 7) and 0 < part["lambda_max"] <= 2
    train = data.split("train")
    row = train.texts(np.array([1]))["bow"]
    text = dataset.items[int(train.item_indices[train.text_items[1]])].texts[1]
    torch.testing.assert_close(data.encode_new_texts([text])["bow"], row)
    with pytest.raises(XmodalError, match=r"no word of the run's 7-word graph \(built on toy\)"):
        data.encode_new_texts(["zzqxvw"])

    data = ModelData(dataset, "global", "tfidf")
    rows = data.split("train").texts()["features"]
    assert rows.dtype == torch.float32 and rows.shape[1] == data.spec.text_dim
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(len(rows)))
    texts = [text for item in dataset.items for text in item.texts]
    torch.testing.assert_close(data.encode_new_texts(texts[:2])["features"], rows[:2])


def test_text_kinds_need_raw_texts(tmp_path):
    from xmodal.data.records import Dataset, FeatureRow, Item

    items = [Item(str(i), FeatureRow("image", i), (FeatureRow("text", i),), (0,), "train") for i in range(2)]
    dataset = Dataset("vectors", items, ["a"], arrays={"image": np.zeros((2, 3)), "text": np.zeros((2, 3))})
    for name in ("bow", "tfidf"):
        assert not get_kind("text", name).feeds(dataset)
    with pytest.raises(XmodalError, match="dataset 'vectors' ships text features"):
        extract(dataset, "tfidf", ExtractOptions())


# -- tf-idf ----------------------------------------------------------------------------------------


def test_tfidf_equals_scikit_learn_part_by_part():
    texts = ["a red apple", "a green apple tree", "the red car", "汽车 很 快", "红色 的 苹果"]
    encoder = TfidfEncoder.fit(texts, max_features=40)
    rows = encoder.transform(texts).toarray()
    start = 0
    for part, words in encoder.vocabularies.items():
        expected = _vectorizer(part, max_features=20).fit_transform(texts).toarray()
        np.testing.assert_allclose(rows[:, start : start + len(words)] * np.sqrt(2), expected, atol=1e-6)
        start += len(words)
    assert encoder.dim == rows.shape[1] <= 40
    # Unit length when both parts find a term; the Chinese words are not among the 20 kept word n-grams.
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), [1, 1, 1, 2**-0.5, 2**-0.5], atol=1e-6)
    assert (rows[3:] > 0).any(axis=1).all()  # Chinese texts get character n-grams


def test_tfidf_state_round_trips_without_pickle(tmp_path):
    texts = ["one small step", "a giant leap", "small steps"]
    encoder = TfidfEncoder.fit(texts)
    encoder.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))
    loaded = TfidfEncoder.load(tmp_path)
    np.testing.assert_array_equal(loaded.transform(["a small leap"]).toarray(),
                                  encoder.transform(["a small leap"]).toarray())


# -- the bow kind (no model reads it yet: its own example and spec) --------------------------------


def test_bow_example_matches_its_spec():
    kind, dims = get_kind("text", "bow"), ExampleDims()
    generator = torch.Generator().manual_seed(0)
    spec = kind.example_spec(dims, generator)
    example = kind.example(5, generator, dims)
    assert set(example) == set(kind.keys) and example["bow"].shape == (5, spec["dim"])
    assert (example["bow"] >= 0).all() and (example["bow"].sum(1) > 0).all()
    laplacian = spec["laplacian"].to_dense().double()
    assert laplacian.shape == (spec["dim"], spec["dim"]) and len(spec["vertices"]) == spec["dim"]
    torch.testing.assert_close(laplacian, laplacian.T)
    eigenvalues = torch.linalg.eigvalsh(laplacian)
    assert eigenvalues.min() > -1e-5 and eigenvalues.max() < 2 + 1e-5
    assert spec["lambda_max"] == pytest.approx(float(eigenvalues.max()), abs=1e-4)


# -- the word graph from co-occurrence, for texts GloVe cannot read (issue 32) ---------------------


def test_ppmi_joins_the_words_that_keep_the_same_company_on_a_hand_made_corpus():
    from xmodal.encoders.graph import build_word_graph, ppmi_vectors

    # cat food, dog food, sun sky, moon sky, cat dog (the tokenizer reads a CJK character as a word)
    texts = ["猫 食", "狗 食", "日 天", "月 天", "猫 狗"]
    vertices = ["猫", "狗", "食", "日", "月", "天"]
    ppmi = ppmi_vectors(texts, vertices)
    # pairs in one text, both directions: 10 counts; cat-food 1 of them, p(cat) = 2/10 (food, dog), p(food) = 2/10
    assert ppmi[0, 2] == pytest.approx(np.log(0.1 / (0.2 * 0.2)), rel=1e-5) and ppmi[2, 0] == ppmi[0, 2]
    assert ppmi[0, 3] == 0 and ppmi[0, 0] == 0  # cat and sun never together; no self pairs
    graph = build_word_graph(texts, "toy", n_vertices=6, k=1, vectors="ppmi")
    assert sorted(graph.vertices) == sorted(vertices)
    edges = {tuple(sorted((graph.vertices[i], graph.vertices[j]))) for i, j in zip(*graph.adjacency.nonzero())}
    assert ("日", "月") in edges and ("狗", "猫") in edges  # sun, moon both with sky; cat, dog both with food


def test_a_chinese_vocabulary_has_no_glove_graph_but_a_ppmi_one():
    from xmodal.encoders.graph import build_word_graph

    texts = ["狗脸 宠物", "小狗", "猫脸 宠物", "小猫"]  # CJK: one word per character
    with pytest.raises(XmodalError, match="no training word has a GloVe vector"):
        build_word_graph(texts, "zh", n_vertices=10, k=2)
    graph = build_word_graph(texts, "zh", n_vertices=10, k=2, vectors="ppmi")
    assert sorted(graph.vertices) == sorted("宠小物狗猫脸") and graph.edges > 0
