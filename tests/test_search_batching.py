"""Queries answered together (xmodal.search.batching): a batch of texts or of images ranks exactly as
queries one at a time, queries that wait for the model together share one search per kind, and one
bad query fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from test_feature_store import home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401  (the fixture: trained dual and JGCAR runs)
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.search.batching import QueryBatcher
from xmodal.search.engine import SearchEngine

QUERIES = [f"colour number {n}" for n in range(8)]


def opened(trained, tmp_path, model: str) -> SearchEngine:  # noqa: F811
    index = tmp_path / f"index-{model}"
    assert main(["index", "build", str(trained[model]), "--collection", "split:test", "--out", str(index)]) == 0
    return SearchEngine.open(index, shortlist=3)


def same_hits(batched, alone) -> None:
    assert [hit.id for hit in batched] == [hit.id for hit in alone]
    assert [hit.score for hit in batched] == pytest.approx([hit.score for hit in alone], abs=1e-5)


def asked_while_busy(batcher: QueryBatcher, model_lock: threading.Lock, ask, queries: list) -> list:
    """Each query asked from its own thread while the model is busy (the lock held), so all of them
    queue; then the model is let go and every thread answered."""
    with model_lock:
        threads = [threading.Thread(target=ask, args=(query,)) for query in queries]
        for thread in threads:
            thread.start()
        deadline = time.time() + 10
        while len(batcher._queue) < len(queries) and time.time() < deadline:
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
    batcher = QueryBatcher(engine, model_lock, max_batch=32)
    answers: dict[str, object] = {}

    def ask(text: str) -> None:
        try:
            answers[text] = batcher.search_text(text, 5, None, None)
        except XmodalError as error:
            answers[text] = error

    asked_while_busy(batcher, model_lock, ask, [*QUERIES, " "])
    # The blank query makes the batch fail; the batch is answered query by query, so it fails alone.
    assert batcher.batch_sizes == [("text", len(QUERIES) + 1)]
    assert isinstance(answers[" "], XmodalError) and "empty" in str(answers[" "])
    for text in QUERIES:
        hits, version, warning = answers[text]
        same_hits(hits, engine.search_text(text, k=5))
        assert version == engine.index.version and warning is None


def test_a_query_alone_is_answered_at_once_and_batches_are_capped(trained, tmp_path):  # noqa: F811
    engine = opened(trained, tmp_path, "dual")
    model_lock = threading.Lock()
    batcher = QueryBatcher(engine, model_lock, max_batch=3)
    hits, _, _ = batcher.search_text(QUERIES[0], 5, None, None)
    same_hits(hits, engine.search_text(QUERIES[0], k=5))
    assert batcher.batch_sizes == [("text", 1)]
    asked_while_busy(batcher, model_lock, lambda text: batcher.search_text(text, 5, None, None), QUERIES)
    assert batcher.batch_sizes[1:] == [("text", 3), ("text", 3), ("text", 2)]
    with pytest.raises(ValueError, match="at least 1"):
        QueryBatcher(engine, model_lock, max_batch=0)


@pytest.mark.parametrize("model", ["dual", "jgcar"])
def test_a_batch_of_images_ranks_each_image_as_it_ranks_alone(trained, tmp_path, model):  # noqa: F811
    engine = opened(trained, tmp_path, model)
    images = [entry.source for entry in engine.index.sides["images"].entries[:4]]
    for batched, image in zip(engine.search_images(images, k=5), images):
        same_hits(batched, engine.search_image(image, k=5))
        assert all(hit.side == "texts" for hit in batched)


def test_uploads_and_texts_waiting_together_share_one_search_per_kind(trained, tmp_path):  # noqa: F811
    engine = opened(trained, tmp_path, "dual")
    model_lock = threading.Lock()
    batcher = QueryBatcher(engine, model_lock, max_batch=32)
    images = [entry.source for entry in engine.index.sides["images"].entries[:3]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    answers: dict[str, object] = {}

    def ask(query: str) -> None:
        try:
            if query in QUERIES[:2]:
                answers[query] = batcher.search_text(query, 5, None, None)
            else:
                answers[query] = batcher.search_image(query, 5, None, None)
        except XmodalError as error:
            answers[query] = error

    asked_while_busy(batcher, model_lock, ask, [*images, str(broken), *QUERIES[:2]])
    assert sorted(batcher.batch_sizes) == [("image", len(images) + 1), ("text", 2)]
    # The broken upload fails the image batch; answered one by one, it fails alone, naming its file.
    assert isinstance(answers[str(broken)], XmodalError) and "broken.png" in str(answers[str(broken)])
    for image in images:
        hits, version, warning = answers[image]
        same_hits(hits, engine.search_image(image, k=5))
        assert version == engine.index.version and warning is None
    for text in QUERIES[:2]:
        same_hits(answers[text][0], engine.search_text(text, k=5))
