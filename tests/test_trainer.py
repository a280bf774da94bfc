import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_helpers import write_dual_config, write_feature_dataset
from xmodal.cli import main
from xmodal.config import load_config
from xmodal.errors import XmodalError
from xmodal.factory import train_config
from xmodal.training.checkpoint import load_checkpoint


@pytest.fixture
def features(tmp_path: Path) -> Path:
    return write_feature_dataset(tmp_path / "features")


def _eval_json(run: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["eval", str(run), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _flat(metrics: dict) -> dict:
    return {f"{d}.{k}": v for d in ("i2t", "t2i") for k, v in metrics[d].items()} | {"rsum": metrics["rsum"]}


def test_train_writes_run_and_learns(features, tmp_path, capsys):
    config = write_dual_config(tmp_path / "c.yaml", features, epochs=6)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["loss"]["total"] < log[0]["loss"]["total"]
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "optim:" in (run / "config.yaml").read_text()
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == max(log, key=lambda r: r["val"]["map"])["epoch"]
    metrics = _eval_json(run, capsys)
    assert set(metrics) == {"i2t", "t2i", "rsum", "ranking"} and metrics["ranking"] == {"method": "exhaustive"}
    assert set(metrics["i2t"]) == {"map", "map@50", "r@1", "r@5", "r@10", "medr", "meanr"}
    assert metrics["i2t"]["map"] > 0.5  # 4 balanced classes: chance MAP is about 0.25


def test_eval_shortlist_two_stage_ranking(features, tmp_path, capsys):
    """dual's first and second stage are the same cosine, so any shortlist K ranks as exhaustive."""
    run = tmp_path / "run"
    train_config(load_config(write_dual_config(tmp_path / "c.yaml", features, epochs=2)), run)
    exhaustive = _flat(_eval_json(run, capsys))
    for k in ("3", "1000"):
        two_stage = _flat(_eval_json(run, capsys, "--shortlist", k))
        assert two_stage == pytest.approx(exhaustive, rel=1e-5, abs=1e-6)
    capsys.readouterr()
    assert main(["eval", str(run), "--shortlist", "3"]) == 0
    assert "two-stage K=3" in capsys.readouterr().out
    assert main(["eval", str(run), "--shortlist", "-1"]) == 2
    assert "give K >= 0" in capsys.readouterr().err


def test_a_second_train_into_the_same_folder_is_refused(features, tmp_path):
    config = load_config(write_dual_config(tmp_path / "c.yaml", features, epochs=1))
    train_config(config, tmp_path / "run")
    with pytest.raises(XmodalError, match="already holds a run; pass --resume"):
        train_config(config, tmp_path / "run")


def test_early_stopping_stops_and_keeps_the_best(features, tmp_path):
    config = load_config(write_dual_config(tmp_path / "c.yaml", features), [
        "train.epochs=40", "train.early_stopping.patience=2", "optim.lr=0.05"])
    result = train_config(config, tmp_path / "run")
    assert result.stopped_early and result.epochs_run == result.best_epoch + 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["epoch"] == result.best_epoch


def test_without_a_validation_split_trains_every_epoch_and_keeps_the_last(features, tmp_path, capsys):
    for path in features.glob("val_*.npy"):
        path.unlink()
    config = write_dual_config(tmp_path / "c.yaml", features, epochs=3, early_stopping={"patience": 1})
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--set", "data.val_fraction=0"]) == 0
    assert "finished after 3 epoch(s); no validation split" in capsys.readouterr().out
    run = tmp_path / "run"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["val"]) for r in log] == [(1, {}), (2, {}), (3, {})]
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == 3
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert _eval_json(run, capsys)["i2t"]["map"] > 0.5


