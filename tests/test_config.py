"""Configs: shipped names, base: inheritance, no data paths, errors that say where a value came from."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine_helpers import write_dual_config, write_feature_dataset
from xmodal.cli import main
from xmodal.config import CONFIG_ROOT, find_config, list_configs, load_config, read_config
from xmodal.errors import XmodalError
from xmodal.factory import data_path_variable, resolve_data_path
from xmodal.models.registry import model_classes, model_params, resolve


def test_every_shipped_config_validates_and_holds_no_data_path():
    names = list_configs()
    assert {"cca/emoji", "cca/wikipedia-features", "dual/emoji", "gpldan/emoji-search", "jgcar/emoji"} <= set(names)
    for name in names:
        config = load_config(name)
        assert config.data.path is None, f"{name} holds a data path"
        assert name.split("/")[0] == config.model.name
    # every dataset with a dual config has a cca config too
    datasets = lambda model: {load_config(n).data.dataset for n in names if n.startswith(model + "/")}
    assert datasets("dual") <= datasets("cca")


def _own_layer(name: str) -> tuple[dict, dict]:
    """A shipped config's own file and what its base gives beneath it."""
    path = find_config(name)
    own = yaml.safe_load(path.read_text()) or {}
    below = read_config(find_config(own["base"], path.parent)) if "base" in own else {}
    return own, below


def test_configs_state_only_what_differs_from_the_model_defaults():
    """A parameter a config sets to the value it would have anyway (from its base or the model's
    defaults) is noise, and a clash when someone names a variant that presets it."""
    for name in list_configs():
        own, below = _own_layer(name)
        cls, preset = resolve(read_config(find_config(name))["model"]["name"])
        defaults = cls.Params().model_dump()
        below_params = (below.get("model") or {}).get("params") or {}
        for key, value in ((own.get("model") or {}).get("params") or {}).items():
            expected = below_params.get(key, preset.get(key, defaults.get(key)))
            assert value != expected, f"{name} restates model.params.{key}={value!r}"


@pytest.mark.parametrize("name", list_configs())
def test_every_variant_composes_with_every_config_of_its_model(name):
    model = name.split("/")[0]
    for variant, preset in model_classes()[model].variants.items():
        config = load_config(name, [f"model.name={model}-{variant}"])
        cls, params = model_params(config.model.name, config.model.params)
        for key, value in preset.params.items():
            assert getattr(params, key) == value, (name, variant, key)


def test_a_later_layer_naming_a_variant_replaces_the_presets_parameters(tmp_path):
    (tmp_path / "base.yaml").write_text("base: jgcar/emoji\nmodel: {params: {mode: separate, beta: 0.25}}\n")
    (tmp_path / "grl.yaml").write_text("base: base.yaml\nmodel: {name: jgcar-grl}\n")
    config = load_config(tmp_path / "grl.yaml")
    assert "mode" not in config.model.params and config.model.params["beta"] == 0.25
    assert load_config(tmp_path / "base.yaml", ["model.name=jgcar-grl"]).model.params.get("mode") is None
    # the same layer naming the variant and contradicting it is an error, not either one silently
    with pytest.raises(XmodalError, match="is the preset mode='global'"):
        config = load_config(tmp_path / "base.yaml", ["model.name=jgcar-grl", "model.params.mode=joint"])
        model_params(config.model.name, config.model.params)


def test_the_variants_section_applies_to_its_variant_only(tmp_path):
    lstm = load_config("scanet/emoji", ["model.name=scanet-lstm"])
    assert (lstm.model.params["max_words"], lstm.train.epochs) == (100, 10)
    assert "max_words" not in load_config("scanet/emoji").model.params
    assert load_config("scanet/emoji", ["model.name=scanet-lstm", "train.epochs=3"]).train.epochs == 3  # --set wins
    (tmp_path / "typo.yaml").write_text("base: dual/emoji\nvariants: {nosuch: {train: {epochs: 1}}}\n")
    with pytest.raises(XmodalError, match="nosuch is not a variant of model 'dual'"):
        load_config(tmp_path / "typo.yaml")


