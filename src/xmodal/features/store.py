"""The feature cache: a content-addressed store per extractor x settings, and one view per dataset.

Layout under ``$XMODAL_HOME/features``:

- ``_store/<extractor>-<settings key>/<shard>/``: features keyed by what produced them, item by
  item (an image by the hash of its file's bytes, a text by the hash of the string), so editing
  one caption re-encodes one text and the same images read through another list file (CSV,
  JSONL, a folder) are found again. A shard is a folder of ``.npy`` arrays whose rows follow the
  ``keys`` of its ``manifest.json``; each is written to a ``.tmp-*`` folder and renamed into
  place, so a committed shard is whole and a killed extraction loses at most the chunk it was
  encoding. The index (key -> shard, row) is the union of the committed shards' key lists (the
  newest shard wins a key written twice); nothing else has to be kept consistent with them.
- ``<dataset>/<extractor>-<view key>/``: the dataset's rows gathered once from the store into
  contiguous arrays in dataset row order, read as memmaps (:class:`FeatureSet`). The view key
  hashes the ordered item keys, so it changes exactly when an item's content or the row order
  does. The folder appears (atomically, manifest last) only when every row is in it.
- ``file-hashes.sqlite``: image content hashes memoised by (path, size, mtime_ns, and ctime and
  inode), so an unchanged file is stat-ed, not re-read (:mod:`xmodal.file_hashes`).

Why a copied view rather than reading rows from the shards: models index features by dataset
row (``grid[rows]``) and are fastest on one contiguous memmap read in sorted row order; a view
keeps that, needs no change in any reader, and is built shard by shard, so memory stays bounded
by one shard's rows (the 14x14x1280 float16 grid of 2,000 images is about 1 GB on disk and never
in memory at once). The price is disk: a view duplicates its rows of the store. A view is
rebuilt only when its item list changes, and a new view of a source deletes the one it
replaces.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse

from xmodal.errors import XmodalError
from xmodal.paths import atomic_directory, atomic_write_bytes, remove_stale_temporaries, xmodal_home

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
STORE = "_store"
COPY_ROWS = 256  # rows copied from a shard into a view at a time (bounds memory for large grids)


def features_root() -> Path:
    return xmodal_home() / "features"


@dataclass
class FeatureSet:
    """A finished cache folder (a dataset's view, or the words features)."""

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


def _digest(blob: Any, length: int) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:length]


def settings_key(extractor: str, settings: dict[str, Any]) -> str:
    """Names the store of one extractor x settings (and the store format)."""
    return _digest({"format": FORMAT_VERSION, "extractor": extractor, "settings": settings}, 12)


def text_key(text: str) -> str:
    """The content key of a text: the hash of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def view_key(store: str, keys: Sequence[str | None]) -> str:
    """The key of a dataset's view: the store it reads and its item keys in row order."""
    return _digest({"format": FORMAT_VERSION, "store": store, "keys": list(keys)}, 16)


def collection_key(extractor: str, settings: dict[str, Any], content: Any) -> str:
    """The key of collection-dependent features (``words``): everything they are computed from."""
    return _digest({"format": FORMAT_VERSION, "extractor": extractor, "settings": settings, "content": content}, 16)


# -- writing folders -----------------------------------------------------------------------------


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


def write_feature_set(final: Path, fill: Callable[[FeatureWriter], dict[str, Any]]) -> FeatureSet:
    """Run ``fill(writer) -> manifest`` into a staging folder and publish it atomically."""
    with atomic_directory(final, durable=True) as staging:
        writer = FeatureWriter(staging)
        writer.finish(fill(writer))
    return FeatureSet(final, json.loads((final / MANIFEST).read_text(encoding="utf-8")))


def clean_features_folder() -> int:
    """Remove ``.tmp-*`` leftovers of killed writers anywhere in the cache (of any key)."""
    return remove_stale_temporaries(features_root(), depth=3)


