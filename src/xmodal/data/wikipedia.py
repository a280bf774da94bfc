"""The Wikipedia benchmark layout (Rasiwasia et al., ACM MM 2010), raw or as published features.

Both readers share the list files: ``trainset_txt_img_cat.list`` and ``testset_txt_img_cat.list``
(one ``<text id> <image id> <1-based category>`` per line, tab or space separated) and
``categories.list`` (line k names category k). The official split has no validation part;
the trainer carves one from train when it needs one.

Three datasets come from it: ``wikipedia`` (raw images and texts), ``wikipedia-features`` (the
published 128-d SIFT and 10-d LDA arrays) and ``wikipedia-texts`` (the SIFT arrays for images,
the articles of ``texts/`` as raw texts for the text encoders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from xmodal.data.records import Dataset, FeatureRow, Item, Split, TextSource
from xmodal.data.registry import DatasetSpec, register_dataset
from xmodal.data.texts import read_document, read_utf8
from xmodal.errors import DataError, SkipReport

LIST_FILES: dict[Split, str] = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
FEATURE_KEYS: dict[Split, tuple[str, str]] = {"train": ("I_tr", "T_tr"), "test": ("I_te", "T_te")}


@dataclass(frozen=True)
class ListEntry:
    text_id: str
    image_id: str
    category: int  # 0-based
    split: Split
    line: int


def read_categories(root: Path) -> list[str]:
    path = root / "categories.list"
    names = [line.strip() for line in read_utf8(path, whole_list=True).splitlines() if line.strip()]
    if not names:
        raise DataError(path, "no category names", "write one category name per line")
    return names


def read_list(root: Path, split: Split, n_categories: int, report: SkipReport) -> list[ListEntry]:
    """Parse one list file; malformed lines raise, or are counted with ``--skip-bad``."""
    path = root / LIST_FILES[split]
    entries = []
    for number, line in enumerate(read_utf8(path, whole_list=True).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            report.handle(DataError(path, f"expected 3 fields (text id, image id, category), found {len(fields)}",
                                    "fix the line or pass --skip-bad", line=number))
            continue
        text_id, image_id, category = fields
        if not category.isdigit() or not 1 <= int(category) <= n_categories:
            report.handle(DataError(path, f"category {category!r} is not an integer in 1..{n_categories}",
                                    "categories are 1-based line numbers of categories.list", line=number))
            continue
        entries.append(ListEntry(text_id, image_id, int(category) - 1, split, number))
    return entries


def read_wikipedia_features(path: Path, *, texts: bool = False, skip_bad: bool = False) -> Dataset:
    """The published features: ``raw_features.mat`` with 128-d SIFT BoW images, 10-d LDA texts.

    Rows of ``I_tr``/``T_tr`` follow the train list, ``I_te``/``T_te`` the test list; a row count
    that disagrees with its list is an error (it would silently misalign every pair).

    With ``texts`` (the ``wikipedia-texts`` dataset) each item's text is its article,
    ``texts/<text id>.xml`` (or ``.txt``) beside the list files, instead of the LDA row: images
    stay feature rows (``image_kind == "features"``), texts become raw (``text_kind == "raw"``)
    for MiniLM or the word models. A missing or empty article is an error naming the list line,
    or, with ``skip_bad``, leaves that pair out (the other items keep their feature rows).
    ``texts`` is not switched on by the folder's presence: the published copies ship ``texts/``
    beside the features, and ``wikipedia-features`` must keep meaning the LDA vectors.
    """
    root = Path(path)
    report = SkipReport(skip_bad)
    categories = read_categories(root)
    mat_path = root / "raw_features.mat"
    if not mat_path.is_file():
        raise DataError(mat_path, "feature file not found", "point --path at the folder holding raw_features.mat")
    if texts and not (root / "texts").is_dir():
        raise DataError(root / "texts", "folder of articles not found",
                        "put texts/<text id>.xml beside the list files, or use wikipedia-features for the LDA vectors")
    try:
        mat = scipy.io.loadmat(mat_path)
    except Exception as error:  # scipy raises several types for corrupt files
        raise DataError(mat_path, f"unreadable .mat file ({error})", "replace the file") from None

    items: list[Item] = []
    image_blocks, text_blocks = [], []
    for split, (image_key, text_key) in FEATURE_KEYS.items():
        # Row alignment is positional, so a bad line cannot be skipped here without shifting rows.
        entries = read_list(root, split, len(categories), SkipReport(skip_bad=False))
        for key in (image_key, text_key):
            if key not in mat:
                raise DataError(mat_path, f"missing array {key!r}", f"expected keys {sorted(FEATURE_KEYS[split])}")
            if mat[key].shape[0] != len(entries):
                raise DataError(mat_path, f"{key} has {mat[key].shape[0]} rows but {LIST_FILES[split]} has "
                                f"{len(entries)} lines", "the features and the list must come from the same release")
        offset = sum(block.shape[0] for block in image_blocks)
        for row, entry in enumerate(entries):
            text: TextSource = FeatureRow("text", offset + row)
            if texts:
                try:
                    text = read_article(root, root / LIST_FILES[split], entry)
                except DataError as error:
                    report.handle(error)
                    continue
            items.append(Item(id=entry.text_id, image=FeatureRow("image", offset + row),
                              texts=(text,), labels=(entry.category,), split=split))
        image_blocks.append(np.asarray(mat[image_key], dtype=np.float32))
        text_blocks.append(np.asarray(mat[text_key], dtype=np.float32))

    arrays = {"image": np.concatenate(image_blocks), "text": np.concatenate(text_blocks)}
    for key, array in arrays.items():
        if not np.isfinite(array).all():
            bad_row = int(np.argwhere(~np.isfinite(array))[0, 0])
            raise DataError(mat_path, f"non-finite value in the {key} features, row {bad_row}", "replace the file")
    if texts:
        del arrays["text"]  # the LDA rows are not the texts of this dataset
        if not items:
            raise DataError(root / "texts", "no usable articles", "every article was missing or empty")
    name = "wikipedia-texts" if texts else "wikipedia-features"
    return Dataset(name, items, label_names=categories, arrays=arrays, source=str(root), skipped=report.messages())


def read_wikipedia_texts(path: Path, *, skip_bad: bool = False) -> Dataset:
    """SIFT feature rows for images, the ``texts/`` articles as raw texts (see :func:`read_wikipedia_features`)."""
    return read_wikipedia_features(path, texts=True, skip_bad=skip_bad)


def read_wikipedia(path: Path, *, skip_bad: bool = False) -> Dataset:
    """The raw layout: ``texts/<text id>.xml|.txt`` and ``images/<category>/<image id>.jpg``.

    Texts may be in any language and script; they are read as UTF-8.
    """
    root = Path(path)
    report = SkipReport(skip_bad)
    categories = read_categories(root)
    items: list[Item] = []
    for split in LIST_FILES:
        list_path = root / LIST_FILES[split]
        for entry in read_list(root, split, len(categories), report):
            try:
                items.append(_raw_item(root, list_path, entry, categories))
            except DataError as error:
                report.handle(error)
    return Dataset("wikipedia", items, label_names=categories, source=str(root), skipped=report.messages())


def _raw_item(root: Path, list_path: Path, entry: ListEntry, categories: list[str]) -> Item:
    image = root / "images" / categories[entry.category] / f"{entry.image_id}.jpg"
    if not image.is_file():
        raise DataError(list_path, f"image {image} not found", "add the image or pass --skip-bad", line=entry.line)
    text = read_article(root, list_path, entry)
    return Item(id=entry.text_id, image=image, texts=(text,), labels=(entry.category,), split=entry.split)


def read_article(root: Path, list_path: Path, entry: ListEntry) -> str:
    """The text of ``texts/<text id>.xml`` (or ``.txt``); missing or empty is a :class:`DataError`."""
    text_file = next((root / "texts" / f"{entry.text_id}{suffix}" for suffix in (".xml", ".txt")
                      if (root / "texts" / f"{entry.text_id}{suffix}").is_file()), None)
    if text_file is None:
        raise DataError(list_path, f"no texts/{entry.text_id}.xml or .txt", "add the text or pass --skip-bad",
                        line=entry.line)
    text = read_document(text_file)
    if not text:
        raise DataError(text_file, "empty text", "write the article text or pass --skip-bad")
    return text


register_dataset(DatasetSpec("wikipedia-features", "folder with raw_features.mat and the Wikipedia list files",
                             read_wikipedia_features))
register_dataset(DatasetSpec("wikipedia-texts", "the wikipedia-features folder with texts/<id>.xml: SIFT image "
                             "features, the articles as raw texts", read_wikipedia_texts))
register_dataset(DatasetSpec("wikipedia", "folder with the list files, texts/ and images/<category>/", read_wikipedia))
