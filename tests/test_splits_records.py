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


def test_folds_hold_disjoint_val_parts_that_cover_the_data():
    ids = [f"a{i}" for i in range(50)] + [f"b{i}" for i in range(30)]
    strata = ["a"] * 50 + ["b"] * 30
    folds = [stratified_split(ids, strata, (0.8, 0.2, 0.0), fold=k) for k in range(5)]
    vals = [{i for i in ids if split[i] == "val"} for split in folds]
    assert [len(v) for v in vals] == [16] * 5  # 10 of a and 6 of b in each
    assert set().union(*vals) == set(ids) and sum(map(len, vals)) == len(ids)  # disjoint, covering
    assert folds[0] == stratified_split(ids, strata, (0.8, 0.2, 0.0))  # fold 0 is the usual split
    assert folds[5 % 5] == stratified_split(ids, strata, (0.8, 0.2, 0.0), fold=5)  # wraps round


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


def test_fingerprint_keeps_through_a_copy_with_new_file_times(tmp_path: Path):
    """Data copied anew (another folder, fresh modification times) is the same data to a run."""
    import os
    import shutil

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (first / "a.png").write_bytes(b"pixels")
    shutil.copytree(first, second)  # copies keep the bytes; set new times explicitly
    os.utime(second / "a.png", ns=(1_000_000_000, 1_000_000_000))
    fingerprint = Dataset("toy", [Item("1", first / "a.png", ("one",))]).fingerprint()
    assert Dataset("toy", [Item("1", second / "a.png", ("one",))]).fingerprint() == fingerprint
    (tmp_path / "missing.png").unlink(missing_ok=True)
    assert Dataset("toy", [Item("1", tmp_path / "missing.png", ("one",))]).fingerprint() != fingerprint
