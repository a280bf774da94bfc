"""The word graph of SCANet (section 3.1): common words as vertices, nearest neighbours as edges.

Every text shares one graph; a text is its word counts on the vertices (the 1-d feature a
Chebyshev graph convolution reads). Edges join each vertex to its ``k`` nearest neighbours by
the cosine of the words' vectors, made symmetric with unit weights (the paper names no
weighting); the normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` is stored beside it.

The vectors are GloVe's (the paper's are word2vec: semantic neighbours learned elsewhere), or for
texts GloVe cannot read (Chinese, Japanese, ...) each word's row of positive pointwise mutual
information with the other vertices, counted over the training texts (two words co-occur when
one text holds both): ``PPMI(i, j) = max(0, log p(i, j) / (p(i) p(j)))``. Two words are then near
when they keep the same company ("cat" and "dog" both with "pet"): distributional neighbours of
the training texts alone, a stand-in for vectors learned on a large corpus.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from xmodal.encoders.glove import glove_index, glove_matrix
from xmodal.encoders.tokenize import tokenize
from xmodal.errors import XmodalError
from xmodal.paths import atomic_write_bytes

DEFAULT_VERTICES = 2000  # the paper's sizes vary by dataset (598 to 10,055 words, its Table 1)
DEFAULT_NEIGHBOURS = 8  # the paper's k (section 4.1)


@dataclass
class WordGraph:
    vertices: list[str]
    adjacency: scipy.sparse.csr_matrix  # [V, V] 0/1, symmetric, no self loops
    laplacian: scipy.sparse.csr_matrix  # [V, V] I - D^-1/2 A D^-1/2
    lambda_max: float  # largest eigenvalue of the Laplacian (Chebyshev filters rescale by it)
    seconds: float

    @property
    def edges(self) -> int:
        """Undirected edges."""
        return int(self.adjacency.nnz // 2)


def common_glove_words(texts: Sequence[str], n_vertices: int, dataset: str, drop_stop_words: bool = False) -> list[str]:
    """The ``n_vertices`` most frequent words of ``texts`` that GloVe knows (ties alphabetical).

    ``drop_stop_words`` leaves out scikit-learn's English stop-word list: in long texts the most
    frequent words are "the", "of", "and", which carry no topic and would take the first vertices.
    """
    index = glove_index()
    words = common_words(texts, n_vertices, drop_stop_words, keep=lambda token: token in index)
    if not words:
        raise XmodalError(f"dataset {dataset!r}: no training word has a GloVe vector, so the word graph has no "
                          "vertices; use an input kind that needs no English vocabulary (tfidf)")
    return words


def common_words(texts: Sequence[str], n_vertices: int, drop_stop_words: bool = False,
                 keep: Callable[[str], bool] | None = None) -> list[str]:
    """The ``n_vertices`` most frequent words of ``texts`` (ties alphabetical), any script; with ``keep``,
    only the words it accepts."""
    excluded = _english_stop_words() if drop_stop_words else frozenset()
    counts = Counter(token for text in texts for token in tokenize(text)
                     if token not in excluded and (keep is None or keep(token)))
    return sorted(counts, key=lambda word: (-counts[word], word))[:n_vertices]


def ppmi_vectors(texts: Sequence[str], vertices: Sequence[str]) -> np.ndarray:
    """``[V, V]`` PPMI of each pair of vertices over ``texts`` (co-occurring: in one text; diagonal 0)."""
    index = {word: i for i, word in enumerate(vertices)}
    rows, cols = [], []
    for row, text in enumerate(texts):
        present = sorted({index[token] for token in tokenize(text) if token in index})
        rows.extend([row] * len(present))
        cols.extend(present)
    holds = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(vertices)))
    joint = (holds.T @ holds).toarray()  # texts holding both words (diagonal: texts holding the word)
    np.fill_diagonal(joint, 0)
    total = joint.sum()
    if total == 0:
        return np.zeros((len(vertices), len(vertices)), np.float32)
    marginal = joint.sum(axis=1) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(joint / total / np.outer(marginal, marginal))
    return np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0).astype(np.float32)


def _english_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def knn_adjacency(vectors: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> scipy.sparse.csr_matrix:
    """Each row joined to its ``k`` nearest other rows by cosine similarity, symmetrised (0/1 weights)."""
    from sklearn.neighbors import NearestNeighbors

    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return scipy.sparse.csr_matrix((n, n), dtype=np.float32)
    search = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(vectors)
    _, found = search.kneighbors(vectors)
    rows, cols = [], []
    for row, neighbours in enumerate(found):
        others = [int(col) for col in neighbours if col != row][:k]  # a duplicate vector may rank before itself
        rows.extend([row] * len(others))
        cols.extend(others)
    directed = scipy.sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
    return directed.maximum(directed.T).tocsr()


def normalized_laplacian(adjacency: scipy.sparse.spmatrix) -> scipy.sparse.csr_matrix:
    """``I - D^-1/2 A D^-1/2``; an isolated vertex keeps 1 on its diagonal."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = np.zeros_like(degree, dtype=np.float64)
    scale[degree > 0] = degree[degree > 0] ** -0.5
    d = scipy.sparse.diags(scale)
    identity = scipy.sparse.identity(adjacency.shape[0], dtype=np.float64, format="csr")
    return (identity - d @ adjacency.astype(np.float64) @ d).astype(np.float32).tocsr()


