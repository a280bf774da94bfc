"""Queries that wait for the model together are answered by one batched search.

The server runs one query on the model at a time (torch already uses every core for one). Under
load, queries queue for it; whichever request thread takes the model next answers every query
waiting then (up to ``max_batch``): the text queries with :meth:`SearchEngine.search_texts`, the
uploaded images with :meth:`SearchEngine.search_images`, each kind in one encoding batch and one
backend search, whose matrix product over a large exact index costs little more for 32 queries
than for one. A query alone is answered at once, as before: no waiting window is added, so
batching costs nothing at low load.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

QueryKind = Literal["text", "image"]


@dataclass
class _Waiting:
    kind: QueryKind
    query: str | Path  # the text, or the uploaded image's file
    k: int
    shortlist: int | None
    min_score: float | None
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[list, str, str | None] | None = None  # hits, index version, query warning
    error: BaseException | None = None


class QueryBatcher:
    """Answers the text and image queries of concurrent request threads in batches, holding
    ``model_lock`` while it does."""

    def __init__(self, engine: Any, model_lock: threading.Lock, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        self.engine, self.model_lock, self.max_batch = engine, model_lock, max_batch
        self._queue: list[_Waiting] = []
        self._guard = threading.Lock()
        self.batch_sizes: list[tuple[QueryKind, int]] = []  # of every batched search run (tests, benchmark)

    def search_text(self, text: str, k: int, shortlist: int | None, min_score: float | None
                    ) -> tuple[list, str, str | None]:
        """(the images found, the index version that answered, the query's warning or None)."""
        return self._wait(_Waiting("text", text, k, shortlist, min_score))

    def search_image(self, image: str | Path, k: int, shortlist: int | None, min_score: float | None
                     ) -> tuple[list, str, None]:
        """(the texts found for the image file, the index version that answered, None)."""
        return self._wait(_Waiting("image", Path(image), k, shortlist, min_score))  # type: ignore[return-value]

    def _wait(self, waiting: _Waiting) -> tuple[list, str, str | None]:
        """Queue ``waiting`` and block until it is answered, by this thread or another."""
        with self._guard:
            self._queue.append(waiting)
        while not waiting.done.is_set():
            with self.model_lock:  # whoever holds the model answers everyone waiting, this query among them
                if waiting.done.is_set():
                    break
                with self._guard:
                    batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                if batch:
                    self._answer(batch)
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result

    def _together(self, kind: QueryKind, queries: list, k: int, shortlist: int | None,
                  min_score: float | None) -> list[list]:
        search = self.engine.search_texts if kind == "text" else self.engine.search_images
        return search(queries, k, shortlist, min_score)

    def _alone(self, waiting: _Waiting) -> list:
        search = self.engine.search_text if waiting.kind == "text" else self.engine.search_image
        return search(waiting.query, waiting.k, waiting.shortlist, waiting.min_score)

    def _answer(self, batch: list[_Waiting]) -> None:
        groups: dict[tuple, list[_Waiting]] = defaultdict(list)
        for waiting in batch:
            groups[(waiting.kind, waiting.k, waiting.shortlist, waiting.min_score)].append(waiting)
        version = self.engine.index.version
        try:
            for (kind, k, shortlist, min_score), members in groups.items():
                self.batch_sizes.append((kind, len(members)))
                try:
                    answers = self._together(kind, [member.query for member in members], k, shortlist, min_score)
                except Exception:  # one query the model refuses (a blank text, a broken image) fails alone
                    answers = [None] * len(members)
                for member, hits in zip(members, answers):
                    try:
                        if hits is None:
                            hits = self._alone(member)
                        warning = self.engine.query_warning(member.query) if kind == "text" else None
                        member.result = (hits, version, warning)
                    except Exception as error:
                        member.error = error
                    member.done.set()
        finally:  # whatever happened, no request thread is left waiting
            for waiting in batch:
                if not waiting.done.is_set():
                    waiting.error = waiting.error or RuntimeError("the batched search stopped before this query")
                    waiting.done.set()
