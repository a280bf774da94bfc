import re

import pytest

from conftest import subset
from xmodal.cli import main
from xmodal.demo import demo_config
from xmodal.errors import XmodalError


@pytest.mark.slow
def test_demo_end_to_end_on_an_emoji_subset(emoji_dataset, tmp_path, monkeypatch, capsys):
    """The main job on 30 real emojis per split: trains, prints metrics and queries, writes a report."""
    small = subset(emoji_dataset, 30, name="emoji")
    monkeypatch.setattr("xmodal.train.setup.load_dataset", lambda *args, **kwargs: small)
    out = tmp_path / "demo"
    assert main(["demo", "--path", emoji_dataset.source, "--out", str(out), "--set", "train.epochs=3"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^i2t\s+0\.\d{4}", printed, re.M) and re.search(r"^rsum \d+\.\d", printed, re.M)
    assert printed.count("text  '") == 5 and printed.count("image [") == 5
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5 * 5 + 5  # result thumbnails and query images
    assert "Text &rarr; images (typed queries" in page and "rsum" in page
    assert (out / "checkpoints" / "best.pt").is_file()


def test_demo_config_default_model_and_explicit_paths(tmp_path):
    assert demo_config().as_posix().endswith("configs/gpldan/emoji-search.yaml")
    assert demo_config("dual").as_posix().endswith("configs/dual/emoji.yaml")
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: {name: dual}\n")
    assert demo_config("dual", mine) == mine
    with pytest.raises(XmodalError, match="configs/nosuch/emoji.yaml not found"):
        demo_config("nosuch")
    with pytest.raises(XmodalError, match="missing.yaml: no such config file"):
        demo_config(config=tmp_path / "missing.yaml")


def test_demo_refuses_both_model_and_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--model", "dual", "--config", "mine.yaml"])
    assert exit_info.value.code == 2
    assert "--config: not allowed with argument --model" in capsys.readouterr().err
