"""The mosaic dataset (xmodal.data.mosaic): real image files of R x C tiles, each text with its tile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine_helpers import write_caption_csv
from xmodal.api import load_dataset
from xmodal.cli import main
from xmodal.data.mosaic import MosaicLayout, parse_grid
from xmodal.errors import XmodalError

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 30),
           "black": (10, 10, 10), "white": (250, 250, 250), "orange": (250, 140, 20), "purple": (130, 40, 170)}


def colour_collection(folder: Path, per_split: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A CSV collection of noisy one-colour squares, each captioned with its colour; the colour is the label."""
    per_split = per_split or {"train": 16, "val": 4, "test": 8}
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, names = [], list(COLOURS)
    for split, count in per_split.items():
        for index in range(count):
            name = names[index % len(names)]
            pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 12, (64, 64, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{split}-{index}.png"
            Image.fromarray(pixels).save(path)
            rows.append({"image": path.name, "caption": f"a {name} square", "split": split, "label": name,
                         "id": f"{split}-{index}"})
    return write_caption_csv(folder / "colours.csv", rows)


def test_mosaics_are_real_images_of_their_tiles_and_each_text_knows_its_tile(tmp_path):
    source = colour_collection(tmp_path / "colours")
    dataset = load_dataset("mosaic", source, source="csv", grid="2x2", tile=64, train_groupings=2)
    assert [len(dataset.split(split)) for split in ("train", "val", "test")] == [8, 1, 2]  # 16 / 4 x 2 groupings
    originals = {item.id: item for item in load_dataset("csv", source).items}
    manifest = json.loads((Path(dataset.source) / "mosaics.json").read_text())
    tiles = {mosaic["id"]: mosaic["tiles"] for mosaic in manifest["mosaics"]}
    for item in dataset.items:
        pixels = np.asarray(Image.open(item.image))
        assert pixels.shape == (128, 128, 3) and len(item.texts) == len(item.text_boxes) == 4
        for tile, text, box in zip(tiles[item.id], item.texts, item.text_boxes):
            source_item = originals[tile["item"]]
            assert source_item.split == item.split  # no source image crosses splits
            assert text == source_item.texts[0] and list(box) == tile["box"]
            left, top = int(box[0] * 128), int(box[1] * 128)
            colour = pixels[top + 16 : top + 48, left + 16 : left + 48].reshape(-1, 3).mean(0)
            assert np.abs(colour - COLOURS[text.split()[1]]).max() < 25  # the tile shows what its caption names
        assert set(item.labels) == {label for tile in tiles[item.id] for label in originals[tile["item"]].labels}
    groupings = [{tile["item"] for mosaic in manifest["mosaics"] if mosaic["id"].startswith(f"train-g{g}")
                  for tile in mosaic["tiles"]} for g in (0, 1)]
    assert groupings[0] == groupings[1] == {i for i, item in originals.items() if item.split == "train"}


def test_mosaics_are_deterministic_cached_and_rebuilt_when_a_source_image_changes(tmp_path):
    source = colour_collection(tmp_path / "colours")
    first = load_dataset("mosaic", source, source="csv", tile=64)
    written = (Path(first.source) / "mosaics.json").stat().st_mtime_ns
    again = load_dataset("mosaic", source, source="csv", tile=64)
    assert [(i.id, i.texts) for i in again.items] == [(i.id, i.texts) for i in first.items]
    assert (Path(again.source) / "mosaics.json").stat().st_mtime_ns == written  # not composed again
    assert load_dataset("mosaic", source, source="csv", tile=64, seed=1).source != first.source
    Image.new("RGB", (64, 64), (0, 255, 255)).save(tmp_path / "colours" / "test-0.png")
    assert load_dataset("mosaic", source, source="csv", tile=64).source != first.source


def test_the_source_reader_is_detected_and_bad_options_are_named(tmp_path):
    source = colour_collection(tmp_path / "colours")
    assert load_dataset("mosaic", source, tile=64).notes[0].startswith("mosaics of csv")
    with pytest.raises(XmodalError, match="grid '3': give rows x columns"):
        load_dataset("mosaic", source, grid="3")
    with pytest.raises(XmodalError, match="tile 100: a multiple of 32"):
        load_dataset("mosaic", source, tile=100)
    with pytest.raises(XmodalError, match="dataset 'csv' has no option grid"):
        load_dataset("csv", source, grid="2x2")
    assert parse_grid("3X2") == (3, 2)
    assert MosaicLayout(2, 2, 224).cells_per_tile(448) == "7 x 7 cells of the 14 x 14 grid"
    assert "not whole cells per tile" in MosaicLayout(2, 2, 224).cells_per_tile(224)


def test_data_info_says_how_tiles_fall_on_the_grid(tmp_path, capsys):
    source = colour_collection(tmp_path / "colours")
    assert main(["data", "info", "mosaic", "--path", str(source), "--source", "csv", "--grid", "2x2"]) == 0
    out = capsys.readouterr().out
    assert "2 x 2 tiles of 224 px, 448 x 448 px images" in out
    assert "a tile covers 7 x 7 cells of the 14 x 14 grid" in out and "items 11" in out
