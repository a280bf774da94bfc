"""Word tokenizer and vocabulary for the word-embedding text models (GloVe, bag of words).

Tokens are lower-cased runs of Unicode word characters (any script); punctuation and apostrophes
split words ("dog's" -> "dog", "s"), close to how GloVe 6B's lower-cased corpus was tokenised.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from xmodal.paths import atomic_write_bytes

TOKEN = re.compile(r"\w+")
PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


@dataclass
class Vocabulary:
    """Word <-> id map; id 0 is padding, id 1 stands for every unknown word."""

    words: list[str] = field(default_factory=lambda: [PAD, UNK])

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(token for text in texts for token in tokenize(text))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, text: str) -> list[int]:
        unknown = self.index[UNK]
        return [self.index.get(token, unknown) for token in tokenize(text)]

    def encode_padded(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``[n, T]`` int32 ids (0-padded) and ``[n]`` lengths; empty texts get one ``<unk>``."""
        sequences = [self.ids(text) or [self.index[UNK]] for text in texts]
        width = max(len(s) for s in sequences) if sequences else 1
        width = min(width, max_length) if max_length else width
        ids = np.zeros((len(sequences), width), dtype=np.int32)
        lengths = np.zeros(len(sequences), dtype=np.int32)
        for row, sequence in enumerate(sequences):
            sequence = sequence[:width]
            ids[row, : len(sequence)] = sequence
            lengths[row] = len(sequence)
        return ids, lengths

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, json.dumps(self.words, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        return cls(json.loads(path.read_text(encoding="utf-8")))
