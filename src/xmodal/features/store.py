"""The feature cache: one folder per dataset x extractor x settings, loaded as memmaps.

A folder is complete when its ``manifest.json`` exists: the manifest is written last, inside a
staging folder that is renamed into place only after every array is on disk (see
:func:`xmodal.paths.atomic_directory`). A killed extraction therefore leaves only a ``.tmp-*``
folder, which is never read and is cleaned by the next run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from xmodal.data.records import Dataset
from xmodal.errors import XmodalError
from xmodal.paths import atomic_directory, xmodal_home

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class FeatureSet:
    """A finished cache folder."""

    path: Path
    manifest: dict[str, Any]

    def array(self, name: str) -> np.ndarray:
        """A stored array, memory-mapped read-only."""
        return np.load(self.path / f"{name}.npy", mmap_mode="r")

    def sparse(self, name: str) -> scipy.sparse.csr_matrix:
        return scipy.sparse.load_npz(self.path / f"{name}.npz").tocsr()

    @property
    def bad_items(self) -> list[str]:
        """Ids of items whose input could not be read (rows left at zero, only with --skip-bad)."""
        return list(self.manifest.get("bad_items", []))

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


def cache_key(dataset: Dataset, extractor: str, settings: dict[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, "dataset": dataset.fingerprint(), "extractor": extractor,
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def feature_dir(dataset: Dataset, extractor: str, settings: dict[str, Any]) -> Path:
    return xmodal_home() / "features" / dataset.name / f"{extractor}-{cache_key(dataset, extractor, settings)}"


def open_cached(path: Path) -> FeatureSet | None:
    """The finished feature set at ``path``, or ``None`` when there is none."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise XmodalError(f"{manifest_path}: unreadable manifest ({error}); delete {path} and extract again") from None
    return FeatureSet(path, manifest)


def remove_stale_staging(final: Path) -> None:
    """Delete ``.tmp-*`` leftovers of killed extractions of the same key."""
    for leftover in final.parent.glob(f"{final.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


class FeatureWriter:
    """Fills a staging folder with arrays; :meth:`finish` writes the manifest last."""

    def __init__(self, staging: Path):
        self.staging = staging
        self.arrays: dict[str, dict[str, Any]] = {}
        self._open: list[np.memmap] = []

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype | str) -> np.memmap:
        """A writable on-disk array, so large grids never need to fit in memory at once."""
        self.arrays[name] = {"shape": list(shape), "dtype": str(np.dtype(dtype))}
        array = np.lib.format.open_memmap(self.staging / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        self._open.append(array)
        return array

    def save(self, name: str, array: np.ndarray) -> None:
        self.arrays[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        np.save(self.staging / f"{name}.npy", array)

    def save_sparse(self, name: str, matrix: scipy.sparse.spmatrix) -> None:
        self.arrays[name] = {"shape": list(matrix.shape), "dtype": str(matrix.dtype), "sparse": True}
        scipy.sparse.save_npz(self.staging / f"{name}.npz", matrix.tocsr())

    def finish(self, manifest: dict[str, Any]) -> None:
        for array in self._open:
            array.flush()
        self._open.clear()
        manifest = {**manifest, "format": FORMAT_VERSION, "arrays": self.arrays}
        (self.staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


def write_feature_set(final: Path, fill) -> FeatureSet:
    """Run ``fill(writer) -> manifest`` into a staging folder and publish it atomically."""
    remove_stale_staging(final)
    with atomic_directory(final) as staging:
        writer = FeatureWriter(staging)
        writer.finish(fill(writer))
    return FeatureSet(final, json.loads((final / MANIFEST).read_text(encoding="utf-8")))

