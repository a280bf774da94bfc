"""Readers for user collections, Karpathy split files and precomputed features, on tiny real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from xmodal.data.collection import read_csv, read_folder, read_jsonl
from xmodal.data.karpathy import read_karpathy
from xmodal.data.precomputed import read_feature_arrays, read_scan_precomputed
from xmodal.data.records import FeatureRow
from xmodal.data.splits import stratified_split
from xmodal.errors import DataError


def make_png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """A real 4x4 PNG at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Folder
# ---------------------------------------------------------------------------------------------


def test_read_folder_labels_from_subfolders(tmp_path: Path) -> None:
    for label, stem in [("cat", "a"), ("cat", "b"), ("dog", "c")]:
        make_png(tmp_path / label / f"{stem}.png")
        write(tmp_path / label / f"{stem}.txt", f"a  {label} named {stem}\n\n   second {stem} \n")
    make_png(tmp_path / ".hidden" / "x.png")  # hidden folders are ignored

    dataset = read_folder(tmp_path)

    assert dataset.name == "folder" and dataset.source == str(tmp_path)
    assert [item.id for item in dataset] == ["cat/a", "cat/b", "dog/c"]
    assert dataset.items[0].texts == ("a cat named a", "second a")
    assert dataset.label_names == ["cat", "dog"]
    assert [item.labels for item in dataset] == [(0,), (0,), (1,)]
    assert [item.image for item in dataset] == [tmp_path / name for name in ("cat/a.png", "cat/b.png", "dog/c.png")]
    expected = stratified_split(["cat/a", "cat/b", "dog/c"], strata=["cat", "cat", "dog"], fractions=(0.7, 0.1, 0.2))
    assert {item.id: item.split for item in dataset} == expected
    assert len(dataset.skipped) == 0


def test_read_folder_flat_has_no_labels(tmp_path: Path) -> None:
    make_png(tmp_path / "one.jpg")
    write(tmp_path / "one.txt", "just one\n")
    make_png(tmp_path / "two.png")
    write(tmp_path / "two.txt", "deux\n")

    dataset = read_folder(tmp_path)

    assert [item.id for item in dataset] == ["one", "two"]
    assert dataset.label_names == [] and all(item.labels == () for item in dataset)
    assert [item.texts for item in dataset] == [("just one",), ("deux",)]


def test_read_folder_missing_sidecar_names_image(tmp_path: Path) -> None:
    make_png(tmp_path / "lonely.png")
    with pytest.raises(DataError) as caught:
        read_folder(tmp_path)
    message = str(caught.value)
    assert "lonely.png" in message and "add lonely.txt" in message