def largest_eigenvalue(laplacian: scipy.sparse.spmatrix) -> float:
    """lambda_max of a normalised Laplacian (at most 2); exact for small graphs, Lanczos otherwise."""
    n = laplacian.shape[0]
    if n <= 64:
        return float(np.linalg.eigvalsh(laplacian.toarray().astype(np.float64)).max())
    return float(scipy.sparse.linalg.eigsh(laplacian.astype(np.float64), k=1, which="LA",
                                           return_eigenvectors=False, tol=1e-4)[0])


def build_graph(vertices: list[str], vectors: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> WordGraph:
    started = time.perf_counter()
    adjacency = knn_adjacency(vectors, k)
    laplacian = normalized_laplacian(adjacency)
    return WordGraph(vertices, adjacency, laplacian, largest_eigenvalue(laplacian), time.perf_counter() - started)


def build_word_graph(train_texts: Sequence[str], dataset: str, n_vertices: int = DEFAULT_VERTICES,
                     k: int = DEFAULT_NEIGHBOURS, drop_stop_words: bool = False, vectors: str = "glove") -> WordGraph:
    """SCANet's graph over the training texts' most frequent GloVe words (``vectors="glove"``), or over
    their most frequent words of any script joined by PPMI (``"ppmi"``)."""
    started = time.perf_counter()
    if vectors == "ppmi":
        vertices = common_words(train_texts, n_vertices, drop_stop_words)
        if not vertices:
            raise XmodalError(f"dataset {dataset!r}: the training texts have no words to build a word graph from")
        rows = ppmi_vectors(train_texts, vertices)
    else:
        vertices = common_glove_words(train_texts, n_vertices, dataset, drop_stop_words)
        index, matrix = glove_index(), glove_matrix()
        rows = np.stack([np.asarray(matrix[index[word]], dtype=np.float32) for word in vertices])
    graph = build_graph(vertices, rows, k)
    graph.seconds = time.perf_counter() - started
    return graph


def vertex_counts(texts: Sequence[str], vertices: Sequence[str]) -> scipy.sparse.csr_matrix:
    """``[n, V]`` float32 counts of each text's words on the vertices (other words are dropped)."""
    index = {word: i for i, word in enumerate(vertices)}
    rows, cols = [], []
    for row, text in enumerate(texts):
        ids = [index[token] for token in tokenize(text) if token in index]
        rows.extend([row] * len(ids))
        cols.extend(ids)
    counts = scipy.sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                     shape=(len(texts), len(vertices)))
    counts.sum_duplicates()
    return counts


def save_vertices(path: Path, vertices: list[str]) -> None:
    atomic_write_bytes(path, json.dumps(vertices, ensure_ascii=False).encode("utf-8"))


def load_vertices(path: Path) -> list[str]:
    return json.loads(path.read_text(encoding="utf-8"))
