"""Recall against exact search, and search settings tuned to a recall target (issue 34, step 2)."""

from __future__ import annotations

import numpy as np
import pytest

from test_feature_store import home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.search.index import SearchIndex
from xmodal.search.recall import RecallProbe, exact_neighbours, tune_recall
from xmodal.search.vector_index import ExactIndex, FaissIndex, unit_rows


def clustered(n: int, dim: int = 32, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: the shape of real embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit_rows(centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)))


def built(kind: str, vectors: np.ndarray, **options) -> FaissIndex:
    index = FaissIndex(vectors.shape[1], {"kind": kind, **options})
    index.add(np.arange(len(vectors)) + 1000, vectors)
    return index


def test_exact_neighbours_and_the_probe_leave_each_query_out():
    vectors = unit_rows(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], np.float32))
    np.testing.assert_array_equal(exact_neighbours(vectors, vectors[:1], 3), [[0, 1, 3]])
    keys = np.arange(5) + 10
    probe = RecallProbe(keys, vectors, k=1, queries=5)
    # each item's nearest other: 0 <-> 1, 2 <-> 3, 4 -> 2 (inner products -1, -0.99, 0, -0.11)
    assert {int(own): next(iter(truth)) for own, truth in zip(probe.own, probe.truth)} == {10: 11, 11: 10, 12: 13,
                                                                                          13: 12, 14: 12}
    exact = ExactIndex(2)
    exact.add(keys, vectors)
    assert probe.recall(exact) == 1.0


def test_the_probe_asks_with_queries_from_outside_the_index():
    items = unit_rows(np.array([[1, 0], [0, 1], [-1, 0], [0.6, 0.8]], np.float32))
    asked = unit_rows(np.array([[0.9, 0.1], [0.1, 0.9], [-1, 0.2]], np.float32))
    keys = np.arange(4) + 10
    probe = RecallProbe(keys, items, k=2, queries=3, asked=asked)
    assert probe.k == 2 and len(probe.queries) == 3  # nothing of its own to leave out: k may reach every item
    truth = {tuple(query.round(3)): found for query, found in zip(unit_rows(probe.queries), probe.truth)}
    assert truth[tuple(asked[0].round(3))] == {10, 13} and truth[tuple(asked[2].round(3))] == {12, 11}
    exact = ExactIndex(2)
    exact.add(keys, items)
    assert probe.recall(exact) == 1.0
    tuned = tune_recall(exact, keys, items, 0.95, k=2, asked=asked, asked_by="the collection's texts")
    assert tuned["queries_from"] == "the collection's texts" and tuned["queries"] == 3
    assert tune_recall(exact, keys, items, 0.95, k=2)["queries_from"] == "items"


def test_a_coarse_index_measures_below_exact_and_tuning_reaches_the_target():
    vectors = clustered(4000)
    index = built("ivfpq", vectors, pq_m=4, nprobe=1)
    keys = np.arange(len(vectors)) + 1000
    probe = RecallProbe(keys, vectors)
    coarse = probe.recall(index)
    assert coarse < 0.9  # one list of ~63 scanned with 4-byte codes: most neighbours are missed
    with pytest.raises(XmodalError, match=r"reaches recall@10 0\.\d+ at best .*not surely above --recall-target "
                                          r"0.999.*--faiss-refine"):
        tune_recall(index, keys, vectors, 0.999)
    refined = built("ivfpq", vectors, pq_m=4, nprobe=1, refine=True)
    measured = tune_recall(refined, keys, vectors, 0.95)
    assert measured["recall_at_k"] >= 0.95 and refined.options["recall"] == measured
    assert measured["settings"] == {key: refined.options[key] for key in ("nprobe", "k_factor")}
    assert probe.recall(refined) == pytest.approx(measured["recall_at_k"], abs=1e-4)  # the settings stay applied


def test_hnsw_tuning_picks_the_cheapest_ef_and_survives_save_and_load(tmp_path):
    vectors = clustered(3000, seed=1)
    keys = np.arange(len(vectors)) + 1000
    index = built("hnsw", vectors, m=4, ef_construction=16)
    measured = tune_recall(index, keys, vectors, 0.95)
    ef = index.options["ef_search"]
    assert measured["lower_bound"] >= 0.95 and measured["settings"] == {"ef_search": ef}
    ladder = [rung["ef_search"] for rung in index.search_ladder()]
    if ef != ladder[0]:  # the rung below fell short
        index.apply_search({"ef_search": ladder[ladder.index(ef) - 1]})
        assert RecallProbe(keys, vectors).recall_bounds(index)[1] < 0.95
        index.apply_search({"ef_search": ef})
    index.save(tmp_path)
    reloaded = FaissIndex.load(tmp_path, vectors.shape[1], index.options)
    assert RecallProbe(keys, vectors).recall(reloaded) == pytest.approx(measured["recall_at_k"], abs=1e-4)


