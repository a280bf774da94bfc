"""Word tokenizer and vocabulary for the word-embedding text models (GloVe, bag of words).

Tokens are lower-cased runs of Unicode letters, digits and combining marks, in any script
(Latin with accents, Greek, Cyrillic, Arabic, Devanagari, ...); punctuation and apostrophes split
words ("dog's" -> "dog", "s"), close to how GloVe 6B's lower-cased corpus was tokenised. Text is
NFC-normalised first, so "e" + a combining acute accent and the single "é" give the same token.
Scripts written without spaces between words (CJK ideographs, Hiragana, Katakana) and Hangul
become one token per character, as BERT's basic tokenizer does for CJK ideographs: without a
word segmenter, a character is the unit that two texts can share.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from xmodal.paths import atomic_write_bytes

PAD, UNK = "<pad>", "<unk>"
# Characters that are each one token: BERT's CJK ideograph ranges, plus the kana and Hangul blocks.
SINGLE_CHARACTER_RANGES: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x3130, 0x318F),  # Hangul Compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana Phonetic Extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7AF),  # Hangul Syllables
    (0xD7B0, 0xD7FF),  # Hangul Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # Halfwidth Katakana
    (0x20000, 0x2A6DF),  # CJK Extension B
    (0x2A700, 0x2EBEF),  # CJK Extensions C-F
    (0x2F800, 0x2FA1F),  # CJK Compatibility Ideographs Supplement
    (0x30000, 0x323AF),  # CJK Extensions G-H
)


def _class(ranges: Iterable[tuple[int, int]]) -> str:
    """A regular-expression character class body for the code point ranges."""
    return "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges)


def _mark_ranges() -> list[tuple[int, int]]:
    """Ranges of combining marks (Mn, Mc, Me) that ``\\w`` does not match (vowel signs, accents)."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) in ("Mn", "Mc", "Me") and not char.isalnum() and char != "_":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return ranges


@lru_cache(maxsize=1)
def _token_pattern() -> re.Pattern[str]:
    """One single-character token, or a run of word characters and combining marks (built once)."""
    single = _class(SINGLE_CHARACTER_RANGES)
    marks = _class(_mark_ranges())
    return re.compile(f"[{single}]|(?:[^\\W{single}]|[{marks}])+")


def tokenize(text: str) -> list[str]:
    return _token_pattern().findall(unicodedata.normalize("NFC", text.lower()))


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