def test_a_config_name_works_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = CONFIG_ROOT / "dual" / "emoji.yaml"
    for name in ("dual/emoji", "dual/emoji.yaml", "configs/dual/emoji.yaml"):
        assert find_config(name) == shipped
    with pytest.raises(XmodalError, match=r"config dual/nosuch not found: .*dual/emoji"):
        find_config("dual/nosuch")
    (tmp_path / "folder").mkdir()
    with pytest.raises(XmodalError, match="is a folder, expected a YAML file"):
        find_config(tmp_path / "folder")


def test_base_inheritance_merges_sections_key_by_key(tmp_path):
    search = read_config("gpldan/emoji-search")
    full = read_config("gpldan/emoji")
    assert search["model"]["params"] == full["model"]["params"] | {"alpha": 10.0}
    assert search["train"]["early_stopping"] == {"metric": "rsum", "patience": 10}
    assert search["optim"] == full["optim"] and "base" not in search
    # a user's config can extend a shipped one, and a file beside it
    (tmp_path / "mine.yaml").write_text("base: dual/emoji\ntrain: {epochs: 2}\n")
    (tmp_path / "mine-seed.yaml").write_text("base: mine.yaml\ntrain: {seed: 7}\n")
    config = load_config(tmp_path / "mine-seed.yaml")
    assert (config.train.epochs, config.train.seed, config.model.name) == (2, 7, "dual")


def test_base_loops_and_bad_bases_are_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(XmodalError, match="base: forms a loop"):
        read_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: [1, 2]\n")
    with pytest.raises(XmodalError, match="base: expected a config name or path"):
        read_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: nosuch/config\n")
    with pytest.raises(XmodalError, match="config nosuch/config not found"):
        read_config(tmp_path / "d.yaml")


