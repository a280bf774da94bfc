"""Where xmodal keeps downloaded data and cached features, and how it writes them safely."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def xmodal_home() -> Path:
    """``$XMODAL_HOME``, default ``~/.cache/xmodal``."""
    return Path(os.environ.get("XMODAL_HOME", Path.home() / ".cache" / "xmodal")).expanduser()


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final`` to fill; rename it into place only on success.

    A crash or kill leaves at most a ``.tmp-*`` folder, never something at ``final`` that looks
    complete. If ``final`` already exists (another process won the race) it is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the published folder should not be
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f"{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
