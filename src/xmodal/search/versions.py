"""An index's versions on disk: whole folders, checked on open, switched by ``CURRENT`` under one writer lock.

- **One writer at a time.** Every change (build, add, remove) holds an exclusive advisory lock on
  ``INDEX/LOCK`` from reading the live version to switching ``CURRENT`` (:func:`writer_lock`), so
  two writers serialise instead of one silently dropping the other's items.
- **Readers never race a delete.** After a switch the previous version is kept (only older ones are
  deleted), and a reader that still finds its version gone re-reads ``CURRENT`` and tries again
  (:func:`read_live`).
- **Files checked on open.** A version's manifest lists every file of the version with its size
  and SHA-256 (:func:`file_table`); opening compares them (:func:`verify`) and refuses a damaged
  version with one line that names the file and what to do.
- **A kill leaves nothing that looks complete.** A version folder becomes live only through the
  atomic replace of ``CURRENT``; a folder holding only version folders and no ``CURRENT`` (a first
  build that was killed) is recognised as such and replaced by the next build (:func:`is_partial`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from xmodal.errors import XmodalError
from xmodal.paths import atomic_write_bytes

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
LOCK = "LOCK"
MANIFEST = "manifest.json"
KEPT = 2  # versions kept: the live one and the one before it (readers may still be opening it)
VERSION = re.compile(r"v\d{6}")
_HELD: set[Path] = set()  # index folders whose writer lock this process holds
T = TypeVar("T")


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Hold the index's writer lock (waits for another writer to finish)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    with open(folder / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another writer of %s to finish", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


def holds_lock(folder: Path) -> bool:
    return folder.resolve() in _HELD


def live_name(folder: Path) -> str:
    """The live version's name from ``CURRENT``; one clear line when it is missing or damaged."""
    current = folder / CURRENT
    if not current.is_file():
        raise XmodalError(f"{folder.name} is not a search index (no {CURRENT} file); build one with xmodal index "
                          "build")
    try:
        name = current.read_bytes().decode("ascii").strip()
    except UnicodeDecodeError:
        name = ""
    if not VERSION.fullmatch(name):
        raise XmodalError(f"{folder.name}/{CURRENT} does not name a version (damaged); rebuild the index with "
                          "xmodal index build --overwrite")
    return name


def read_live(folder: Path, read: Callable[[Path], T], attempts: int = 5) -> T:
    """``read(live version folder)``; when a writer pruned that version meanwhile, read the new one."""
    for attempt in range(attempts):
        name = live_name(folder)
        try:
            return read(folder / name)
        except (FileNotFoundError, XmodalError):
            if attempt + 1 == attempts or live_name(folder) == name:
                raise  # not a version switched under us: the error stands
            time.sleep(0.01)
    raise AssertionError("unreachable")


def next_version(folder: Path) -> Path:
    """A new, empty version folder after the live one (one a killed writer left is dropped)."""
    previous = live_name(folder) if (folder / CURRENT).is_file() else None
    number = int(previous[1:]) + 1 if previous else 1
    version = folder / f"v{number:06d}"
    if version.exists():  # left by a writer killed before CURRENT moved: never live, safe to drop
        shutil.rmtree(version)
    version.mkdir(parents=True)
    return version


def file_table(version: Path) -> dict[str, dict[str, Any]]:
    """Every file of a version (but its manifest) with its size and SHA-256."""
    table = {}
    for path in sorted(version.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            table[path.relative_to(version).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return table


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(version: Path, files: dict[str, dict[str, Any]]) -> None:
    """Refuse a version whose files are missing, of another size or other content than its manifest says."""
    for name, expected in files.items():
        path = version / name
        where = f"{version.parent.name}/{version.name}/{name}"
        if not path.is_file():
            raise XmodalError(f"{where} is missing (the index is damaged); rebuild it with xmodal index build "
                              "--overwrite")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise XmodalError(f"{where} is not the file the index wrote (its size or SHA-256 differs: changed or "
                              "cut short); rebuild the index with xmodal index build --overwrite")


def publish(folder: Path, version: Path) -> None:
    """Make ``version`` live: fsync it, replace ``CURRENT``, then delete all but the last :data:`KEPT` versions."""
    if not holds_lock(folder):
        raise RuntimeError(f"publishing {version} without the writer lock of {folder}")
    _sync_tree(version)
    atomic_write_bytes(folder / CURRENT, f"{version.name}\n".encode())
    versions = sorted(path for path in folder.iterdir() if VERSION.fullmatch(path.name) and path.is_dir())
    for old in versions[: versions.index(version) + 1 - KEPT] if version in versions else []:
        shutil.rmtree(old, ignore_errors=True)


def is_partial(folder: Path) -> bool:
    """A folder a killed first build left: version folders and the lock, no ``CURRENT``."""
    if not folder.is_dir() or (folder / CURRENT).exists():
        return False
    names = [path.name for path in folder.iterdir()]
    return any(VERSION.fullmatch(name) for name in names) and all(
        VERSION.fullmatch(name) or name == LOCK or name.startswith("milvus") or ".tmp-" in name for name in names)


def _sync_tree(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves, before CURRENT points at it."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as stream:
                os.fsync(stream.fileno())
        descriptor = os.open(root, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
