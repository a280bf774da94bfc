import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from xmodal.cli import main
from xmodal.data.wikipedia import read_wikipedia, read_wikipedia_features, read_wikipedia_texts
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
    assert len(dataset.skipped) == 2 and [item.id for item in dataset] == ["t3"]


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    root = make_raw_layout(tmp_path / "raw")
    (root / "images" / "art" / "i1.jpg").unlink()
    assert main(["data", "info", "wikipedia", "--path", str(root)]) == 2
    err = capsys.readouterr().err
    assert "trainset_txt_img_cat.list:1" in err and "i1.jpg not found" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# wikipedia-texts: SIFT feature rows for images, the articles in texts/ as raw texts
# ---------------------------------------------------------------------------------------------

ARTICLES = {
    "a1": '<document id="a1" name="Paint"><text>\nOil paint &amp; canvas.</text></document>',
    # Not well-formed: an HTML entity XML does not define, a bare '&', and an inline tag.
    "a2": '<document id="a2" name="Jazz"><text>Jazz &ndash; swing & bebop, <i>1940s</i> &#233;t&eacute;</text>'
          "</document>",
    "a3": "Plain text article about opera.",
    "b1": '<document id="b1"><text>Symphony orchestra</text></document>',
    "b2": '<document id="b2"><text>Sonata &mdash; piano</text></document>',
}


def make_feature_layout(root: Path, articles: dict[str, str] | None = None) -> Path:
    """A tiny wikipedia-features folder: 3 train and 2 test pairs, 4-d images, 2-d 'LDA' texts."""
    root.mkdir(parents=True)
    (root / "categories.list").write_text("art\nmusic\n")
    (root / "trainset_txt_img_cat.list").write_text("a1\ti1\t1\na2\ti2\t2\na3\ti3\t2\n")
    (root / "testset_txt_img_cat.list").write_text("b1\tj1\t2\nb2\tj2\t2\n")
    rows = np.arange(5 * 4, dtype=np.float64).reshape(5, 4)
    scipy.io.savemat(root / "raw_features.mat", {"I_tr": rows[:3], "I_te": rows[3:], "T_tr": np.ones((3, 2)),
                                                 "T_te": np.zeros((2, 2))})
    (root / "texts").mkdir()
    for text_id, content in (ARTICLES if articles is None else articles).items():
        suffix = ".txt" if not content.startswith("<") else ".xml"
        (root / "texts" / f"{text_id}{suffix}").write_text(content, encoding="utf-8")
    return root


def test_wikipedia_texts_reads_articles_with_feature_images(tmp_path):
    root = make_feature_layout(tmp_path / "wiki")
    dataset = read_wikipedia_texts(root)
    assert dataset.name == "wikipedia-texts" and dataset.image_kind == "features" and dataset.text_kind == "raw"
    assert [item.texts[0] for item in dataset] == [
        "Oil paint & canvas.",
        "Jazz – swing & bebop, 1940s été",  # malformed XML: body cut out, tags stripped, entities unescaped
        "Plain text article about opera.",
        "Symphony orchestra",
        "Sonata — piano",
    ]
    assert set(dataset.arrays) == {"image"} and dataset.arrays["image"].shape == (5, 4)
    assert [item.image.row for item in dataset] == [0, 1, 2, 3, 4]
    assert dataset.split_counts() == {"train": 3, "test": 2} and dataset.items[3].labels == (1,)
    # The same folder as wikipedia-features keeps the LDA rows: texts/ never switches it.
    features = read_wikipedia_features(root)
    assert features.text_kind == "features" and features.arrays["text"].shape == (5, 2)
    assert features.name == "wikipedia-features"


def test_wikipedia_texts_missing_article_is_an_error_or_a_counted_skip(tmp_path):
    articles = {key: value for key, value in ARTICLES.items() if key != "a2"}
    root = make_feature_layout(tmp_path / "wiki", articles)
    with pytest.raises(DataError, match=r"trainset_txt_img_cat\.list:2: no texts/a2\.xml or \.txt"):
        read_wikipedia_texts(root)
    dataset = read_wikipedia_texts(root, skip_bad=True)
    assert len(dataset.skipped) == 1 and [item.id for item in dataset] == ["a1", "a3", "b1", "b2"]
    assert [item.image.row for item in dataset] == [0, 2, 3, 4]  # the others keep their feature rows
    (root / "texts" / "b1.xml").write_text("<document><text>  </text></document>")
    assert len(read_wikipedia_texts(root, skip_bad=True).skipped) == 2
    (root / "texts" / "a2.txt").write_text("Jazz", encoding="utf-8")
    with pytest.raises(DataError, match=r"b1\.xml: empty text"):
        read_wikipedia_texts(root)


def test_wikipedia_texts_needs_the_texts_folder(tmp_path, capsys):
    root = make_feature_layout(tmp_path / "wiki", articles={})
    (root / "texts").rmdir()
    with pytest.raises(DataError, match=r"texts: folder of articles not found \(.*use wikipedia-features"):
        read_wikipedia_texts(root)
    assert len(read_wikipedia_features(root)) == 5  # wikipedia-features as before
    assert main(["data", "info", "wikipedia-texts", "--path", str(root)]) == 2
    assert "folder of articles not found" in capsys.readouterr().err


@pytest.mark.slow
def test_wikipedia_texts_feeds_models_minilm_sentences_and_sift(tmp_path):
    """A mixed dataset through ModelData as dual and gpldan take it (text_input global)."""
    from xmodal.encoders.minilm import MiniLM
    from xmodal.features.inputs import ModelData

    articles = {key: value for key, value in ARTICLES.items() if key != "a2"}
    dataset = read_wikipedia_texts(make_feature_layout(tmp_path / "wiki", articles), skip_bad=True)
    data = ModelData(dataset, "global", "global", val_fraction=0.0)
    assert data.spec.image_dim == 4 and data.spec.text_dim == 384
    test = data.split("test")
    images, texts = test.images(), test.texts()
    torch.testing.assert_close(images["features"], torch.tensor([[12.0, 13, 14, 15], [16, 17, 18, 19]]))
    expected = MiniLM().encode(["Symphony orchestra", "Sonata — piano"]).sentence
    torch.testing.assert_close(texts["features"], expected, atol=1e-5, rtol=1e-4)
    batch = data.split("train").pair_batch(np.array([1, 0]))  # a3 (feature row 2), then a1 (row 0)
    torch.testing.assert_close(batch.images["features"][:, 0], torch.tensor([8.0, 0.0]))


def test_real_wikipedia_texts_every_article_read(wikipedia_dir):
    if not (wikipedia_dir / "texts").is_dir():
        pytest.skip("../shared/data/wikipedia/texts is absent")
    dataset = read_wikipedia_texts(wikipedia_dir)
    assert len(dataset) == 2866 and len(dataset.skipped) == 0 and dataset.split_counts() == {"train": 2173, "test": 693}
    assert dataset.text_kind == "raw" and dataset.image_kind == "features"
    words = [len(item.texts[0].split()) for item in dataset]
    assert min(words) > 200  # every article, the ~900 malformed ones included, gives its text
    joined = " ".join(item.texts[0] for item in dataset)
    assert "&ndash;" not in joined and "–" in joined and "<text" not in joined
    features = read_wikipedia_features(wikipedia_dir)
    assert [item.image for item in dataset] == [item.image for item in features]  # same SIFT rows, same order