def test_errors_blame_the_file_or_the_override(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: dual/emoji\ntrain: {epochs: many}\n")
    with pytest.raises(XmodalError) as error:
        load_config(bad, ["optim.lr=fast"])
    message = str(error.value)
    assert f"{bad}: train.epochs: Input should be a valid integer" in message
    assert "--set optim.lr: Input should be a valid number" in message
    assert f"{bad}: optim.lr" not in message


def test_data_path_from_option_or_environment_and_recorded_absolute(tmp_path, monkeypatch, capsys):
    data = write_feature_dataset(tmp_path / "features")
    raw = yaml.safe_load(write_dual_config(tmp_path / "c.yaml", data, epochs=1).read_text())
    del raw["data"]["path"]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(XmodalError, match="needs a path: pass --path DIR .* or set XMODAL_DATA_PRECOMPUTED"):
        resolve_data_path(load_config(config))
    monkeypatch.setenv(data_path_variable("precomputed"), str(data))
    assert resolve_data_path(load_config(config)) == data.resolve()
    monkeypatch.delenv(data_path_variable("precomputed"))

    monkeypatch.chdir(tmp_path)  # a relative --path, then eval from another folder
    assert main(["train", "--config", "c.yaml", "--path", "features", "--out", "run"]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["path"] == str(data.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0


def test_training_output_redirected_to_a_file_keeps_one_line_per_epoch(tmp_path):
    data = write_feature_dataset(tmp_path / "features")
    config = write_dual_config(tmp_path / "c.yaml", data, epochs=3)
    log = tmp_path / "train.log"
    with log.open("w") as stream:
        subprocess.run([sys.executable, "-m", "xmodal", "train", "--config", str(config), "--out",
                        str(tmp_path / "run")], stdout=stream, stderr=subprocess.STDOUT, check=True,
                       env=dict(os.environ))
    lines = log.read_text().splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all(re.search(r"loss: total \d+\.\d{4} .* val: rsum \d+\.\d map \d\.\d{4}/\d\.\d{4}  best map "
                         r"\d\.\d{4} @\d  \d+\.\d s$", line) for line in epochs), epochs
    assert lines[-1].startswith("finished after 3 epoch(s); best validation map")

    quiet = subprocess.run([sys.executable, "-m", "xmodal", "train", "-q", "--config", str(config), "--out",
                            str(tmp_path / "quiet")], capture_output=True, text=True, check=True)
    assert "epoch " not in quiet.stderr and quiet.stdout.startswith("finished after 3 epoch(s)")


def test_no_validation_split_is_said_plainly(tmp_path, capsys):
    data = write_feature_dataset(tmp_path / "features")
    config = write_dual_config(tmp_path / "c.yaml", data, epochs=1)
    (data / "val_images.npy").unlink()
    (data / "val_texts.npy").unlink()
    (data / "val_labels.npy").unlink()
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--set", "model.name=cca",
                 "--set", "model.params={dim: 4, regularization: 0.1}", "--set", "data.val_fraction=0"]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed and "no validation split, so nothing was measured" in printed


def test_models_lists_each_models_configs(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"configs cca/emoji, cca/emoji-zh, cca/flickr8k, cca/mosaic-emoji, cca/mosaic-flickr8k, "
                     r"cca/wikipedia-features, "
                     r"cca/wikipedia-texts$", printed, re.M)
    assert "gpldan/emoji-search" in printed


def test_configs_ship_inside_the_package():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]["xmodal"]
    assert "configs/*/*.yaml" in package_data and "search/web/*" in package_data  # configs, the search page
    assert CONFIG_ROOT.parent.name == "xmodal" and (CONFIG_ROOT / "cca" / "emoji.yaml").is_file()


def test_image_root_from_the_command_line_and_recorded_absolute(tmp_path, monkeypatch, capsys):
    from PIL import Image

    images = tmp_path / "pictures"
    images.mkdir()
    rows = ["image,caption,split"]
    for i in range(8):
        Image.new("RGB", (16, 16), (30 * i, 0, 0)).save(images / f"{i}.png")
        rows.append(f"{i}.png,red {i},{'train' if i < 5 else 'val' if i < 6 else 'test'}")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "c.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "info", "csv", "--path", str(lists / "c.csv")]) == 2  # images are not beside the list
    assert "image not found" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["data", "info", "csv", "--path", "lists/c.csv", "--image-root", "pictures"]) == 0
    assert "items 8" in capsys.readouterr().out
    config = tmp_path / "dual.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "dual", "params": {"dim": 8, "hidden": 0}},
                                      "data": {"dataset": "csv"}, "train": {"epochs": 1, "batch_size": 4}}))
    assert main(["train", "--config", "dual.yaml", "--path", "lists/c.csv", "--image-root", "pictures",
                 "--out", "run"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert saved["image_root"] == str(images.resolve()) and saved["path"] == str((lists / "c.csv").resolve())


def test_data_settings_reach_the_feature_extractor(tmp_path, monkeypatch):
    """data.graph_vertices (and the other extraction settings) are what ModelData is built with."""
    import torch

    import xmodal.factory as factory

    seen = {}

    class Recorder:
        bad_items: list = []

        def __init__(self, dataset, image_input, text_input, **options):
            seen.update(options)

    monkeypatch.setattr(factory, "ModelData", Recorder)
    data = write_feature_dataset(tmp_path / "features")
    config = load_config(write_dual_config(tmp_path / "c.yaml", data),
                         ["data.graph_vertices=10055", "data.max_image_pixels=1000", "data.skip_bad=true"])
    factory.build_data(config, torch.device("cpu"))
    options = seen["extract_options"]
    assert (options.graph_vertices, options.max_image_pixels, options.skip_bad) == (10055, 1000, True)
    with pytest.raises(XmodalError, match="data.graph_vertices"):
        load_config(write_dual_config(tmp_path / "c.yaml", data), ["data.graph_vertices=1"])