class Degraded(ExactIndex):
    """Exact search whose first rung loses half the neighbours of every tenth query: mean recall 0.95."""

    def search_ladder(self) -> list[dict]:
        return [{"level": 1}, {"level": 2}]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, keys = super().search(queries, k)
        if self.options.get("level") == 1:
            keys = keys.copy()
            keys[::10, 1 + (k - 1) // 2 :] = -1  # the query itself stays first, half its neighbours go
        return scores, keys


def test_a_rung_passes_on_its_lower_bound_not_its_mean():
    vectors = clustered(1000, seed=3)
    keys = np.arange(len(vectors))
    index = Degraded(vectors.shape[1])
    index.add(keys, vectors)
    index.apply_search({"level": 1})
    mean, lower = RecallProbe(keys, vectors).recall_bounds(index)
    assert mean == pytest.approx(0.95) and lower < 0.94  # 20 of 200 queries at 0.5: the bound sees the spread
    measured = tune_recall(index, keys, vectors, 0.95)
    assert measured["settings"] == {"level": 2} and measured["recall_at_k"] == measured["lower_bound"] == 1.0


def test_refined_ivfpq_removes_by_rebuilding_and_reloads(tmp_path):
    vectors = clustered(3000, seed=2)
    index = built("ivfpq", vectors, refine=True, k_factor=8)
    index.remove(np.arange(1000, 1010))
    assert len(index) == 2990
    _, found = index.search(vectors[:20], 5)
    assert not np.isin(found, np.arange(1000, 1010)).any()
    np.testing.assert_array_equal(found[10:, 0], np.arange(1010, 1020))  # the stored vectors rescore: itself first
    index.save(tmp_path)
    reloaded = FaissIndex.load(tmp_path, vectors.shape[1], index.options)
    np.testing.assert_array_equal(reloaded.search(vectors[:20], 5)[1], found)


def test_a_saved_ivfpq_reloads_its_list_sizes_from_the_file(tmp_path):
    vectors = clustered(3000, seed=4)
    keys = np.arange(len(vectors)) + 1000  # as built() adds them
    index = built("ivfpq", vectors, refine=True, k_factor=8)
    index.save(tmp_path)
    # loaded with only its kind (as the benchmark's --reuse-built does): nlist and pq_m come from the file
    reloaded = FaissIndex.load(tmp_path, vectors.shape[1], {"kind": "ivfpq", "refine": True})
    assert (reloaded.options["nlist"], reloaded.options["pq_m"]) == (index.options["nlist"], index.options["pq_m"])
    assert all(rung["nprobe"] >= 1 for rung in reloaded.search_ladder())
    assert tune_recall(reloaded, keys, vectors, 0.95)["lower_bound"] >= 0.95


def test_target_must_be_a_share():
    vectors = clustered(50)
    exact = ExactIndex(vectors.shape[1])
    exact.add(np.arange(50), vectors)
    with pytest.raises(XmodalError, match="between 0 and 1"):
        tune_recall(exact, np.arange(50), vectors, 95)


def test_cli_builds_to_a_recall_target_and_info_reports_it(trained, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "hnsw"
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out", str(out),
                 "--backend", "faiss", "--faiss-kind", "hnsw", "--recall-target", "0.95"]) == 0
    recall = SearchIndex.open(out).sides["images"].vectors.options["recall"]
    assert recall["items"] == 8 and recall["k"] == 7 and recall["recall_at_k"] >= 0.95
    capsys.readouterr()
    assert main(["index", "info", str(out)]) == 0
    assert "images: recall@7 1.000, 95% lower bound 1.000 against exact search (target 0.95), measured at build on " \
        "8 sampled items" in \
        capsys.readouterr().out
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out",
                 str(tmp_path / "bad"), "--backend", "faiss", "--faiss-kind", "hnsw", "--faiss-refine"]) == 2
    assert "--faiss-refine is an option of --backend faiss --faiss-kind ivfpq" in capsys.readouterr().err


def test_each_side_is_measured_on_the_queries_the_other_side_asks(trained, tmp_path, capsys, monkeypatch):  # noqa: F811
    import xmodal.search.index as index_module

    monkeypatch.setattr(index_module, "MIN_ASKING_QUERIES", 10)  # the test split: 8 images, 16 texts
    out = tmp_path / "asked"
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out", str(out),
                 "--backend", "faiss", "--faiss-kind", "hnsw", "--recall-target", "0.9"]) == 0
    sides = SearchIndex.open(out).sides
    images, texts = (sides[name].vectors.options["recall"] for name in ("images", "texts"))
    assert images["queries_from"] == "the collection's texts" and images["queries"] == 16 and images["k"] == 8
    assert texts["queries_from"] == "items" and texts["queries"] == 16  # 8 images are too few to ask with
    capsys.readouterr()
    assert main(["index", "info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "images: recall@8 1.000, 95% lower bound 1.000 against exact search (target 0.9), measured at build " \
           "on 16 queries from the collection's texts, against its 8 items" in shown
    assert "texts: recall@10 " in shown and "measured at build on 16 sampled items of 16" in shown
