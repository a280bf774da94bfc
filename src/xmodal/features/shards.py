"""Image extraction split over processes or machines: ``xmodal extract --shard i/n`` (or under
``torchrun``, which sets ``RANK`` and ``WORLD_SIZE``).

Shard ``i`` of ``n`` encodes the images whose content key falls to it (a hash of the key modulo
``n``: the split depends on the images, not on what is cached or on the row order, so a killed
shard run again picks up exactly its own remaining images) and commits them, chunk by chunk, to
the item-keyed store every shard shares (:mod:`xmodal.features.store`). When a shard has encoded
all of its images it leaves a marker with the unreadable images it skipped; the shard that
completes the set of ``n`` markers gathers the dataset's view, once, and removes the markers.
The store's folder must be shared (one machine, or a network file system for several).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError
from xmodal.paths import atomic_write_bytes


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/n"`` with 0 <= i < n."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise XmodalError(f"--shard {text!r}: give i/n, this process's shard i of n "
                              "(0/2 and 1/2 for two)") from None
        if count < 1 or not 0 <= index < count:
            raise XmodalError(f"--shard {text}: i must lie in 0..n-1 (0/2 and 1/2 for two processes)")
        return cls(index, count)

    @classmethod
    def from_environment(cls) -> "Shard | None":
        """The shard ``torchrun`` gives this process (``RANK`` of ``WORLD_SIZE``), or None outside it."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), size) if size > 1 else None

    def owns(self, key: str) -> bool:
        return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class ShardMarkers:
    """The markers of the shards of one dataset view that have finished encoding."""

    def __init__(self, view: Path, count: int):
        self.folder = view.parent / f".shards-{view.name}"
        self.count = count

    def _path(self, index: int) -> Path:
        return self.folder / f"shard-{index}-of-{self.count}.json"

    def finish(self, shard: Shard, report: dict[str, Any]) -> None:
        atomic_write_bytes(self._path(shard.index), json.dumps(report).encode())

    def waiting(self) -> list[int]:
        """The shards that have not finished yet."""
        return [index for index in range(self.count) if not self._path(index).is_file()]

    def reports(self) -> list[dict[str, Any]]:
        return [json.loads(self._path(index).read_text(encoding="utf-8")) for index in range(self.count)]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def merged(reports: list[dict[str, Any]], field: str) -> list[str]:
    """The union of every shard's ``field`` list, in first-seen order (each shard reports the missing files)."""
    return list(dict.fromkeys(value for report in reports for value in report.get(field, [])))