def prune_superseded(features: FeatureSet) -> None:
    """Delete the other views of the same source, extractor and settings: ``features`` replaces them.

    Their rows stay in the store; only the derived copy goes. A process still reading an old
    view keeps its memory maps (the files live on until unmapped).
    """
    manifest = features.manifest
    prefix = f"{manifest['extractor']}-"
    for sibling in features.path.parent.iterdir():
        if sibling == features.path or not sibling.name.startswith(prefix) or ".tmp-" in sibling.name:
            continue
        try:
            other = json.loads((sibling / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        same = all(other.get(k) == manifest.get(k) for k in ("extractor", "settings", "source", "dataset"))
        if same and manifest.get("source"):
            shutil.rmtree(sibling, ignore_errors=True)
            logger.info("removed %s, replaced by %s", sibling, features.path.name)


# -- the content-addressed store -----------------------------------------------------------------


@dataclass
class StoreIndex:
    """Which shard and row holds each key, and each committed shard's manifest."""

    rows: dict[str, tuple[str, int]] = field(default_factory=dict)
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)


class ContentStore:
    """Features of one extractor x settings, addressed by content key, in atomically committed shards."""

    def __init__(self, extractor: str, settings: dict[str, Any]):
        self.extractor = extractor
        self.settings = settings
        self.name = f"{extractor}-{settings_key(extractor, settings)}"
        self.root = features_root() / STORE / self.name

    def index(self) -> StoreIndex:
        """Read every committed shard's key list (uncommitted ``.tmp-*`` shards are invisible)."""
        index = StoreIndex()
        if not self.root.is_dir():
            return index
        for shard in sorted(p for p in self.root.iterdir() if p.is_dir() and ".tmp-" not in p.name):
            try:
                manifest = json.loads((shard / MANIFEST).read_text(encoding="utf-8"))
                keys = manifest["keys"]
            except (OSError, json.JSONDecodeError, KeyError) as error:
                logger.warning("%s: unreadable shard manifest (%s); its rows will be encoded again", shard, error)
                continue
            index.shards[shard.name] = manifest
            for row, key in enumerate(keys):
                index.rows[key] = (shard.name, row)
        return index

    def write_shard(self, fill: Callable[[FeatureWriter], dict[str, Any]]) -> str:
        """Commit one chunk: ``fill(writer)`` writes arrays and returns a manifest with its ``keys``."""
        if not (self.root / "settings.json").is_file():
            atomic_write_bytes(self.root / "settings.json", json.dumps(
                {"extractor": self.extractor, "settings": self.settings, "format": FORMAT_VERSION}, indent=2).encode())
        name = f"{time.time_ns():016x}-{os.getpid()}"  # sorts by time: the newest shard wins a key
        with atomic_directory(self.root / name, durable=True) as staging:
            writer = FeatureWriter(staging)
            manifest = fill(writer)
            if "keys" not in manifest:
                raise ValueError("a shard's manifest must list the keys of its rows")
            writer.finish(manifest)
        return name

    def shard_array(self, shard: str, name: str) -> np.ndarray:
        return np.load(self.root / shard / f"{name}.npy", mmap_mode="r")

    def remove_superseded_shards(self) -> int:
        """Delete shards every key of which a newer shard also holds (left behind by ``--force``)."""
        index = self.index()
        removed = 0
        for shard, manifest in index.shards.items():
            if all(index.rows.get(key, (shard, 0))[0] != shard for key in manifest["keys"]):
                shutil.rmtree(self.root / shard, ignore_errors=True)
                removed += 1
        return removed

    def assemble(self, final: Path, index: StoreIndex, keys: Sequence[str | None], manifest: dict[str, Any],
                 fallback: dict[str, tuple[tuple[int, ...], str]] | None = None) -> FeatureSet:
        """Publish the view at ``final``: row ``i`` holds key ``keys[i]`` (zeros where ``None``).

        Arrays whose trailing dimensions differ between shards (token states of different widths)
        are zero-padded to the widest. ``fallback`` gives the arrays' trailing shapes and dtypes
        when no row has features (every item bad).
        """
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for row, key in enumerate(keys):
            if key is not None:
                shard, shard_row = index.rows[key]
                by_shard.setdefault(shard, []).append((row, shard_row))
        specs: dict[str, tuple[list[int], str]] = {}
        for shard in by_shard:
            for name, spec in index.shards[shard]["arrays"].items():
                trailing, dtype = list(spec["shape"][1:]), spec["dtype"]
                if name in specs:
                    known, known_dtype = specs[name]
                    if known_dtype != dtype or len(known) != len(trailing):
                        raise XmodalError(f"{self.root / shard}: array {name} is {dtype} {trailing}, other shards "
                                          f"{known_dtype} {known}; delete {self.root} and extract again")
                    trailing = [max(a, b) for a, b in zip(known, trailing)]
                specs[name] = (trailing, dtype)
        if not specs and fallback:
            specs = {name: (list(shape), dtype) for name, (shape, dtype) in fallback.items()}
        with atomic_directory(final, durable=True) as staging:
            writer = FeatureWriter(staging)
            views = {name: writer.allocate(name, (len(keys), *trailing), dtype) for name, (trailing, dtype)
                     in specs.items()}
            for shard, pairs in by_shard.items():
                pairs.sort(key=lambda pair: pair[1])  # read each shard in row order
                rows = np.array([pair[0] for pair in pairs])
                shard_rows = np.array([pair[1] for pair in pairs])
                for name, view in views.items():
                    source = self.shard_array(shard, name)
                    for start in range(0, len(rows), COPY_ROWS):
                        block = source[shard_rows[start : start + COPY_ROWS]]
                        target = (rows[start : start + COPY_ROWS], *(slice(0, n) for n in block.shape[1:]))
                        view[target] = block
                    del source
            writer.finish({**manifest, "store": self.name})
        return FeatureSet(final, json.loads((final / MANIFEST).read_text(encoding="utf-8")))
