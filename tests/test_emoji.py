import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import EMOJI_TARBALLS
from xmodal.data.emoji import read_emoji
from xmodal.data.images import load_rgb
from xmodal.errors import DataError, XmodalError

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


def test_cldr_texts_join_on_any_form_of_the_emoji_and_count_what_the_locale_lacks(tmp_path):
    from xmodal.data.emoji import _characters, _in_language

    def record(unified: str, non_qualified: str | None = None) -> dict:
        entry = {"unified": unified, "non_qualified": non_qualified}
        return {"id": unified.lower(), "characters": _characters(entry), "texts": ("english", "english")}

    names = {"🐶": {"tts": ["狗脸"], "default": ["宠物", "狗脸", "小狗"]},  # fully qualified key
             "☺": {"tts": ["微笑"], "default": []},  # non-qualified key (no U+FE0F)
             "🧔\u200d♂": {"tts": ["男人: 胡子"], "default": ["胡子"]}}  # a sequence keyed with no U+FE0F
    records = [record("1F436"), record("263A-FE0F", "263A"), record("1F9D4-200D-2642-FE0F"), record("1F1EF-1F1F5")]
    kept, notes = _in_language(records, {"annotations": {"annotations": names}}, "zh", tmp_path / "zh.json")
    assert [(r["id"], r["texts"]) for r in kept] == [("1f436", ("狗脸", "宠物, 小狗")), ("263a-fe0f", ("微笑", "微笑")),
                                                      ("1f9d4-200d-2642-fe0f", ("男人: 胡子", "胡子"))]
    assert "3 of 4 emoji named there; 1 without a name in this locale left out (e.g. 1f1ef-1f1f5)" in notes[0]
    with pytest.raises(DataError, match="no annotations.annotations object"):
        _in_language(records, {"annotations": []}, "zh", tmp_path / "zh.json")


def test_emoji_in_chinese_keeps_the_english_split_and_categories(emoji_dataset):
    chinese = read_emoji(EMOJI_TARBALLS, lang="zh")
    english = {item.id: item for item in emoji_dataset}
    assert chinese.name == "emoji-zh" and chinese.label_names == emoji_dataset.label_names
    assert 1500 < len(chinese) < len(emoji_dataset)  # CLDR's derived names (flags, families) are not read
    assert all(item.split == english[item.id].split and item.labels == english[item.id].labels for item in chinese)
    dog = next(item for item in chinese if item.id == "1f436")
    assert dog.texts == ("狗脸", "宠物, 小狗, 汪星人, 狗, 脸") and dog.image == english["1f436"].image
    assert any("locale 'zh'" in note for note in chinese.notes)


def test_an_unknown_locale_is_named_with_the_ones_there_are(emoji_dataset):
    with pytest.raises(XmodalError, match="no annotations for this locale; choose one of its .*: .*zh"):
        read_emoji(EMOJI_TARBALLS, lang="xx")
