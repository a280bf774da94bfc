import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from xmodal.data.emoji import read_emoji
from xmodal.data.images import load_rgb
from xmodal.errors import DataError

# emoji.json's own category counts (see ../shared/data/emoji/README.md), Component dropped.
EXPECTED = {"People & Body": 386, "Flags": 270, "Objects": 264, "Symbols": 224, "Travel & Places": 218,
            "Smileys & Emotion": 169, "Animals & Nature": 159, "Food & Drink": 131, "Activities": 85}


def test_records_match_the_packages(emoji_dataset):
    assert len(emoji_dataset) == sum(EXPECTED.values()) == 1906
    assert emoji_dataset.label_counts() == {name: EXPECTED[name] for name in sorted(EXPECTED)}
    assert len(emoji_dataset.extra_label_names["subcategory"]) == 98
    assert len({item.id for item in emoji_dataset}) == len(emoji_dataset)
    grinning = next(item for item in emoji_dataset if item.id == "1f600")
    assert grinning.texts[0] == "grinning face"
    assert "smile" in grinning.texts[1] and "happy" in grinning.texts[1]
    assert all(len(item.texts) == 2 and all(item.texts) for item in emoji_dataset)


def test_split_is_stratified_and_stable(emoji_dataset):
    assert emoji_dataset.split_counts() == {"train": 1334, "val": 190, "test": 382}
    for name, total in EXPECTED.items():
        test_share = emoji_dataset.label_counts("test")[name] / total
        assert abs(test_share - 0.2) < 0.02
    again = read_emoji(Path(emoji_dataset.source))
    assert [(i.id, i.split) for i in again] == [(i.id, i.split) for i in emoji_dataset]


def test_images_are_composited_on_white(emoji_dataset):
    image = np.asarray(load_rgb(emoji_dataset.items[0].image))
    assert image.shape == (64, 64, 3)
    assert tuple(image[0, 0]) == (255, 255, 255)  # emoji corners are transparent


def _copy_unpacked(emoji_dataset, tmp_path: Path) -> Path:
    copy = tmp_path / "emoji"
    shutil.copytree(emoji_dataset.source, copy)
    return copy


def test_missing_image_is_named_or_counted(emoji_dataset, tmp_path):
    copy = _copy_unpacked(emoji_dataset, tmp_path)
    (copy / "img" / "1f600.png").unlink()
    with pytest.raises(DataError, match=r"1f600\.png: image for GRINNING FACE not found"):
        read_emoji(copy)
    dataset = read_emoji(copy, skip_bad=True)
    assert len(dataset.skipped) == 1 and len(dataset) == 1905


def test_corrupt_tarball_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    folder = tmp_path / "tarballs"
    folder.mkdir()
    (folder / "emoji-datasource-google-16.0.0.tgz").write_bytes(b"not a tarball")
    with tarfile.open(folder / "emojilib-4.0.3.tgz", "w:gz"):
        pass
    with pytest.raises(DataError, match="corrupt or incomplete tarball"):
        read_emoji(folder)
    assert not any((tmp_path / "home").rglob("emoji.json"))  # nothing half-unpacked looks complete
