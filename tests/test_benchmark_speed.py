"""The speed benchmark's reading against its targets (benchmarks/speed.py), from recorded rows."""

from __future__ import annotations

from benchmarks.speed import goals_section


def _pairwise(model: str, share: float, flops_per_pair: float, other: str, other_share: float) -> dict:
    return {"model": model, "kind": "pairwise", "machine_share": share, "flops_per_pair": flops_per_pair,
            "matmul_time_share": 0.3, "top_other_op": f"aten::{other}", "top_other_share": other_share}


def test_each_target_is_met_or_named_with_what_limits_it():
    results = {
        "similarity": {"rows": [_pairwise("fast", 0.6, 2e6, "mul", 0.1), _pairwise("heavy", 0.2, 1.4e6, "tanh", 0.44),
                                _pairwise("light", 0.15, 2.2e3, "copy_", 0.27),
                                {**_pairwise("cosine", 0.1, 1e3, "copy_", 0.2), "kind": "cosine"}]},
        "two_stage": {"rows": [{"method": "two-stage K = 100", "gallery": "5,000 texts", "r10": 88.0,
                                "r10_exhaustive": 88.1, "speedup": 30.6},
                               {"method": "two-stage K = 10", "gallery": "5,000 texts", "r10": 80.0,
                                "r10_exhaustive": 88.1, "speedup": 200.0}]},
        "extraction": {"rows": [{"source": "big", "ratio": 0.73, "pipeline": 5.3, "bare": 7.3},
                                {"source": "small", "ratio": 0.95, "pipeline": 36.7, "bare": 38.5}]},
    }
    lines = goals_section(results)
    text = "\n".join(lines)
    assert "- fast: pairwise scoring at 60% of the matrix product: met." in lines
    assert "- heavy: 20% of the matrix product, not met" in text and "`tanh` (44%)" in text
    assert "- light: 15% of the matrix product, not met: 2.2 kFLOP per pair" in text
    assert "cosine" not in text  # a cosine model's score is one matrix product: no target
    assert "- two-stage K = 100 over 5,000 texts: 99.9% of exhaustive R@10 in 1/30.6 of its time: met." in lines
    assert "K = 10 " not in text
    assert "- extraction, big: 73% of the bare forward pass: not met: decoding costs 0.052 s" in text
    assert "- extraction, small: 95% of the bare forward pass: met." in lines


def test_a_run_for_some_models_keeps_the_other_models_rows_with_their_dates():
    from benchmarks.speed import _with_earlier_rows

    earlier = {"date": "2026-11-30", "rows": [{"model": "acln", "pairs_per_s": 1.0},
                                             {"model": "bssan", "pairs_per_s": 2.0},
                                             {"model": "jgcar", "pairs_per_s": 3.0}]}
    now = {"date": "2026-12-06", "rows": [{"model": "bssan", "pairs_per_s": 5.0, "date": "2026-12-06"}]}
    merged = _with_earlier_rows(now, earlier)
    assert merged["date"] == "2026-12-06"
    assert [(row["model"], row["pairs_per_s"], row["date"]) for row in merged["rows"]] == [
        ("acln", 1.0, "2026-11-30"), ("bssan", 5.0, "2026-12-06"), ("jgcar", 3.0, "2026-11-30")]
