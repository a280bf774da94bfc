"""The probes that explain a trained run give sound figures on a small one (benchmarks/probes)."""

from __future__ import annotations

import pytest

from test_portable_runs import colours, small_config  # noqa: F401  (the fixture: a colour collection)
from xmodal.factory import train_config


@pytest.mark.slow
def test_the_bssan_probe_measures_gradients_saturation_attention_and_the_score_split(colours, tmp_path):  # noqa: F811
    from benchmarks.probes.bssan import probe

    run_dir = tmp_path / "bssan"
    train_config(small_config(tmp_path, "bssan", "words"), run_dir)
    for init in (True, False):
        figures = probe(str(run_dir), batches=2, init=init)
        gradients = figures["gradients"]["per_module"]
        assert gradients["total"]["w2r_lstm"] > 0 and gradients["total"]["o2w_mlp"] > 0
        assert "global_head" in gradients["total"] and "global_head" not in gradients["bssan"]  # its own term only
        for side in ("w2r", "o2w"):
            assert 0 <= figures[side]["share_beyond_2"] <= 1 and 0 < figures[side]["relative_entropy"] <= 1
            assert figures[side]["largest_weight"] >= figures[side]["uniform_weight"] - 1e-6
        assert set(figures["scores"]) == {"full", "w2r", "o2w"}
        for part in figures["scores"].values():
            assert sum(part["variance"].values()) == pytest.approx(1.0)
            assert 0 <= part["rsum"] <= 600


@pytest.mark.slow
def test_the_word_drift_probe_reports_the_embeddings_lr_and_how_far_it_moved(colours, tmp_path):  # noqa: F811
    from benchmarks.probes.word_drift import probe

    moved = {}
    for name, params, group_lr in (("frozen", {"finetune_words": False}, {}), ("fast", {}, {"words": 0.05})):
        config = small_config(tmp_path, "dual", "words")
        config = config.model_copy(update={
            "model": config.model.model_copy(update={"params": params}),
            "optim": config.optim.model_copy(update={"group_lr": group_lr})})
        train_config(config, tmp_path / name)
        figures = probe(str(tmp_path / name))["embeddings"]["words"]
        assert figures["rows"] > 0 and figures["start_row_norm"] > 0
        moved[name] = figures
    assert moved["frozen"]["lr"] == 0 and moved["frozen"]["drift_median"] == 0
    assert moved["fast"]["lr"] == 0.05 and moved["fast"]["drift_p90"] >= moved["fast"]["drift_median"] > 0
