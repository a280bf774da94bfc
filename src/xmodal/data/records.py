"""The one shape every reader produces: items with an image, texts, labels and a split.

An image or a text is either raw content (an image file path, a caption string) or a row of a
feature array that the dataset carries (datasets published as features, such as the Wikipedia
.mat files, skip the encoders).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from xmodal.data.stacked import StackedRows
from xmodal.file_hashes import file_keys

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class FeatureRow:
    """Row ``row`` of the dataset array named ``array`` (e.g. ``"image"`` or ``"text"``)."""

    array: str
    row: int


ImageSource = Path | FeatureRow
TextSource = str | FeatureRow
Box = tuple[float, float, float, float]  # (left, top, right, bottom) as fractions of the image's width and height


@dataclass(frozen=True)
class Item:
    """One image with its matching texts.

    ``labels`` are ids into :attr:`Dataset.label_names` (empty when unlabelled; several for
    multi-label data). ``extra_labels`` holds further label spaces (e.g. emoji subcategories),
    keyed like :attr:`Dataset.extra_label_names`. ``text_boxes``, when a dataset knows them, gives
    for each text the part of the image it describes (a mosaic's tile), so attention can be scored
    against it (the pointing game, :mod:`xmodal.eval.attention`).
    """

    id: str
    image: ImageSource
    texts: tuple[TextSource, ...]
    labels: tuple[int, ...] = ()
    split: Split = "train"
    extra_labels: dict[str, tuple[int, ...]] = field(default_factory=dict, hash=False, compare=False)
    text_boxes: tuple[Box, ...] = ()  # one per text, or none


@dataclass
class Dataset:
    """A list of items plus what they refer to: label names and any feature arrays."""

    name: str
    items: list[Item]
    label_names: list[str] = field(default_factory=list)
    extra_label_names: dict[str, list[str]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray | StackedRows] = field(default_factory=dict)
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # records skipped under --skip-bad: where, and what was wrong
    notes: list[str] = field(default_factory=list)  # what a reader says about how it built the items (data info)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def split(self, split: Split) -> list[Item]:
        return [item for item in self.items if item.split == split]

    def split_counts(self) -> dict[str, int]:
        counts = Counter(item.split for item in self.items)
        return {s: counts.get(s, 0) for s in SPLITS if counts.get(s, 0) or s != "val"}

    def label_counts(self, split: Split | None = None) -> dict[str, int]:
        """Items per label name (an item with several labels counts once for each)."""
        counts: Counter[int] = Counter()
        for item in self.items:
            if split is None or item.split == split:
                counts.update(item.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}

    @property
    def has_labels(self) -> bool:
        return bool(self.label_names) and any(item.labels for item in self.items)

    @property
    def image_kind(self) -> str:
        """``"file"`` when images are files to encode, ``"features"`` when rows of an array."""
        return "features" if self.items and isinstance(self.items[0].image, FeatureRow) else "file"

    @property
    def text_kind(self) -> str:
        """``"raw"`` when texts are strings to encode, ``"features"`` when rows of an array."""
        first = self.items[0].texts[0] if self.items and self.items[0].texts else ""
        return "features" if isinstance(first, FeatureRow) else "raw"

    def fingerprint(self) -> str:
        """A short hash of everything that decides the dataset's content, as it is now.

        Image files contribute their content key (SHA-256 of the bytes, memoised by path, size and
        file times, :func:`xmodal.file_hashes.file_keys`), read
        on each call so that replacing an image under a live ``Dataset`` changes it, while a copy
        of the same files (new file times, another folder) does not; the feature arrays, loaded
        once and never modified, are hashed once per ``Dataset`` object (rows kept on disk,
        :class:`~xmodal.data.stacked.StackedRows`, by their files' content keys). The feature cache does
        not call this: it keys features item by item (:mod:`xmodal.features.store`).
        """
        image_keys = iter(file_keys([item.image for item in self.items if isinstance(item.image, Path)]))
        digest = hashlib.sha256(self.name.encode())
        for item in self.items:
            digest.update(repr((item.id, item.split, item.labels, item.texts)).encode())
            if item.text_boxes:  # only where a reader gives them, so other datasets' fingerprints stay as they were
                digest.update(repr(item.text_boxes).encode())
            digest.update(repr(next(image_keys) if isinstance(item.image, Path) else item.image).encode())
        identity = tuple((key, id(array), array.shape, array.dtype.str) for key, array in sorted(self.arrays.items()))
        memo = self.__dict__.get("_arrays_fingerprint")  # (identity of the arrays, their hash)
        if memo is None or memo[0] != identity:
            arrays = hashlib.sha256()
            for key in sorted(self.arrays):
                array = self.arrays[key]
                content = array.digest() if isinstance(array, StackedRows) else np.ascontiguousarray(array).tobytes()
                arrays.update(key.encode() + repr(array.shape).encode() + content)
            memo = self.__dict__["_arrays_fingerprint"] = (identity, arrays.digest())
        digest.update(memo[1])
        return digest.hexdigest()[:16]


def all_texts(items: Iterable[Item]) -> list[tuple[int, TextSource]]:
    """Flatten items to ``(item index, text)`` pairs, the order every text array follows."""
    return [(index, text) for index, item in enumerate(items) for text in item.texts]
