from collections import Counter
from pathlib import Path

import pytest

from xmodal.data.records import Dataset, FeatureRow, Item, all_texts
from xmodal.data.splits import stratified_split


def test_stratified_split_keeps_fractions_per_stratum_and_is_deterministic():
    ids = [f"a{i}" for i in range(100)] + [f"b{i}" for i in range(20)]
    strata = ["a"] * 100 + ["b"] * 20
    first = stratified_split(ids, strata)
    assert first == stratified_split(list(reversed(ids)), list(reversed(strata)))
    counts = Counter((s, first[i]) for i, s in zip(ids, strata))
    assert (counts["a", "train"], counts["a", "val"], counts["a", "test"]) == (70, 10, 20)
    assert (counts["b", "train"], counts["b", "val"], counts["b", "test"]) == (14, 2, 4)


def test_adding_to_one_stratum_does_not_move_another():
    ids = [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(30)]
    before = stratified_split(ids, ["a"] * 30 + ["b"] * 30)
    after = stratified_split(ids + ["b-new"], ["a"] * 30 + ["b"] * 31)
    assert all(before[i] == after[i] for i in ids if i.startswith("a"))


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(["x"], ["s"], (0.5, 0.5, 0.5))


def test_dataset_counts_and_kinds(tmp_path: Path):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    items = [Item("1", image, ("one", "uno"), (0,), "train"), Item("2", image, ("two",), (0, 1), "test")]
    dataset = Dataset("toy", items, label_names=["x", "y"])
    assert dataset.split_counts() == {"train": 1, "test": 1}
    assert dataset.label_counts() == {"x": 2, "y": 1}
    assert dataset.image_kind == "file" and dataset.text_kind == "raw"
    assert all_texts(items) == [(0, "one"), (0, "uno"), (1, "two")]
    feature_items = [Item("f", FeatureRow("image", 0), (FeatureRow("text", 0),))]
    assert Dataset("f", feature_items).image_kind == "features"


def test_fingerprint_changes_when_an_image_file_changes(tmp_path: Path):
    image = tmp_path / "a.png"
    image.write_bytes(b"first")
    dataset = Dataset("toy", [Item("1", image, ("one",))])
    before = dataset.fingerprint()
    image.write_bytes(b"second, longer")
    assert dataset.fingerprint() != before
