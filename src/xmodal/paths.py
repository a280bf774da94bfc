"""Where xmodal keeps downloaded data and cached features, and how it writes them safely.

Everything is written to a temporary sibling and renamed into place, so a crash or a kill never
leaves a file or folder at the final path that looks complete when it is not. Temporary names
carry the writer's host and process id (``NAME.tmp-HOST-PID-XXXX``), so
:func:`remove_stale_temporaries` can tell a leftover of a dead writer from work in progress.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()
_TEMP_NAME = re.compile(r"\.tmp-(?:(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-)?")
LEGACY_TEMP_AGE_S = 3600.0  # temporaries without a writer id (older xmodal) count as stale after this


def xmodal_home() -> Path:
    """``$XMODAL_HOME``, default ``~/.cache/xmodal``."""
    return Path(os.environ.get("XMODAL_HOME", Path.home() / ".cache" / "xmodal")).expanduser()


def folder_bytes(folder: Path) -> int:
    """The bytes of every file below ``folder`` (what it takes on disk, before block rounding)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    ``os.umask`` can only be read by writing it, which briefly changes it for every thread; on
    Linux ``/proc/self/status`` says it without that race. Elsewhere the write uses a restrictive
    transient value (0o077), so a file another thread creates meanwhile is private, never public.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        current = os.umask(0o077)
        os.umask(current)
    return current


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (``mkstemp`` would give 0o600)."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0o777 less the umask (``mkdtemp`` would give 0o700)."""
    return 0o777 & ~current_umask()


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def temp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of ``name``: names the writer so a cleaner can check it is gone."""
    return f"{name}.tmp-{_host_tag()}-{os.getpid()}-"


@contextmanager
def atomic_directory(final: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``final`` to fill; rename it into place only on success.

    A crash or kill leaves at most a ``.tmp-*`` folder, never something at ``final`` that looks
    complete. If ``final`` already exists (another process won the race, or ``--force``) it is
    replaced. With ``durable`` every file is flushed to disk before the rename, so a power cut
    cannot publish a folder whose files are still empty.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    staging.chmod(default_dir_mode())  # mkdtemp makes it private; the published folder should not be
    try:
        yield staging
        if durable:
            _fsync_tree(staging)
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
            os.replace(final, trash / "old")  # out of the way in one rename, then deleted at leisure
            os.replace(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, final)
        if durable:
            _fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_path(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the files themselves were synced
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    for entry in root.iterdir():
        if entry.is_file():
            _fsync_path(entry)
    _fsync_path(root)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The file gets the mode a plain ``open()`` would give it (0o666 less the umask), not the
    private 0o600 of ``mkstemp``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    try:
        os.fchmod(handle, default_file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return True  # cannot tell: keep it
    return True


def is_stale_temporary(path: Path) -> bool:
    """Whether ``path`` is a ``.tmp-*`` leftover that no live writer will finish.

    A writer on this host is gone when its process id no longer runs (a reused id only delays
    the cleaning). Writers on other hosts (a shared home on a cluster) cannot be checked, so their
    temporaries are left alone; temporaries of older xmodal versions, which name no writer, are
    stale once they are an hour old.
    """
    match = _TEMP_NAME.search(path.name)
    if match is None:
        return False
    if match.group("pid") is None:
        try:
            return time.time() - path.lstat().st_mtime > LEGACY_TEMP_AGE_S
        except OSError:
            return False
    if match.group("host") != _host_tag():
        return False
    return not _pid_alive(int(match.group("pid")))


def remove_stale_temporaries(root: Path, depth: int = 3) -> int:
    """Delete the stale ``.tmp-*`` files and folders up to ``depth`` levels under ``root``; return how many."""
    removed = 0
    folders = [(root, 0)]
    while folders:
        folder, level = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if _TEMP_NAME.search(entry.name):
                if is_stale_temporary(path):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    logger.info("removed %s, left by a killed writer", path)
                    removed += 1
            elif level + 1 < depth and entry.is_dir(follow_symlinks=False):
                folders.append((path, level + 1))
    return removed
