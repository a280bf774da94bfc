"""Bad input gets one clear line (exit 2, no traceback), or a counted and named skip when asked."""

import csv
import io

import pytest
import torch
import yaml
from PIL import Image

from engine_helpers import write_dual_config, write_feature_dataset
from xmodal.cli import main
from xmodal.config import load_config
from xmodal.features.extract import ExtractOptions
from xmodal.features.inputs import ModelData
from xmodal.training.checkpoint import load_checkpoint
from xmodal.training.trainer import train


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def trained(tmp_path):
    data = write_feature_dataset(tmp_path / "features")
    run = tmp_path / "run"
    train(load_config(write_dual_config(tmp_path / "c.yaml", data, epochs=1)), run)
    return run


def test_empty_and_foreign_checkpoints(trained, capsys):
    (trained / "checkpoints" / "best.pt").write_bytes(b"")
    assert main(["eval", str(trained)]) == 2
    assert "best.pt: empty file (0 bytes), not a checkpoint" in _error(capsys)
    assert main(["eval", str(trained), "--checkpoint", "last"]) == 0  # the other one still works
    capsys.readouterr()
    buffer = io.BytesIO()
    torch.save({"model": {}, "config": {}, "epoch": 1, "payload": io.BytesIO}, buffer)  # not plain values
    (trained / "checkpoints" / "last.pt").write_bytes(buffer.getvalue())
    assert main(["eval", str(trained), "--checkpoint", "last"]) == 2
    err = _error(capsys)
    assert "holds objects other than tensors and plain values" in err and "weights_only" not in err


def test_checkpoint_keeps_the_cuda_random_state_slot(trained):
    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert "cuda_rng" in state and "rng" in state


@pytest.mark.parametrize("args, message", [
    (["--resolution", "100"], "--resolution=100: the image size must be a positive multiple of 32"),
    (["--resolution", "-32"], "--resolution=-32: the image size must be a positive multiple of 32"),
    (["--batch-size", "0"], "--batch-size 0: give at least 1"),
])
def test_extract_options_are_checked(tmp_path, capsys, args, message):
    assert main(["extract", "folder", "--path", str(tmp_path), *args]) == 2
    assert message in _error(capsys)


def test_config_resolution_and_device_errors(trained, tmp_path, capsys):
    config = write_dual_config(tmp_path / "c2.yaml", tmp_path / "features")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r"), "--set", "data.resolution=100"]) == 2
    assert "--set data.resolution: Value error, the image size must be a positive multiple of 32" in _error(capsys)
    if not torch.cuda.is_available():
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "r"),
                     "--set", "train.device=cuda"]) == 2
        err = _error(capsys)
        assert "no CUDA GPU is available here" in err and "--set train.device=auto" in err


def test_model_data_does_not_change_the_callers_options(tmp_path):
    data = write_feature_dataset(tmp_path / "features")
    from xmodal.data.precomputed import read_feature_arrays

    options = ExtractOptions(image_resolution=448)
    ModelData(read_feature_arrays(data), "global", "global", resolution=224, extract_options=options)
    assert options.image_resolution == 448


def _collection(folder, n: int = 12):
    """A CSV collection of small real PNGs, one of them truncated."""
    folder.mkdir()
    rows = []
    for i in range(n):
        Image.new("RGB", (40, 40), (20 * i, 255 - 20 * i, 128)).save(folder / f"im{i}.png")
        split = "train" if i < 8 else ("val" if i < 10 else "test")
        rows += [{"image": f"im{i}.png", "caption": f"a colour patch number {i}", "split": split}]
    (folder / "im3.png").write_bytes((folder / "im3.png").read_bytes()[:50])
    with (folder / "c.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["image", "caption", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return folder / "c.csv"


@pytest.mark.slow
def test_train_skip_bad_works_like_every_other_verb(tmp_path, capsys):
    table = _collection(tmp_path / "photos")
    config = tmp_path / "dual.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "dual", "params": {"dim": 8, "hidden": 0}},
                                      "data": {"dataset": "csv", "image_input": "global", "text_input": "global"},
                                      "train": {"epochs": 1, "batch_size": 4}}))
    base = ["train", "--config", str(config), "--path", str(table)]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "im3.png: unreadable or truncated image" in _error(capsys)
    # A cache written by `extract --skip-bad` must not make the same data pass silently.
    assert main(["extract", "csv", "--path", str(table), "--encoders", "effnet", "--skip-bad"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b")]) == 2
    err = _error(capsys)
    assert "1 image(s) could not be read (first: " in err and "pass --skip-bad" in err
    assert main([*base, "--out", str(tmp_path / "c"), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "skipped 0 bad record(s) while reading and 1 unreadable image(s): " in err
    skipped = (tmp_path / "c" / "skipped.txt").read_text().splitlines()
    assert skipped[1] == "# 1 unreadable image(s), by item id:" and len(skipped) == 3
