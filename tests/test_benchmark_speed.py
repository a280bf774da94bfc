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


def test_the_field_table_extrapolates_epochs_and_evaluations_from_what_was_measured():
    from benchmarks.speed_field import field_table

    pairwise = {"model": "scan", "config": "scan/flickr8k-paper", "inputs": "regions / words", "trainable": True,
                "batch": 128, "step_s": 2.0, "pairs_per_s": 10_000.0, "score": "pairwise", "image_bytes": 2**20,
                "text_bytes": 2**19, "train_peak_bytes": 2**30, "eval_peak_bytes": 2**29}
    closed = pairwise | {"model": "cca", "trainable": False, "score": "cosine"}
    refused = {"model": "conse", "error": "conse reads EfficientNet-Lite0's pooled features (1280-d)"}
    scan_row, cca_row, conse_row = field_table([pairwise, closed, refused])[-3:]
    assert conse_row.startswith("| conse | - | cannot read these inputs: conse reads EfficientNet-Lite0's")
    assert conse_row.count("|") == scan_row.count("|")
    cells = [cell.strip() for cell in scan_row.split("|")[1:-1]]
    # 145,000 captions / 128 = 1,133 steps x 2 s; 566,435 / 128 = 4,426 x 2 s.
    assert cells[3:7] == ["128", "2.00 s", "37.8 min", "2.5 h"]
    # 1K x 5K: 5M pairs / 10,000 per s; two-stage K = 100: 100 x 6,000 pairs; 5K x 25K: 100 x 30,000, and 125M.
    assert cells[7:11] == ["8.3 min", "60.0 s", "5.0 min", "3.5 h"]
    assert cells[11:] == ["17.09 GiB", "1.00 GiB", "0.50 GiB"]  # 5,000 x 1 MiB + 25,000 x 0.5 MiB = 17,500 MiB
    cca_cells = [cell.strip() for cell in cca_row.split("|")[1:-1]]
    assert cca_cells[3:7] == ["-", "closed form", "-", "-"] and cca_cells[8:10] == ["-", "-"]


def test_field_shapes_are_the_papers_regions():
    from benchmarks.speed_field import field_dims
    from xmodal.config import load_config

    config = load_config("scan/flickr8k-paper")
    image = field_dims("image", "regions", config)
    assert (image.image_dim, image.regions, image.grid_side) == (2048, 36, None)
    assert field_dims("text", "words", config).vocab == 11000


def test_speed_md_says_when_no_section_is_a_gpus(tmp_path):
    import json

    from benchmarks.speed import write_speed_index

    out, index = tmp_path / "speed", tmp_path / "SPEED.md"
    out.mkdir()
    (out / "cpu.json").write_text(json.dumps({"machine": "a CPU", "matmul_bf16": None}))  # a record before "device"
    (out / "cpu.md").write_text("## a CPU")
    write_speed_index(out, index)
    assert "no GPU has run `bash benchmarks/gpu.sh` yet" in index.read_text()
    (out / "gpu.json").write_text(json.dumps({"machine": "H100", "device": "cuda", "matmul_bf16": 4e14}))
    (out / "gpu.md").write_text("## H100")
    write_speed_index(out, index)
    assert "no GPU has run" not in index.read_text() and "## H100" in index.read_text()
