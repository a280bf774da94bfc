"""One place that decides how long work reports progress."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """A tqdm bar on stderr, refreshed at most once a second."""
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=1.0, dynamic_ncols=True, leave=False,
                     disable=None))  # None: shown on a terminal, silent in logs and CI
