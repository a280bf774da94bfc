"""Text queries answered together (xmodal.search.batching): a batch ranks exactly as queries one at a
time, queries that wait for the model together share one search, and one bad query fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from test_feature_store import home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401  (the fixture: trained dual and JGCAR runs)
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.search.batching import TextBatcher
from xmodal.search.engine import SearchEngine

QUERIES = [f"colour number {n}" for n in range(8)]


def opened(trained, tmp_path, model: str) -> SearchEngine:  # noqa: F811
    index = tmp_path / f"index-{model}"
    assert main(["index", "build", str(trained[model]), "--collection", "split:test", "--out", str(index)]) == 0
    return SearchEngine.open(index, shortlist=3)


def same_hits(batched, alone) -> None:
    assert [hit.id for hit in batched] == [hit.id for hit in alone]
    assert [hit.score for hit in batched] == pytest.approx([hit.score for hit in alone], abs=1e-5)


def asked_while_busy(batcher: TextBatcher, model_lock: threading.Lock, ask, texts: list[str]) -> list:
    """Each text asked from its own thread while the model is busy (the lock held), so all of them queue;
    then the model is let go and every thread answered."""
    with model_lock:
        threads = [threading.Thread(target=ask, args=(text,)) for text in texts]
        for thread in threads:
            thread.start()
        deadline = time.time() + 10
        while len(batcher._queue) < len(texts) and time.time() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=30)
    return threads


@pytest.mark.parametrize("model", ["dual", "jgcar"])
def test_a_batch_ranks_each_query_as_it_ranks_alone(trained, tmp_path, model):  # noqa: F811
    engine = opened(trained, tmp_path, model)
    for batched, query in zip(engine.search_texts(QUERIES, k=5), QUERIES):
        same_hits(batched, engine.search_text(query, k=5))


def test_queries_waiting_for_the_model_together_share_one_search(trained, tmp_path):  # noqa: F811
    engine = opened(trained, tmp_path, "dual")
    model_lock = threading.Lock()
    batcher = TextBatcher(engine, model_lock, max_batch=32)
    answers: dict[str, object] = {}

    def ask(text: str) -> None:
        try:
            answers[text] = batcher.search(text, 5, None, None)
        except XmodalError as error:
            answers[text] = error

    asked_while_busy(batcher, model_lock, ask, [*QUERIES, " "])
    # The blank query makes the batch fail; the batch is answered query by query, so it fails alone.
    assert batcher.batch_sizes == [len(QUERIES) + 1]
    assert isinstance(answers[" "], XmodalError) and "empty" in str(answers[" "])
    for text in QUERIES:
        hits, version, warning = answers[text]
        same_hits(hits, engine.search_text(text, k=5))
        assert version == engine.index.version and warning is None


def test_a_query_alone_is_answered_at_once_and_batches_are_capped(trained, tmp_path):  # noqa: F811
    engine = opened(trained, tmp_path, "dual")
    model_lock = threading.Lock()
    batcher = TextBatcher(engine, model_lock, max_batch=3)
    hits, _, _ = batcher.search(QUERIES[0], 5, None, None)
    same_hits(hits, engine.search_text(QUERIES[0], k=5))
    assert batcher.batch_sizes == [1]
    asked_while_busy(batcher, model_lock, lambda text: batcher.search(text, 5, None, None), QUERIES)
    assert batcher.batch_sizes[1:] == [3, 3, 2]
    with pytest.raises(ValueError, match="at least 1"):
        TextBatcher(engine, model_lock, max_batch=0)
