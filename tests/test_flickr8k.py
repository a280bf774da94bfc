"""The flickr8k reader (captions.txt beside Images/), the csv reader's image root, registry options."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from xmodal.cli import main
from xmodal.data.collection import read_csv
from xmodal.data.flickr8k import read_flickr8k
from xmodal.data.registry import read_dataset
from xmodal.data.splits import stable_rank
from xmodal.errors import DataError, XmodalError

FLICKR8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k-1k"


def make_flickr(root: Path, n_images: int = 3, captions: str | None = None) -> Path:
    """A tiny Flickr8k folder: real JPEGs in Images/ and a captions.txt with 2 captions each."""
    (root / "Images").mkdir(parents=True)
    lines = ["image,caption"]
    for index in range(n_images):
        name = f"{1000 + index}_abc{index}.jpg"
        Image.new("RGB", (8, 6), (index * 60, 20, 20)).save(root / "Images" / name)
        lines += [f'{name},"A dog , running on grass ."', f"{name},Dog number {index} ."]
    (root / "captions.txt").write_text(captions if captions is not None else "\n".join(lines) + "\n",
                                       encoding="utf-8")
    return root


def test_reads_captions_beside_images(tmp_path):
    root = make_flickr(tmp_path / "f8k")
    dataset = read_flickr8k(root)
    assert dataset.name == "flickr8k" and dataset.source == str(root)
    assert [item.id for item in dataset] == ["1000_abc0", "1001_abc1", "1002_abc2"]
    assert dataset.items[1].texts == ("A dog , running on grass .", "Dog number 1 .")
    assert dataset.items[0].image == (root / "Images" / "1000_abc0.jpg").absolute()
    assert dataset.label_names == [] and not dataset.has_labels
    assert dataset.image_kind == "file" and dataset.text_kind == "raw"


def test_split_is_80_10_10_by_stable_hash_of_the_image_name(tmp_path):
    root = make_flickr(tmp_path / "f8k", n_images=20)
    dataset = read_flickr8k(root)
    assert dataset.split_counts() == {"train": 16, "val": 2, "test": 2}
    by_hash = sorted((item.id for item in dataset), key=stable_rank)
    assert [item.id for item in dataset.split("val")] == sorted(by_hash[:2])
    assert {item.id for item in dataset.split("test")} == set(by_hash[2:4])
    assert [item.split for item in read_flickr8k(root)] == [item.split for item in dataset]  # deterministic


def test_bad_input_gets_the_csv_errors(tmp_path):
    root = make_flickr(tmp_path / "f8k")
    (root / "Images" / "1001_abc1.jpg").unlink()
    with pytest.raises(DataError) as caught:
        read_flickr8k(root)
    message = str(caught.value)
    assert message.startswith(f"{root / 'captions.txt'}:4: image not found: {root.absolute() / 'Images'}")
    assert "--skip-bad" in message
    dataset = read_flickr8k(root, skip_bad=True)  # the missing image's two caption rows are skipped
    assert len(dataset.skipped) == 2 and [item.id for item in dataset] == ["1000_abc0", "1002_abc2"]

    make_flickr(tmp_path / "empty", captions='image,caption\n1000_abc0.jpg,"  "\n1001_abc1.jpg,fine\n')
    with pytest.raises(DataError, match=r"captions\.txt:2: empty caption"):
        read_flickr8k(tmp_path / "empty")
    assert len(read_flickr8k(tmp_path / "empty", skip_bad=True).skipped) == 1

    make_flickr(tmp_path / "column", captions="image,text\n1000_abc0.jpg,hello\n")
    with pytest.raises(DataError, match=r"captions\.txt:1: missing required column 'caption'"):
        read_flickr8k(tmp_path / "column")

    latin = make_flickr(tmp_path / "latin", captions="")
    (latin / "captions.txt").write_bytes("image,caption\n1000_abc0.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"captions\.txt:2: not valid UTF-8"):
        read_flickr8k(latin, skip_bad=True)  # an unreadable file is never skipped


def test_missing_pieces_of_the_layout(tmp_path):
    root = make_flickr(tmp_path / "f8k")
    (root / "captions.txt").unlink()
    with pytest.raises(DataError, match="no captions.txt in the folder"):
        read_flickr8k(root)
    other = make_flickr(tmp_path / "other")
    (other / "Images").rename(other / "Pictures")
    with pytest.raises(DataError, match="other: no Images/ folder"):
        read_flickr8k(other)
    assert main(["data", "info", "flickr8k", "--path", str(root)]) == 2


def test_csv_image_root_resolves_relative_paths_elsewhere(tmp_path):
    make_flickr(tmp_path / "f8k")
    captions = tmp_path / "lists" / "mine.csv"
    captions.parent.mkdir()
    captions.write_text("image,caption\n1000_abc0.jpg,first\n1002_abc2.jpg,second\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mine\.csv:2: image not found: .*lists/1000_abc0\.jpg"):
        read_csv(captions)  # default root: the CSV's own folder
    dataset = read_csv(captions, image_root=tmp_path / "f8k" / "Images")
    assert [item.image.name for item in dataset] == ["1000_abc0.jpg", "1002_abc2.jpg"]
    assert dataset.items[0].image.parent == (tmp_path / "f8k" / "Images").absolute()
    with pytest.raises(DataError, match=r"nowhere: image root folder not found"):
        read_csv(captions, image_root=tmp_path / "nowhere")
    # Through the registry, as the CLI and configs load datasets.
    assert len(read_dataset("csv", captions, image_root=tmp_path / "f8k" / "Images")) == 2
    with pytest.raises(DataError, match="no usable items"):
        read_dataset("csv", captions, image_root=None, skip_bad=True)  # None: the CSV's folder, as by default


def test_registry_rejects_options_a_reader_does_not_take(tmp_path):
    root = make_flickr(tmp_path / "f8k")
    with pytest.raises(XmodalError, match=r"dataset 'flickr8k' has no option image_root; it takes none"):
        read_dataset("flickr8k", root, image_root=root)
    with pytest.raises(XmodalError, match=r"dataset 'csv' has no option imageroot; it takes image_root"):
        read_dataset("csv", root / "captions.txt", imageroot=root)


def test_real_flickr8k_1k_counts_and_split():
    if not (FLICKR8K / "captions.txt").is_file():
        pytest.skip("../shared/data/flickr8k-1k is absent")
    dataset = read_flickr8k(FLICKR8K)
    assert len(dataset) == 1000 and sum(len(item.texts) for item in dataset) == 5000
    assert all(len(item.texts) == 5 for item in dataset)
    assert dataset.split_counts() == {"train": 800, "val": 100, "test": 100}
    assert any("," in text for item in dataset for text in item.texts)  # quoted captions keep their commas


def test_real_flickr8k_cli_info(capsys):
    if not (FLICKR8K / "captions.txt").is_file():
        pytest.skip("../shared/data/flickr8k-1k is absent")
    assert main(["data", "info", "flickr8k", "--path", str(FLICKR8K)]) == 0
    out = capsys.readouterr().out
    assert "items 1000  texts 5000" in out
    assert ["items", "800", "100", "100", "1000"] in [line.split() for line in out.splitlines()]
    assert "text coverage:" in out  # then what the English encoders know of the captions
