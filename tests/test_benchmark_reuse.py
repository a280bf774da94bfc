"""Benchmarks reusing earlier finished runs of the same config (benchmarks/runner.py, quality --reuse)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.runner import EarlierRuns, effective, measure, train_and_measure
from engine_helpers import write_dual_config, write_feature_dataset
from xmodal.config import load_config
from xmodal.factory import train_config


def _checkpoint_there(run_dir: Path) -> dict:
    return {"checkpoint": (run_dir / "checkpoints" / "best.pt").is_file()}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_dual_config(tmp_path / "c.yaml", write_feature_dataset(tmp_path / "features"), epochs=2)


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained, though a finished run of the same config was there")

    monkeypatch.setattr(runner, "train_config", refuse)


def test_a_finished_run_of_the_same_config_is_measured_not_trained(config, tmp_path, monkeypatch):
    earlier = tmp_path / "earlier"
    first = train_and_measure(config, earlier / "a", [], _checkpoint_there)
    monkeypatch.setattr(runner, "train_config", lambda *a, **k: pytest.fail("trained again"))

    result = train_and_measure(config, tmp_path / "new" / "a", [], _checkpoint_there, EarlierRuns([earlier]))

    assert result["checkpoint"] is True
    assert result["adopted_from"] == str(earlier / "a")
    assert result["train_seconds"] == first["train_seconds"]  # as recorded when it was trained
    assert (tmp_path / "new" / "a" / "test.json").is_file()
    assert not (tmp_path / "new" / "a.adopting").exists()


def test_another_config_is_trained(config, tmp_path):
    earlier = tmp_path / "earlier"
    train_and_measure(config, earlier / "a", [], _checkpoint_there)

    result = train_and_measure(config, tmp_path / "new" / "b", ["train.seed=4"], _checkpoint_there,
                               EarlierRuns([earlier]))

    assert "adopted_from" not in result
    assert json.loads((tmp_path / "new" / "b" / "trained.json").read_text())["epochs"] == 2


def test_a_run_finished_without_trained_json_takes_its_time_from_the_epoch_log(config, tmp_path, no_training):
    """Runs of ``xmodal train`` (no benchmark around them) have no trained.json: their log shows them finished."""
    earlier = tmp_path / "earlier" / "plain"
    train_config(load_config(config), earlier)
    epochs = [json.loads(line) for line in (earlier / "log.jsonl").read_text().splitlines()]

    result = train_and_measure(config, tmp_path / "new" / "a", [], _checkpoint_there, EarlierRuns([earlier.parent]))

    assert result["train_seconds"] == pytest.approx(sum(epoch["seconds"] for epoch in epochs))
    assert result["train_seconds_from"] == "epoch log"
    assert (result["epochs"], result["best_epoch"]) == (2, epochs[-1]["best_epoch"])


def test_an_interrupted_run_is_not_reused(config, tmp_path, monkeypatch):
    earlier = tmp_path / "earlier" / "cut"
    train_config(load_config(config), earlier)
    log = (earlier / "log.jsonl").read_text().splitlines()
    (earlier / "log.jsonl").write_text(log[0] + "\n")  # one of two epochs, no early stop: killed mid-run

    assert EarlierRuns([tmp_path / "earlier"]).find(load_config(config)) is None


def test_configs_that_spell_the_same_model_differently_are_the_same(config, tmp_path):
    """A default written out, or a variant's name for its preset, trains the same model: reusable."""
    plain = load_config(config)
    spelled = load_config(config, ["model.params.margin=0.2"])  # dual's default margin, written out
    assert plain.model.params != spelled.model.params and effective(plain) == effective(spelled)
    assert effective(plain) != effective(load_config(config, ["model.params.margin=0.3"]))


def test_measure_is_what_xmodal_eval_prints(tmp_path, capsys):
    from xmodal.cli import main

    run = tmp_path / "run"
    config = write_dual_config(tmp_path / "c.yaml", write_feature_dataset(tmp_path / "features"), epochs=1)
    train_config(load_config(config, ["eval.shortlist=3"]), run)
    assert main(["eval", str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    measured = measure(run)
    assert {key: measured[key] for key in printed} == printed and printed["ranking"] == {"method": "two-stage", "k": 3}
    assert measured["exhaustive"]["ranking"] == {"method": "exhaustive"}  # a two-stage run is also ranked in full
    assert main(["eval", str(run), "--json", "--shortlist", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["rsum"] == measured["exhaustive"]["rsum"]


def test_quality_measures_a_run_whose_items_are_all_there_and_says_its_data_changed(tmp_path):
    import numpy as np

    from xmodal.errors import DataChangedError

    features = write_feature_dataset(tmp_path / "features")
    run = tmp_path / "run"
    train_config(load_config(write_dual_config(tmp_path / "c.yaml", features, epochs=1)), run)
    first = measure(run)
    assert "warning" not in first and first["ranking"] == {"method": "exhaustive"}
    images = np.load(features / "test_images.npy")
    np.save(features / "test_images.npy", images * 1.001)  # same items, other content (as new file times are)
    result = measure(run)
    assert "changed since" in result["warning"] and result["i2t"]["r@1"] >= 0
    for kind in ("images", "texts", "labels"):  # an item more: not the data the run was trained on
        rows = np.load(features / f"test_{kind}.npy")
        np.save(features / f"test_{kind}.npy", np.concatenate([rows, rows[:1]]))
    with pytest.raises(DataChangedError):
        measure(run)
