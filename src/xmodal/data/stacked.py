"""The kept rows of several on-disk arrays, read as one array without copying them into memory.

Precomputed datasets come as one ``.npy`` file per split, often far larger than memory (COCO's
SCAN features: 113,287 x 36 x 2048 float16, 17 GB; 33 GB as float32). :class:`StackedRows` keeps
each split's memory map and the rows that passed the reader's checks, and answers what the input
kinds ask of a dataset array (``shape``, ``ndim``, ``dtype``, ``array[rows]``) by reading only
those rows, in the file's own dtype: the float32 copy is made per batch (:func:`xmodal.features.kinds.float_rows`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from xmodal.file_hashes import file_keys


class StackedRows:
    """``parts`` = (array, kept row indices) per split: their kept rows one after another."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]]):
        if not parts:
            raise ValueError("StackedRows needs at least one array")
        self._arrays = [array for array, _ in parts]
        self._rows = [np.asarray(rows, dtype=np.int64) for _, rows in parts]
        self._starts = np.cumsum([0] + [len(rows) for rows in self._rows])
        first = self._arrays[0]
        self.shape: tuple[int, ...] = (int(self._starts[-1]), *first.shape[1:])
        self.dtype = first.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        """Rows by an int, a slice or an integer array (as numpy indexes the first axis)."""
        if isinstance(index, tuple):
            raise TypeError("StackedRows is indexed by rows only: array[rows], then index the result")
        positions = np.arange(len(self))[index]
        if np.ndim(positions) == 0:
            return self[np.asarray([positions])][0]
        part_of = np.searchsorted(self._starts, positions, side="right") - 1
        out = np.empty((len(positions), *self.shape[1:]), dtype=self.dtype)
        for part in np.unique(part_of):
            wanted = np.flatnonzero(part_of == part)
            file_rows = self._rows[part][positions[wanted] - self._starts[part]]
            order = np.argsort(file_rows, kind="stable")  # read a memory map front to back
            out[wanted[order]] = self._arrays[part][file_rows[order]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every row in memory: for small arrays and tests; the readers never need it."""
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def digest(self) -> bytes:
        """SHA-256 of what the rows hold: each file's content key (memoised by path, size and file
        times, so a 17 GB file is read once, not on every load) and the rows kept from it."""
        digest = hashlib.sha256(repr((self.shape, self.dtype.str)).encode())
        for array, rows in zip(self._arrays, self._rows):
            filename = getattr(array, "filename", None)
            key = file_keys([Path(filename)])[0] if filename else None
            digest.update((key or hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()).encode())
            digest.update(rows.tobytes())
        return digest.digest()

