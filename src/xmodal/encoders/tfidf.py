"""TF-IDF over word and character n-grams: a text feature that needs no English vocabulary.

Two parts, each fitted on the training texts and capped at half of ``max_features``: word
unigrams and bigrams (Unicode ``\\w+`` tokens, so any script splitting on spaces) and character
2- to 4-grams within word boundaries (``char_wb``, which also covers scripts without spaces, such
as Chinese). Each part is scikit-learn's TF-IDF (smoothed idf, sublinear tf: long articles do
not drown short captions) with unit-length rows; the joined row is scaled by 1/sqrt(2), so it
is unit length when both parts find a term in it. 4,096 columns by default: enough for the
frequent n-grams of a caption collection, small enough for dense batches and for CCA's covariance.

The fitted state is the two vocabularies (n-grams in column order, JSON) and idf weights
(``.npy``), never a pickle; :meth:`TfidfEncoder.transform` recomputes tf-idf from them with
scipy, the same for extraction and for new queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse

from xmodal.paths import atomic_write_bytes

DEFAULT_MAX_FEATURES = 4096
WORD_PATTERN = r"(?u)\b\w+\b"  # keep one-character words (digits, CJK characters)
PARTS = {"word": {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": WORD_PATTERN},
         "char": {"analyzer": "char_wb", "ngram_range": (2, 4)}}


def _vectorizer(part: str, **kwargs):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**PARTS[part], sublinear_tf=True, dtype=np.float32, **kwargs)


@dataclass
class TfidfEncoder:
    """The fitted vocabularies and idf weights of the two parts."""

    vocabularies: dict[str, list[str]]
    idf: dict[str, np.ndarray]

    @classmethod
    def fit(cls, texts: Sequence[str], max_features: int = DEFAULT_MAX_FEATURES) -> "TfidfEncoder":
        vocabularies, idf = {}, {}
        for part in PARTS:
            vectorizer = _vectorizer(part, max_features=max(1, max_features // len(PARTS)))
            try:
                vectorizer.fit(texts)
            except ValueError:  # no term at all (e.g. no word token): the part stays empty
                vocabularies[part], idf[part] = [], np.zeros(0, np.float32)
                continue
            order = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
            vocabularies[part], idf[part] = order, vectorizer.idf_.astype(np.float32)
        return cls(vocabularies, idf)

    @property
    def dim(self) -> int:
        return sum(len(words) for words in self.vocabularies.values())

    def transform(self, texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        """``[n, dim]`` float32 tf-idf rows, as :class:`TfidfVectorizer` with the fitted state gives them."""
        from sklearn.preprocessing import normalize

        blocks = []
        for part, words in self.vocabularies.items():
            if not words:
                continue
            counts = scipy.sparse.csr_matrix(_counter(part, words).transform(texts), dtype=np.float32)
            counts.data = np.log(counts.data) + 1  # sublinear tf
            weighted = normalize(counts @ scipy.sparse.diags(self.idf[part]), norm="l2")
            blocks.append(weighted)
        if not blocks:
            return scipy.sparse.csr_matrix((len(texts), 0), dtype=np.float32)
        joined = scipy.sparse.hstack(blocks, format="csr", dtype=np.float32) / np.sqrt(len(blocks))
        return joined.astype(np.float32)

    def save(self, folder: Path) -> None:
        for part in PARTS:
            atomic_write_bytes(folder / f"tfidf-{part}.json",
                               json.dumps(self.vocabularies[part], ensure_ascii=False).encode("utf-8"))
            np.save(folder / f"tfidf-{part}-idf.npy", self.idf[part])

    @classmethod
    def load(cls, folder: Path) -> "TfidfEncoder":
        return cls({part: json.loads((folder / f"tfidf-{part}.json").read_text(encoding="utf-8")) for part in PARTS},
                   {part: np.load(folder / f"tfidf-{part}-idf.npy") for part in PARTS})


def known_ngrams(encoder: "TfidfEncoder", text: str, part: str = "char") -> tuple[int, int]:
    """(n-grams of ``text`` that are columns of one part's fitted vocabulary, all its n-grams of that part).

    The word part counts single words only: a word bigram is rarely a column even in the training
    language, while a word that is a column is read whole (Chinese 狗, "dog", kept as a word of the
    keywords though its character n-grams fell outside the capped character part)."""
    from sklearn.feature_extraction.text import CountVectorizer

    settings = PARTS[part] | ({"ngram_range": (1, 1)} if part == "word" else {})
    grams = CountVectorizer(**settings).build_analyzer()(text)
    columns = set(encoder.vocabularies[part])
    return sum(gram in columns for gram in grams), len(grams)


def best_reading(encoder: "TfidfEncoder", text: str) -> tuple[str, int, int]:
    """(part, known, total) of the part that reads the largest share of ``text``: a query is readable
    when its words are columns or most of its character n-grams are."""
    readings = [(part, *known_ngrams(encoder, text, part)) for part in PARTS if encoder.vocabularies[part]]
    return max(readings, key=lambda reading: reading[1] / reading[2] if reading[2] else 0.0, default=("char", 0, 0))


def _counter(part: str, words: list[str]):
    """Term counts on a fixed vocabulary (no fitting, so nothing to persist but the words)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(**PARTS[part], vocabulary=words, dtype=np.float32)


