"""Text queries that wait for the model together are answered by one batched search.

The server runs one query on the model at a time (torch already uses every core for one). Under
load, queries queue for it; whichever request thread takes the model next answers every text
query waiting then (up to ``max_batch``) with :meth:`SearchEngine.search_texts`: one encoding
batch and one backend search, whose matrix product over a large exact index costs little more
for 32 queries than for one. A query alone is answered at once, as before: no waiting window
is added, so batching costs nothing at low load.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Waiting:
    text: str
    k: int
    shortlist: int | None
    min_score: float | None
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[list, str, str | None] | None = None  # hits, index version, query warning
    error: BaseException | None = None


class TextBatcher:
    """Answers text queries of concurrent request threads in batches, holding ``model_lock`` while it does."""

    def __init__(self, engine: Any, model_lock: threading.Lock, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        self.engine, self.model_lock, self.max_batch = engine, model_lock, max_batch
        self._queue: list[_Waiting] = []
        self._guard = threading.Lock()
        self.batch_sizes: list[int] = []  # of every batched search run (what the tests and benchmark read)

    def search(self, text: str, k: int, shortlist: int | None, min_score: float | None
               ) -> tuple[list, str, str | None]:
        """(hits, the index version that answered, the query's warning or None), blocking until answered."""
        waiting = _Waiting(text, k, shortlist, min_score)
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

    def _answer(self, batch: list[_Waiting]) -> None:
        groups: dict[tuple, list[_Waiting]] = defaultdict(list)
        for waiting in batch:
            groups[(waiting.k, waiting.shortlist, waiting.min_score)].append(waiting)
        version = self.engine.index.version
        try:
            for (k, shortlist, min_score), members in groups.items():
                self.batch_sizes.append(len(members))
                try:
                    answers = self.engine.search_texts([member.text for member in members], k, shortlist, min_score)
                except Exception:  # one query the model refuses must not fail the others: each alone
                    answers = [None] * len(members)
                for member, hits in zip(members, answers):
                    try:
                        if hits is None:
                            hits = self.engine.search_text(member.text, k, shortlist, min_score)
                        member.result = (hits, version, self.engine.query_warning(member.text))
                    except Exception as error:
                        member.error = error
                    member.done.set()
        finally:  # whatever happened, no request thread is left waiting
            for waiting in batch:
                if not waiting.done.is_set():
                    waiting.error = waiting.error or RuntimeError("the batched search stopped before this query")
                    waiting.done.set()
