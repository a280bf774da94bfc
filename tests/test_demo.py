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
    monkeypatch.setattr("xmodal.factory.read_dataset", lambda *args, **kwargs: small)
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
    assert "The attention behind each text query's first result" in page
    assert page.count("<div class='attn'>") >= 5  # GPLDAN: its chunk weights per query, as bars
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


def test_attention_view_draws_region_heat_maps_and_weighted_words(tmp_path):
    import base64
    import io

    import torch
    from PIL import Image

    from xmodal.data.records import Item
    from xmodal.models.base import Attention, AttentionMap
    from xmodal.report_html import AttentionView, attention_html, render_report

    Image.new("RGB", (64, 64), (0, 0, 255)).save(tmp_path / "blue.png")
    item = Item("blue", tmp_path / "blue.png", ("a blue square",))
    weights = torch.zeros(2, 4)
    weights[:, 3] = 1.0  # both words attend to the bottom-right region of a 2 x 2 grid
    attention = Attention({"word x region": AttentionMap(weights, ("word", "region"), grids={"region": (2, 2)},
                                                         labels={"word": ["blue", "square"]}),
                           "chunks": AttentionMap(torch.tensor([0.2, 0.8]), ("chunk",))}, note="eq. 13")
    page = attention_html(AttentionView("a blue square", item, attention))
    assert page.count("<img") == 1 and "blue</span>" in page and "square</span>" in page and "eq. 13" in page
    assert page.count('class="bar"') == 2
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1))
    pixels = Image.open(io.BytesIO(png)).convert("RGB")
    corner, other = pixels.getpixel((150, 150)), pixels.getpixel((10, 10))
    assert corner[0] > 150 and other == (0, 0, 255)  # red over the attended region only
    assert "no attention to show" in attention_html(AttentionView("q", item, None))
    chunks_only = Attention({"chunks": AttentionMap(torch.tensor([0.2, 0.8]), ("chunk",))}, note="eq. 1")
    says_why = "No heat map over the image"
    assert says_why not in render_report("t", "", [], [], attention=[AttentionView("q", item, attention)])
    assert says_why in render_report("t", "", [], [], attention=[AttentionView("q", item, chunks_only)])