def test_killed_and_resumed_run_matches_an_uninterrupted_one(features, tmp_path, capsys):
    """SIGKILL in the middle of epoch 3; --resume restarts from epoch 2's checkpoint."""
    config = write_dual_config(tmp_path / "c.yaml", features, epochs=4)
    straight = tmp_path / "straight"
    assert main(["train", "--config", str(config), "--out", str(straight)]) == 0
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal
        import xmodal.training.trainer as trainer
        real, calls = trainer.optimizer_step, []
        def dying(*args):
            calls.append(1)
            if len(calls) == 4 * 2 + 2:  # 4 steps an epoch (120 pairs / 32); two steps into epoch 3
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)
        trainer.optimizer_step = dying
        from xmodal.cli import main
        main(["train", "--config", {str(config)!r}, "--out", {str(killed)!r}])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] == 2
    assert main(["train", "--config", str(config), "--out", str(killed), "--resume"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(killed / "checkpoints" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert _flat(_eval_json(straight, capsys)) == pytest.approx(_flat(_eval_json(killed, capsys)), rel=1e-5)
    assert [json.loads(x)["epoch"] for x in (killed / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_torchrun_two_cpu_processes_with_gloo(features, tmp_path):
    config = write_dual_config(tmp_path / "c.yaml", features, epochs=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "xmodal", "train", "--config", str(config), "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    # Each of the 2 processes takes half of the 120 pairs in batches of 32 // 2 = 16: 4 steps each.
    assert all(r["world_size"] == 2 and r["steps"] == math.ceil(60 / 16) for r in log)
    assert log[-1]["loss"]["total"] < log[0]["loss"]["total"]
    assert log[-1]["metrics"]["i2t"]["map"] > 0.4


def test_bad_configs_are_clear_errors(features, tmp_path, capsys):
    config = write_dual_config(tmp_path / "c.yaml", features)
    cases = {
        ("--set", "optim.lrr=0.1"): "optim.lrr: unknown key",
        ("--set", "train.epochs=many"): "train.epochs: Input should be a valid integer",
        ("--set", "model.params.dimm=3"): "model.params.dimm",
        ("--set", "data.image_input=regions"): (
            "needs image regions, but dataset 'precomputed' provides only image global"
        ),
        ("--set", "model.name=nosuch"): "unknown model 'nosuch'",
    }
    for extra, message in cases.items():
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_corrupt_checkpoint_is_a_clear_error(features, tmp_path, capsys):
    config = load_config(write_dual_config(tmp_path / "c.yaml", features, epochs=1))
    train_config(config, tmp_path / "run")
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    assert main(["eval", str(tmp_path / "run")]) == 2
    assert "not a readable xmodal checkpoint" in capsys.readouterr().err


def test_cca_on_wikipedia_features_matches_published_map(wikipedia_dir, tmp_path, capsys):
    """Plain CCA (ridge 1e-3, whole train split) gives the data README's 0.239 / 0.186 MAP@all;
    the shipped config chooses the ridge on validation and lands near the published CCA (0.255 / 0.185)."""
    path = f"data.path={wikipedia_dir}"
    assert main(["train", "--config", "cca/wikipedia-features", "--out", str(tmp_path / "plain"), "--set", path,
                 "--set", "model.params.regularization=0.001", "--set", "data.val_fraction=0"]) == 0
    plain = _eval_json(tmp_path / "plain", capsys)
    assert abs(plain["i2t"]["map"] - 0.239) < 0.005 and abs(plain["t2i"]["map"] - 0.186) < 0.015
    assert np.isfinite(plain["rsum"])

    assert main(["train", "--config", "cca/wikipedia-features", "--out", str(tmp_path / "chosen"), "--set", path]) == 0
    assert "kept regularization=" in capsys.readouterr().err
    chosen = _eval_json(tmp_path / "chosen", capsys)
    kept = load_config(tmp_path / "chosen" / "config.yaml").model.params["regularization"]
    assert kept in (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    assert chosen["i2t"]["map"] > plain["i2t"]["map"] and abs(chosen["t2i"]["map"] - 0.19) < 0.02


def test_closed_form_choice_needs_a_validation_split(wikipedia_dir, tmp_path, capsys):
    assert main(["train", "--config", "cca/wikipedia-features", "--out", str(tmp_path / "run"),
                 "--set", f"data.path={wikipedia_dir}", "--set", "data.val_fraction=0"]) == 2
    assert "chooses regularization on the validation split, and there is none" in capsys.readouterr().err


def test_initial_weights_depend_only_on_the_seed(features, tmp_path):
    """Work before model creation (e.g. a first run extracting features) must not shift the init."""
    from xmodal.factory import build_run

    config = load_config(write_dual_config(tmp_path / "c.yaml", features))
    first = build_run(config, torch.device("cpu")).model.state_dict()
    torch.randn(1000)  # what building an encoder during extraction does to the global generator
    second = build_run(config, torch.device("cpu")).model.state_dict()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_val_fold_carves_a_disjoint_validation_part(tmp_path):
    from xmodal.factory import build_data

    features = write_feature_dataset(tmp_path / "features", n_val=0)  # no val split shipped: one is carved
    config = write_dual_config(tmp_path / "c.yaml", features)
    folds = [build_data(load_config(config, ["data.val_fraction=0.25", f"data.val_fold={k}"]), torch.device("cpu"))
             for k in range(4)]
    vals = [set(data.split_ids()["val"]) for data in folds]
    assert sum(map(len, vals)) == len(set().union(*vals)) == 120  # disjoint: each training item validates once
    assert all(abs(len(v) - 30) <= 2 for v in vals)  # a quarter, give or take one per class
    assert set(folds[1].split_ids()["train"]) == set().union(vals[0], vals[2], vals[3])
