import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from xmodal.cli import main
from xmodal.data.wikipedia import read_wikipedia, read_wikipedia_features
from xmodal.errors import DataError


def test_published_features_official_split(wikipedia_dir):
    dataset = read_wikipedia_features(wikipedia_dir)
    assert dataset.split_counts() == {"train": 2173, "test": 693}
    assert dataset.label_names[:2] == ["art", "biology"] and len(dataset.label_names) == 10
    assert dataset.arrays["image"].shape == (2866, 128) and dataset.arrays["text"].shape == (2866, 10)
    first = dataset.items[0]
    assert first.id == "b3150b0c281960b6a6d33407824fd40a-3" and first.labels == (5,)  # category 6, 1-based
    raw = scipy.io.loadmat(wikipedia_dir / "raw_features.mat")
    test_row = dataset.split("test")[0].image.row
    np.testing.assert_allclose(dataset.arrays["image"][test_row], raw["I_te"][0], rtol=1e-6)


def test_cli_info_prints_split_sizes_and_categories(wikipedia_dir, capsys):
    assert main(["data", "info", "wikipedia-features", "--path", str(wikipedia_dir)]) == 0
    out = capsys.readouterr().out
    assert "2173" in out and "693" in out and "10 labels" in out and "warfare" in out


def _copy_features(wikipedia_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "wiki"
    shutil.copytree(wikipedia_dir, copy)
    return copy


def test_row_count_mismatch_is_an_error(wikipedia_dir, tmp_path):
    copy = _copy_features(wikipedia_dir, tmp_path)
    mat = scipy.io.loadmat(copy / "raw_features.mat")
    mat["I_te"] = mat["I_te"][:-1]
    scipy.io.savemat(copy / "raw_features.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DataError, match=r"I_te has 692 rows but testset_txt_img_cat.list has 693 lines"):
        read_wikipedia_features(copy)


def test_category_out_of_range_and_missing_field_name_the_line(wikipedia_dir, tmp_path):
    copy = _copy_features(wikipedia_dir, tmp_path)
    lines = (copy / "testset_txt_img_cat.list").read_text().splitlines()
    bad_category = lines[1].rsplit("\t", 1)[0] + "\t11"
    (copy / "testset_txt_img_cat.list").write_text("\n".join([lines[0], bad_category] + lines[2:]))
    with pytest.raises(DataError, match=r"testset_txt_img_cat.list:2: category '11' is not an integer in 1..10"):
        read_wikipedia_features(copy)
    (copy / "testset_txt_img_cat.list").write_text("\n".join([lines[0], "only-one-field"] + lines[2:]))
    with pytest.raises(DataError, match=r"testset_txt_img_cat.list:2: expected 3 fields"):
        read_wikipedia_features(copy)


def make_raw_layout(root: Path) -> Path:
    """A tiny dataset in the raw Wikipedia layout, texts in several scripts."""
    (root / "texts").mkdir(parents=True)
    (root / "categories.list").write_text("art\nmusic\n")
    rows = {"train": [("t1", "i1", 1), ("t2", "i2", 2)], "test": [("t3", "i3", 2)]}
    texts = {"t1": "<document><text>Peinture à l'huile</text></document>", "t2": "Музыка и песни",
             "t3": "<document><text>音楽と歌</text></document>"}
    for split, entries in rows.items():
        name = "trainset_txt_img_cat.list" if split == "train" else "testset_txt_img_cat.list"
        (root / name).write_text("".join(f"{t}\t{i}\t{c}\n" for t, i, c in entries))
        for text_id, image_id, category in entries:
            suffix = ".txt" if text_id == "t2" else ".xml"
            (root / "texts" / f"{text_id}{suffix}").write_text(texts[text_id], encoding="utf-8")
            folder = root / "images" / ["art", "music"][category - 1]
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (category * 50, 0, 0)).save(folder / f"{image_id}.jpg")
    return root


def test_raw_layout_reads_any_script(tmp_path):
    dataset = read_wikipedia(make_raw_layout(tmp_path / "raw"))
    assert [item.texts[0] for item in dataset] == ["Peinture à l'huile", "Музыка и песни", "音楽と歌"]
    assert [item.labels for item in dataset] == [(0,), (1,), (1,)]
    assert dataset.split_counts() == {"train": 2, "test": 1}
    assert dataset.items[2].image == tmp_path / "raw" / "images" / "music" / "i3.jpg"


def test_raw_layout_bad_inputs(tmp_path):
    root = make_raw_layout(tmp_path / "raw")
    (root / "texts" / "t2.txt").write_bytes("Musique é".encode("latin-1"))
    with pytest.raises(DataError, match=r"t2\.txt:1: not valid UTF-8"):
        read_wikipedia(root)
    (root / "images" / "art" / "i1.jpg").unlink()
    dataset = read_wikipedia(root, skip_bad=True)
    assert dataset.skipped == 2 and [item.id for item in dataset] == ["t3"]


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    root = make_raw_layout(tmp_path / "raw")
    (root / "images" / "art" / "i1.jpg").unlink()
    assert main(["data", "info", "wikipedia", "--path", str(root)]) == 2
    err = capsys.readouterr().err
    assert "trainset_txt_img_cat.list:1" in err and "i1.jpg not found" in err and "Traceback" not in err
