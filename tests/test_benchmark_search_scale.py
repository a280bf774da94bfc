"""The search benchmark's scale part runs end to end on a small set and reports what it measured."""

from __future__ import annotations

import torch

from benchmarks.search_scale import part_scale, report


def test_scale_part_measures_recall_and_latency_beside_the_bare_product(tmp_path):
    figures = part_scale(tmp_path, 3000, dim=32, n_queries=40, names=["exact-float32", "exact-bfloat16", "hnsw"])
    rows = {row["name"]: row for row in figures["rows"]}
    assert rows["exact-float32"]["recall_at_10"] == 1.0
    assert rows["exact-bfloat16"]["bytes_per_vector"] < 0.6 * rows["exact-float32"]["bytes_per_vector"]
    assert rows["exact-bfloat16"]["recall_at_10"] >= 0.9  # 8 bits of mantissa: near ties may swap
    assert rows["hnsw"]["tuned_recall_on_items"] >= 0.95 and "ef_search" in rows["hnsw"]["options"]
    assert rows["hnsw"]["tuned_on"] == "held-out queries"  # not the indexed items, which overstate a graph
    # faiss builds with torch's thread count (its default, one per core, spins beside other jobs)
    assert rows["hnsw"]["faiss_threads"] == torch.get_num_threads() and "faiss_threads" not in rows["exact-float32"]
    for row in rows.values():
        for timing in (row["single"], row["batch"]):
            assert timing["p50_ms"] > 0 and timing["bare_p50_ms"] > 0
            assert timing["ratio_to_bare"] == timing["p50_ms"] / timing["bare_p50_ms"]
    table = "\n".join(report(figures))
    assert "| hnsw | kind=hnsw" in table and "(*tuned*, held out)" in table and "3,000 synthetic 32-d" in table


def test_a_rerun_reuses_the_saved_faiss_index_and_keeps_the_other_rows(tmp_path):
    from benchmarks.search import merged_rows

    first = part_scale(tmp_path, 2000, dim=16, n_queries=20, names=["exact-float32", "hnsw"])
    saved = (tmp_path / "scale-hnsw" / "faiss.index").stat().st_mtime_ns
    again = part_scale(tmp_path, 2000, dim=16, n_queries=20, names=["hnsw"], earlier=first)
    (row,) = again["rows"]
    assert row["reused_build"] and row["build_s"] == first["rows"][1]["build_s"]
    assert row["faiss_threads"] == first["rows"][1]["faiss_threads"]  # the build's, not this run's
    assert (tmp_path / "scale-hnsw" / "faiss.index").stat().st_mtime_ns == saved  # loaded, not rebuilt
    assert row["tuned_lower_bound"] >= 0.95
    assert [r["name"] for r in merged_rows(first["rows"], again["rows"])] == ["exact-float32", "hnsw"]
    assert merged_rows(first["rows"], again["rows"])[1] is row
