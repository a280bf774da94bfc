"""Bag-of-words counts over a vocabulary, the classic text feature of CCA-style baselines."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse

from xmodal.encoders.tokenize import Vocabulary


def bow_counts(texts: Sequence[str], vocabulary: Vocabulary) -> scipy.sparse.csr_matrix:
    """``[n, V]`` word counts; padding and unknown-word columns are left at zero."""
    rows, cols = [], []
    for row, text in enumerate(texts):
        ids = [i for i in vocabulary.ids(text) if i > 1]
        rows.extend([row] * len(ids))
        cols.extend(ids)
    data = np.ones(len(rows), dtype=np.float32)
    counts = scipy.sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), len(vocabulary)))
    counts.sum_duplicates()
    return counts
