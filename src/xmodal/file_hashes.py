"""Content keys of files: the SHA-256 of their bytes, memoised so an unchanged file is not re-read.

Image files are keyed by content wherever xmodal must know whether an image is the same one:
the feature store (:mod:`xmodal.features.store`), a dataset's fingerprint
(:meth:`xmodal.data.records.Dataset.fingerprint`) and a search index's checkpoint identity. The
memo lives in ``$XMODAL_HOME/features/file-hashes.sqlite``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Sequence

from xmodal.paths import xmodal_home

logger = logging.getLogger(__name__)

FILE_HASHES = "file-hashes.sqlite"
RACY_NS = 2_000_000_000  # a file modified this recently may change again within its mtime tick: not memoised


def memo_path() -> Path:
    return xmodal_home() / "features" / FILE_HASHES


_MEMO: dict[tuple[str, int, int, int, int], str] = {}  # this process's (path, size, mtime, ctime, inode) -> hash


def hash_file(path: Path, length: int = 32) -> str:
    """The content key of a file: the SHA-256 of its bytes, its first ``length`` hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def file_keys(paths: Sequence[Path]) -> list[str | None]:
    """The content key of each file, ``None`` where it cannot be read (missing, not a file).

    Keys are memoised by (absolute path, size, mtime_ns) in this process and in
    ``file-hashes.sqlite``, so an unchanged file is stat-ed but not re-read; the inode and ctime
    are part of the memo too (as git does), so a file replaced by a copy that keeps its old size
    and modification time (``cp -p``, ``rsync -t``) is still re-read. A file modified in the last
    two seconds is hashed but not memoised: it could change again within its mtime tick.
    """
    now = time.time_ns()
    database = _HashDatabase(memo_path())
    keys: list[str | None] = []
    fresh: list[tuple[str, int, int, int, int, str]] = []
    hashed = 0
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            keys.append(None)
            continue
        if not stat.S_ISREG(info.st_mode):
            keys.append(None)
            continue
        memo = (str(Path(path).absolute()), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        key = _MEMO.get(memo) or database.get(*memo)
        if key is None:
            try:
                key = hash_file(path)
            except OSError:
                keys.append(None)
                continue
            hashed += 1
            if now - info.st_mtime_ns > RACY_NS:
                fresh.append((*memo, key))
        if now - info.st_mtime_ns > RACY_NS:
            _MEMO[memo] = key
        keys.append(key)
    database.put(fresh)
    database.close()
    logger.debug("content keys of %d files: %d read and hashed, %d memoised", len(keys), hashed, len(keys) - hashed)
    return keys


def _storable(path: str) -> str:
    """The path as SQLite can store it: bytes the OS name had that are not UTF-8 become \\xNN escapes
    (a row also matches on size, times and inode, so an escape that looks like another name is harmless)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _HashDatabase:
    """The on-disk memo of file hashes; failing to open or write it only costs re-reading files."""

    def __init__(self, path: Path):
        self.connection: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))  # sqlite would make it 0o644 whatever the umask
            self.connection = sqlite3.connect(path, timeout=30)
            self.connection.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                                    "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, key TEXT)")
        except (sqlite3.Error, OSError) as error:
            logger.warning("%s: cannot use the file-hash memo (%s); images are re-read to hash them", path, error)
            self.close()

    def get(self, path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str | None:
        if self.connection is None:
            return None
        try:
            row = self.connection.execute("SELECT key FROM files WHERE path = ? AND size = ? AND mtime_ns = ? AND "
                                          "ctime_ns = ? AND inode = ?", (_storable(path), size, mtime_ns, ctime_ns,
                                                                         inode)
                                          ).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def put(self, rows: list[tuple[str, int, int, int, int, str]]) -> None:
        if self.connection is None or not rows:
            return
        try:
            with self.connection:
                self.connection.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                                            [(_storable(row[0]), *row[1:]) for row in rows])
        except sqlite3.Error as error:
            logger.warning("cannot update the file-hash memo (%s)", error)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
