import json
import re

import pytest
import yaml

from conftest import subset
from engine_helpers import write_dual_config, write_feature_dataset
from xmodal.cli import main
from xmodal.demo import MARKER, demo_config
from xmodal.errors import XmodalError


@pytest.mark.slow
def test_demo_end_to_end_on_an_emoji_subset(emoji_dataset, tmp_path, monkeypatch, capsys):
    """The main job on 30 real emojis per split: trains, prints metrics and queries, writes a report;
    a second run with nothing changed reuses the trained run, --retrain trains again."""
    small = subset(emoji_dataset, 30, name="emoji")
    monkeypatch.setattr("xmodal.factory.load_dataset", lambda *args, **kwargs: small)
    out = tmp_path / "demo"
    args = ["demo", "--path", emoji_dataset.source, "--out", str(out), "--set", "train.epochs=3"]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "gpldan on emoji, test split (30 images, 60 texts)" in printed
    assert re.search(r"^i2t\s+0\.\d{4}", printed, re.M) and re.search(r"^rsum \d+\.\d", printed, re.M)
    assert printed.count("text  '") == 5 and printed.count("image [") == 5
    assert re.search(r"^epoch 3/3  loss: total ", captured.err, re.M)  # the trainer's log lines
    # Every example query is a test text or image, so its own match is among the candidates.
    test_names = {item.texts[0] for item in small.split("test")}
    queries = re.findall(r"^text  '(.*)' -> ", printed, re.M)
    assert set(queries) <= test_names
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5 * 5 + 5 + 1  # results, query images, curves
    assert "Training curves" in page and "Config" in page and "checkpoint kept: epoch" in page
    assert all(item.id in page for item in small.split("test")[:1])  # query images are named
    assert (out / "checkpoints" / "best.pt").is_file()
    assert f"xmodal search {out / 'index'} --text '{queries[0]}'" in printed.replace('"', "'")
    assert f"xmodal serve {out / 'index'}" in printed
    index_version = (out / "index" / "CURRENT").read_text()
    capsys.readouterr()
    assert main(["search", str(out / "index"), "--text", queries[0], "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 10

    trained_at = (out / "checkpoints" / "best.pt").stat().st_mtime_ns
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "reusing the trained run" in captured.err and "epoch 1/3" not in captured.err
    assert "(reused the trained run)" in captured.out
    assert (out / "checkpoints" / "best.pt").stat().st_mtime_ns == trained_at
    assert (out / "index" / "CURRENT").read_text() == index_version  # the index was kept too

    assert main([*args, "--retrain"]) == 0
    assert "epoch 3/3" in capsys.readouterr().err
    assert main([*args[:-1], "train.epochs=2"]) == 0  # a changed config trains again
    assert "epoch 2/2" in capsys.readouterr().err


def test_demo_on_another_dataset_takes_its_title_and_queries_from_it(tmp_path, capsys):
    data = write_feature_dataset(tmp_path / "features")
    config = write_dual_config(tmp_path / "dual.yaml", data, epochs=2)
    raw = yaml.safe_load(config.read_text())
    del raw["data"]["path"]  # the data come from --path, as for any shipped config
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(config), "--path", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dual on precomputed, test split (40 images, 40 texts)" in printed
    assert printed.count("text  '") == 5 and "emoji" not in printed
    assert "<h1>xmodal demo: dual on precomputed</h1>" in (out / "report.html").read_text()
    assert json.loads((out / MARKER).read_text())["data"]


def test_demo_refuses_to_replace_a_folder_that_is_not_a_demo_run(tmp_path, capsys):
    data = write_feature_dataset(tmp_path / "features")
    config = write_dual_config(tmp_path / "dual.yaml", data, epochs=1)
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    assert main(["demo", "--config", str(config), "--out", str(precious)]) == 2
    assert "is not a demo run" in capsys.readouterr().err
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_demo_path_that_does_not_exist_is_an_error(tmp_path, capsys):
    assert main(["demo", "--path", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "d")]) == 2
    assert "nonexistent does not exist" in capsys.readouterr().err


def test_demo_config_default_model_and_explicit_paths(tmp_path):
    assert demo_config().as_posix().endswith("xmodal/configs/gpldan/emoji-search.yaml")
    assert demo_config("dual").as_posix().endswith("xmodal/configs/dual/emoji.yaml")
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: {name: dual}\n")
    assert demo_config("dual", mine) == mine
    with pytest.raises(XmodalError, match="config nosuch/emoji not found"):
        demo_config("nosuch")
    with pytest.raises(XmodalError, match="missing.yaml not found"):
        demo_config(config=tmp_path / "missing.yaml")


def test_demo_refuses_both_model_and_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--model", "dual", "--config", "mine.yaml"])
    assert exit_info.value.code == 2
    assert "--config: not allowed with argument --model" in capsys.readouterr().err