def test_read_folder_non_utf8_caption_names_file_and_line(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        read_folder(tmp_path)
    assert f"{tmp_path / 'a.txt'}:2" in str(caught.value)
    assert "UTF-8" in str(caught.value)


def test_read_folder_skip_bad_counts(tmp_path: Path) -> None:
    make_png(tmp_path / "good.png")
    write(tmp_path / "good.txt", "kept\n")
    make_png(tmp_path / "nocaption.png")
    make_png(tmp_path / "badutf.png")
    (tmp_path / "badutf.txt").write_bytes(b"\xff\xfe\n")
    make_png(tmp_path / "blank.png")
    write(tmp_path / "blank.txt", "\n  \n")

    dataset = read_folder(tmp_path, skip_bad=True)

    assert [item.id for item in dataset] == ["good"]
    assert len(dataset.skipped) == 3


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def test_read_csv_merges_rows_and_reads_labels_splits(tmp_path: Path) -> None:
    make_png(tmp_path / "lists" / "imgs" / "a.png")
    make_png(tmp_path / "lists" / "imgs" / "b.jpg")
    absolute = make_png(tmp_path / "elsewhere" / "c.png")
    csv_file = write(
        tmp_path / "lists" / "data.csv",
        "Image,caption,label,split,id,notes\n"
        "imgs/a.png,a red  square,red;shape,train,,x\n"
        '\n'
        'imgs/b.jpg,"blue, small",blue,TEST,bee,\n'
        "imgs/a.png,another view of a,,,,\n"
        f"{absolute},third,red,dev,,\n",
    )

    dataset = read_csv(csv_file)

    assert dataset.name == "csv" and dataset.source == str(csv_file)
    assert [item.id for item in dataset] == ["imgs/a", "bee", str(absolute.with_suffix(""))]
    assert dataset.items[0].texts == ("a red square", "another view of a")
    assert dataset.items[1].texts == ("blue, small",)
    assert dataset.label_names == ["blue", "red", "shape"]
    assert [item.labels for item in dataset] == [(1, 2), (0,), (1,)]
    assert [item.split for item in dataset] == ["train", "test", "val"]
    assert [item.image for item in dataset] == [
        tmp_path / "lists" / "imgs" / "a.png",
        tmp_path / "lists" / "imgs" / "b.jpg",
        absolute,
    ]


def test_read_csv_without_split_column_is_stratified(tmp_path: Path) -> None:
    rows = []
    for index in range(10):
        make_png(tmp_path / f"i{index}.png")
        rows.append(f"i{index}.png,caption {index},{'odd' if index % 2 else 'even'}")
    csv_file = write(tmp_path / "d.csv", "image,caption,label\n" + "\n".join(rows) + "\n")

    dataset = read_csv(csv_file)

    ids = [f"i{index}" for index in range(10)]
    strata = ["odd" if index % 2 else "even" for index in range(10)]
    expected = stratified_split(ids, strata=strata, fractions=(0.7, 0.1, 0.2))
    assert {item.id: item.split for item in dataset} == expected
    assert dataset.split_counts() == {"train": 8, "test": 2}
    assert dataset.label_names == ["even", "odd"] and dataset.items[3].labels == (1,)


def test_read_csv_missing_column_names_column_and_header(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "d.csv", "image,text\na.png,hello\n")
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    message = str(caught.value)
    assert message.startswith(f"{csv_file}:1:")
    assert "'caption'" in message and "header found: image, text" in message


def test_read_csv_row_with_missing_field_names_line(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    csv_file = write(tmp_path / "d.csv", "image,caption\na.png,ok\na.png\n")
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    assert f"{csv_file}:3: expected 2 fields, found 1" in str(caught.value)


def test_read_csv_missing_image_names_list_line_and_path(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "d.csv", "image,caption\nmissing/nope.png,hello\n")
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    message = str(caught.value)
    assert f"{csv_file}:2:" in message and str(tmp_path / "missing" / "nope.png") in message


def test_read_csv_empty_caption_names_line(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    csv_file = write(tmp_path / "d.csv", 'image,caption\na.png,"   "\n')
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    assert str(caught.value).startswith(f"{csv_file}:2: empty caption")


def test_read_csv_bad_split_names_line_and_field(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    csv_file = write(tmp_path / "d.csv", "image,caption,split\na.png,hi,holdout\n")
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    message = str(caught.value)
    assert f"{csv_file}:2:" in message and "'holdout'" in message and "'split'" in message


def test_read_csv_duplicate_id_for_other_image(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    make_png(tmp_path / "b.png")
    csv_file = write(tmp_path / "d.csv", "image,caption,id\na.png,one,x\nb.png,two,x\n")
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    assert f"{csv_file}:3: duplicate item id 'x': line 2" in str(caught.value)


def test_read_csv_non_utf8_names_line(tmp_path: Path) -> None:
    csv_file = tmp_path / "d.csv"
    csv_file.write_bytes("image,caption\na.png,ok\nb.png,na\xefve\n".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        read_csv(csv_file)
    assert f"{csv_file}:3: not valid UTF-8" in str(caught.value)


def test_read_csv_skip_bad_counts_each_bad_row(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    csv_file = write(tmp_path / "d.csv", "image,caption\na.png,good\nnope.png,x\na.png,\na.png\na.png,also good\n")

    dataset = read_csv(csv_file, skip_bad=True)

    assert len(dataset) == 1 and dataset.items[0].texts == ("good", "also good")
    assert len(dataset.skipped) == 3


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


def test_read_jsonl_reads_every_field(tmp_path: Path) -> None:
    make_png(tmp_path / "imgs" / "a.png")
    make_png(tmp_path / "imgs" / "b.png")
    lines = [
        {"image": "imgs/a.png", "captions": ["first  one", "second"], "labels": ["x", "w"], "split": "train"},
        {"image": "imgs/b.png", "caption": "only", "label": 7, "split": "validation", "id": "bee"},
    ]
    jsonl = write(tmp_path / "d.jsonl", json.dumps(lines[0]) + "\n\n  \n" + json.dumps(lines[1]) + "\n")

    dataset = read_jsonl(jsonl)

    assert dataset.name == "jsonl" and dataset.source == str(jsonl)
    assert [item.id for item in dataset] == ["imgs/a", "bee"]
    assert [item.texts for item in dataset] == [("first one", "second"), ("only",)]
    assert dataset.label_names == ["7", "w", "x"]
    assert [item.labels for item in dataset] == [(1, 2), (0,)]
    assert [item.split for item in dataset] == ["train", "val"]
    assert [item.image for item in dataset] == [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png"]


def test_read_jsonl_invalid_json_names_line(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    jsonl = write(tmp_path / "d.jsonl", '{"image": "a.png", "caption": "ok"}\n\n{"image": "a.png", caption}\n')
    with pytest.raises(DataError) as caught:
        read_jsonl(jsonl)
    assert str(caught.value).startswith(f"{jsonl}:3: invalid JSON")


def test_read_jsonl_split_on_some_lines_only(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    make_png(tmp_path / "b.png")
    jsonl = write(
        tmp_path / "d.jsonl",
        '{"image": "a.png", "caption": "one", "split": "test"}\n{"image": "b.png", "caption": "two"}\n',
    )
    with pytest.raises(DataError) as caught:
        read_jsonl(jsonl)
    assert str(caught.value).startswith(f"{jsonl}:2: no split")


def test_read_jsonl_skip_bad_counts(tmp_path: Path) -> None:
    make_png(tmp_path / "a.png")
    jsonl = write(
        tmp_path / "d.jsonl",
        '{"image": "a.png", "captions": ["kept"]}\n'
        "not json\n"
        '{"image": "gone.png", "caption": "x"}\n'
        '{"image": "a.png", "captions": ["ok", ""], "id": "other"}\n'
        '{"image": "a.png", "caption": "same id again"}\n',
    )

    dataset = read_jsonl(jsonl, skip_bad=True)

    assert [(item.id, item.texts) for item in dataset] == [("a", ("kept",))]
    assert len(dataset.skipped) == 4


# ---------------------------------------------------------------------------------------------
# Karpathy splits
# ---------------------------------------------------------------------------------------------


def karpathy_file(folder: Path, images: list[dict], dataset: str = "coco") -> Path:
    return write(folder / f"dataset_{dataset}.json", json.dumps({"images": images, "dataset": dataset}))


def sentences(*texts: str) -> list[dict]:
    return [{"raw": text, "tokens": text.lower().split()} for text in texts]


def entry(filename: str, split: str, *texts: str, filepath: str | None = None) -> dict:
    """One image entry of a Karpathy split file."""
    fields = {"filename": filename, "split": split, "sentences": sentences(*texts), "imgid": 0}
    return fields | ({"filepath": filepath} if filepath else {})


def test_read_karpathy_coco(tmp_path: Path) -> None:
    make_png(tmp_path / "val2014" / "COCO_val2014_1.jpg")
    make_png(tmp_path / "train2014" / "COCO_train2014_2.jpg")
    make_png(tmp_path / "val2014" / "COCO_val2014_3.jpg")
    six = [f"Caption  number {n}. " for n in range(6)]
    path = karpathy_file(
        tmp_path,
        [
            entry("COCO_val2014_1.jpg", "test", *six, filepath="val2014"),
            entry("COCO_train2014_2.jpg", "train", "a", "b", filepath="train2014"),
            entry("COCO_val2014_3.jpg", "restval", "c", filepath="val2014"),
        ],
    )

    dataset = read_karpathy(path)

    assert dataset.name == "karpathy-coco" and dataset.source == str(path)
    assert [item.id for item in dataset] == [
        "val2014/COCO_val2014_1",
        "train2014/COCO_train2014_2",
        "val2014/COCO_val2014_3",
    ]
    assert dataset.items[0].texts == tuple(f"Caption number {n}." for n in range(6))
    assert [item.split for item in dataset] == ["test", "train", "train"]
    assert dataset.items[1].image == tmp_path / "train2014" / "COCO_train2014_2.jpg"
    assert dataset.label_names == [] and all(item.labels == () for item in dataset)


def test_read_karpathy_image_root_without_filepath(tmp_path: Path) -> None:
    make_png(tmp_path / "flickr_images" / "1000.jpg")
    path = karpathy_file(
        tmp_path / "splits",
        [entry("1000.jpg", "val", "dog runs", "a dog")],
        dataset="flickr30k",
    )

    dataset = read_karpathy(path, image_root=tmp_path / "flickr_images")

    assert dataset.name == "karpathy-flickr30k"
    assert [(item.id, item.image, item.split, item.texts) for item in dataset] == [
        ("1000", tmp_path / "flickr_images" / "1000.jpg", "val", ("dog runs", "a dog"))
    ]


def test_read_karpathy_missing_image_names_index_and_filename(tmp_path: Path) -> None:
    make_png(tmp_path / "1.jpg")
    path = karpathy_file(
        tmp_path,
        [entry("1.jpg", "train", "x"), entry("2.jpg", "test", "y")],
        dataset="flickr8k",
    )
    with pytest.raises(DataError) as caught:
        read_karpathy(path)
    message = str(caught.value)
    assert message.startswith(f"{path} images[1]: image not found")
    assert "'2.jpg'" in message

    dataset = read_karpathy(path, skip_bad=True)
    assert [item.id for item in dataset] == ["1"] and len(dataset.skipped) == 1


def test_read_karpathy_empty_caption_and_bad_split(tmp_path: Path) -> None:
    make_png(tmp_path / "1.jpg")
    path = karpathy_file(tmp_path, [entry("1.jpg", "train", "ok", "  ")], "f8k")
    with pytest.raises(DataError) as caught:
        read_karpathy(path)
    assert str(caught.value).startswith(f"{path} images[0].sentences[1]: empty caption")

    path = karpathy_file(tmp_path, [entry("1.jpg", "holdout", "ok")], "f8k")
    with pytest.raises(DataError, match=r"images\[0\]: bad value 'holdout' in field 'split'"):
        read_karpathy(path)


# ---------------------------------------------------------------------------------------------
# Precomputed feature arrays
# ---------------------------------------------------------------------------------------------


def save_split(
    folder: Path, split: str, n: int, labels: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(n, 4)`` image and ``(n, 3)`` text features (and labels) as .npy files."""
    rng = np.random.default_rng(seed)
    images, texts = rng.normal(size=(n, 4)), rng.normal(size=(n, 3)).astype(np.float32)
    np.save(folder / f"{split}_images.npy", images)
    np.save(folder / f"{split}_texts.npy", texts)
    if labels is not None:
        np.save(folder / f"{split}_labels.npy", labels)
    return images, texts


def test_read_feature_arrays_npy_folder(tmp_path: Path) -> None:
    train = save_split(tmp_path, "train", 3, np.array([0, 2, 2]), seed=0)
    val = save_split(tmp_path, "val", 1, np.array([1]), seed=1)
    test = save_split(tmp_path, "test", 2, np.array([3, 0]), seed=2)

    dataset = read_feature_arrays(tmp_path)

    assert dataset.name == "precomputed" and dataset.source == str(tmp_path)
    assert [item.id for item in dataset] == ["train-0", "train-1", "train-2", "val-0", "test-0", "test-1"]
    assert [item.split for item in dataset] == ["train"] * 3 + ["val", "test", "test"]
    assert [item.labels for item in dataset] == [(0,), (2,), (2,), (1,), (3,), (0,)]
    assert dataset.label_names == ["0", "1", "2", "3"]
    assert dataset.items[4].image == FeatureRow("image", 4) and dataset.items[4].texts == (FeatureRow("text", 4),)
    assert dataset.arrays["image"].dtype == np.float32 and dataset.arrays["image"].shape == (6, 4)
    expected_images = np.concatenate([train[0], val[0], test[0]]).astype(np.float32)
    np.testing.assert_array_equal(dataset.arrays["image"], expected_images)
    np.testing.assert_array_equal(dataset.arrays["text"][3:], np.concatenate([val[1], test[1]]))
    assert dataset.image_kind == "features" and dataset.text_kind == "features"


def test_read_feature_arrays_mat_multi_hot_and_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    multi = tmp_path / "multi.mat"
    scipy.io.savemat(
        multi,
        {
            "I_tr": rng.normal(size=(2, 5)), "T_tr": rng.normal(size=(2, 2)), "L_tr": np.array([[1, 0, 1], [0, 1, 0]]),
            "I_te": rng.normal(size=(1, 5)), "T_te": rng.normal(size=(1, 2)), "L_te": np.array([[0, 0, 1]]),
        },
    )
    dataset = read_feature_arrays(multi)
    assert [(item.id, item.split, item.labels) for item in dataset] == [
        ("train-0", "train", (0, 2)), ("train-1", "train", (1,)), ("test-0", "test", (2,))
    ]
    assert dataset.label_names == ["0", "1", "2"]
    assert dataset.arrays["image"].shape == (3, 5) and dataset.arrays["text"].shape == (3, 2)

    ids = tmp_path / "ids.mat"  # 1-based class ids are kept as given; savemat stores them as (1, n)
    scipy.io.savemat(
        ids,
        {
            "I_tr": rng.normal(size=(3, 5)), "T_tr": rng.normal(size=(3, 2)), "L_tr": np.array([1, 2, 3]),
            "I_te": rng.normal(size=(2, 5)), "T_te": rng.normal(size=(2, 2)), "L_te": np.array([3, 1]),
        },
    )
    dataset = read_feature_arrays(ids)
    assert [item.labels for item in dataset] == [(1,), (2,), (3,), (3,), (1,)]
    assert dataset.label_names == ["0", "1", "2", "3"]


def test_read_feature_arrays_row_counts_disagree(tmp_path: Path) -> None:
    save_split(tmp_path, "train", 3, np.array([0, 1, 1]), seed=0)
    save_split(tmp_path, "test", 2, np.array([0, 1]), seed=1)
    np.save(tmp_path / "test_texts.npy", np.zeros((4, 3)))
    with pytest.raises(DataError) as caught:
        read_feature_arrays(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'test_texts.npy'}: test_images.npy has 2 rows but test_texts.npy has 4")
    assert "matching rows" in message


def test_read_feature_arrays_mat_label_rows_disagree(tmp_path: Path) -> None:
    mat = tmp_path / "f.mat"
    scipy.io.savemat(
        mat,
        {"I_tr": np.ones((3, 2)), "T_tr": np.ones((3, 2)), "L_tr": np.array([[0, 1], [1, 0]]),
         "I_te": np.ones((1, 2)), "T_te": np.ones((1, 2)), "L_te": np.array([[1, 0]])},
    )
    with pytest.raises(DataError, match=r"f\.mat: I_tr has 3 rows but L_tr has 2"):
        read_feature_arrays(mat)


def test_read_feature_arrays_non_finite_names_file_and_row(tmp_path: Path) -> None:
    save_split(tmp_path, "train", 3, np.array([0, 1, 1]), seed=0)
    save_split(tmp_path, "test", 2, np.array([0, 1]), seed=1)
    texts = np.load(tmp_path / "train_texts.npy")
    texts[1, 2] = np.nan
    texts[2, 0] = np.inf
    np.save(tmp_path / "train_texts.npy", texts)
    with pytest.raises(DataError) as caught:
        read_feature_arrays(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'train_texts.npy'}: non-finite value (NaN or inf) in row 1")

    dataset = read_feature_arrays(tmp_path, skip_bad=True)
    assert [item.id for item in dataset] == ["train-0", "test-0", "test-1"]
    assert [item.image for item in dataset] == [FeatureRow("image", i) for i in range(3)]
    assert dataset.arrays["text"].shape == (3, 3) and len(dataset.skipped) == 2


# ---------------------------------------------------------------------------------------------
# SCAN precomputed
# ---------------------------------------------------------------------------------------------


def test_read_scan_precomputed(tmp_path: Path) -> None:
    train = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    np.save(tmp_path / "train_ims.npy", train)
    write(tmp_path / "train_caps.txt", "".join(f"train cap {n}\n" for n in range(10)) + "\n")
    np.save(tmp_path / "dev_ims.npy", np.ones((1, 3, 4)))
    write(tmp_path / "dev_caps.txt", "".join(f"dev  cap {n}\n" for n in range(5)))
    np.save(tmp_path / "testall_ims.npy", np.zeros((1, 3, 4)))
    write(tmp_path / "testall_caps.txt", "".join(f"test cap {n}\n" for n in range(5)))

    dataset = read_scan_precomputed(tmp_path)

    assert dataset.name == "scan-precomputed" and dataset.source == str(tmp_path)
    assert [item.id for item in dataset] == ["train-0", "train-1", "val-0", "test-0"]
    assert [item.split for item in dataset] == ["train", "train", "val", "test"]
    assert dataset.items[1].texts == tuple(f"train cap {n}" for n in range(5, 10))
    assert dataset.items[2].texts[0] == "dev cap 0"
    assert [item.image for item in dataset] == [FeatureRow("image", i) for i in range(4)]
    # The rows stay in their files, in the files' dtype (float16 for SCAN's; float64 here); readers make
    # float32 copies per batch.
    assert dataset.arrays["image"].shape == (4, 3, 4) and dataset.arrays["image"].dtype == np.float64
    np.testing.assert_array_equal(dataset.arrays["image"][:2], train)
    np.testing.assert_array_equal(dataset.arrays["image"][np.array([3, 0, 2])], [np.zeros((3, 4)), train[0],
                                                                                 np.ones((3, 4))])
    assert dataset.image_kind == "features" and dataset.text_kind == "raw"


def test_read_scan_precomputed_infers_captions_per_image(tmp_path: Path) -> None:
    np.save(tmp_path / "test_ims.npy", np.ones((2, 6), dtype=np.float32))
    write(tmp_path / "test_caps.txt", "a\nb\nc\nd\n")
    dataset = read_scan_precomputed(tmp_path)
    assert [item.texts for item in dataset] == [("a", "b"), ("c", "d")]
    assert dataset.arrays["image"].shape == (2, 6)


def test_read_scan_precomputed_captions_not_a_multiple(tmp_path: Path) -> None:
    np.save(tmp_path / "train_ims.npy", np.ones((3, 2, 4)))
    write(tmp_path / "train_caps.txt", "".join(f"c{n}\n" for n in range(7)))
    with pytest.raises(DataError) as caught:
        read_scan_precomputed(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'train_caps.txt'}: 7 captions in train_caps.txt")
    assert "3 images in train_ims.npy" in message


def test_read_scan_precomputed_empty_caption_line(tmp_path: Path) -> None:
    np.save(tmp_path / "train_ims.npy", np.ones((2, 2, 4)))
    write(tmp_path / "train_caps.txt", "a\nb\n  \nd\ne\nf\ng\nh\ni\nj\n")
    with pytest.raises(DataError) as caught:
        read_scan_precomputed(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'train_caps.txt'}:3: empty caption")

    dataset = read_scan_precomputed(tmp_path, skip_bad=True)
    assert dataset.items[0].texts == ("a", "b", "d", "e") and len(dataset.items[1].texts) == 5
    assert len(dataset.skipped) == 1
