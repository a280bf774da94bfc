"""What a search index holds: the images and texts of a collection, named by a spec string.

Specs (``xmodal index build RUN --collection SPEC``):

* ``split:NAME`` (``split:test``, ``split:val``, ``split:train``): that split of the run's own
  dataset; its inputs come from the run's feature cache, so nothing is encoded twice.
* a folder: its images, found recursively (hidden files skipped); a ``x.txt`` beside ``x.jpg``
  adds its lines as texts of that image, as the folder reader does, but is not required.
* ``*.csv`` / ``*.jsonl``: the collection formats of :mod:`xmodal.data.collection` (images and
  their captions).
* ``*.txt``: texts only, one per non-empty line.

Image ids are the item ids of the readers (the relative path without suffix); text ids are
``<item id>#<k>`` for the k-th caption of an item, or ``line-<n>`` for a text file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xmodal.data.collection import find_images, read_csv, read_jsonl
from xmodal.data.records import Dataset, FeatureRow, Split
from xmodal.data.texts import normalise_caption, read_utf8
from xmodal.errors import DataError, SkipReport, XmodalError

SPLIT_PREFIX = "split:"


@dataclass(frozen=True)
class Entry:
    """One image (``source`` is its file, or None for a dataset that ships features only) or text."""

    id: str
    source: str | None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Collection:
    spec: str
    images: list[Entry]
    texts: list[Entry]
    split: Split | None = None  # set when the entries are a split of the run's own dataset
    skipped: list[str] = field(default_factory=list)  # what was left out, each with why (--skip-bad, links)
    skip_bad: bool = False  # unreadable images are left out while encoding too, and listed in ``skipped``


def text_id(item_id: str, k: int) -> str:
    """The id of an item's k-th text."""
    return f"{item_id}#{k}"


def read_collection(spec: str, dataset: Dataset | Callable[[], Dataset] | None = None, *,
                    skip_bad: bool = False) -> Collection:
    """The entries a spec names; ``dataset`` is the run's own (or a function that reads it), needed
    only for ``split:NAME``, so indexing a folder never reads the training data."""
    if spec.startswith(SPLIT_PREFIX):
        return _split_collection(spec, dataset)
    path = Path(spec)
    if path.is_dir():
        return _folder_collection(path, skip_bad)
    if not path.is_file():
        raise DataError(path, "no such file or folder",
                        "give a folder of images, a .csv, .jsonl or .txt file, or split:test for the run's test split")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _text_file_collection(path)
    if suffix in (".csv", ".jsonl"):
        read = read_csv if suffix == ".csv" else read_jsonl
        dataset = read(path, skip_bad=skip_bad)
        collection = _dataset_collection(spec, dataset)
        collection.skipped, collection.skip_bad = list(dataset.skipped), skip_bad
        return collection
    raise DataError(path, f"unknown collection file type {suffix or '(none)'!r}",
                    "use a folder of images, or a .csv, .jsonl or .txt file")


def single_image(path: Path) -> Collection:
    """One image file (``xmodal index add INDEX photo.jpg``): its id is the file name without suffix."""
    path = path.absolute()
    return Collection(str(path), [Entry(path.stem, str(path))], [])


def _split_collection(spec: str, dataset: Dataset | Callable[[], Dataset] | None) -> Collection:
    name = spec[len(SPLIT_PREFIX):]
    if name not in ("train", "val", "test"):
        raise XmodalError(f"collection {spec!r}: unknown split {name!r}; choose split:train, split:val or split:test")
    if dataset is None:
        raise XmodalError(f"collection {spec!r} names a split of the run's dataset, but no dataset was given")
    if callable(dataset):
        dataset = dataset()
    collection = _dataset_collection(spec, dataset, split=name)
    collection.split = name
    return collection


def _dataset_collection(spec: str, dataset: Dataset, split: str | None = None) -> Collection:
    images, texts = [], []
    for item in dataset.items:
        if split is not None and item.split != split:
            continue
        labels = [dataset.label_names[i] for i in item.labels] if dataset.label_names else []
        source = None if isinstance(item.image, FeatureRow) else str(Path(item.image).absolute())
        meta = {"labels": labels} if labels else {}
        if item.texts and isinstance(item.texts[0], str):
            meta["caption"] = item.texts[0]  # what the image is, for a result list
        images.append(Entry(item.id, source, meta))
        for k, text in enumerate(item.texts):
            shown = text if isinstance(text, str) else None
            texts.append(Entry(text_id(item.id, k), shown, {"image": item.id}))
    if not images and not texts:
        raise XmodalError(f"collection {spec!r} has no items")
    return Collection(spec, images, texts)


def _folder_collection(root: Path, skip_bad: bool = False) -> Collection:
    root = root.absolute()
    outside: list[Path] = []
    files = find_images(root, outside)
    if not files:
        raise DataError(root, "no images found", "put image files (jpg, png, webp, ...) in the folder")
    report = SkipReport(skip_bad)
    images, texts = [], []
    for file in files:
        item_id = file.relative_to(root).with_suffix("").as_posix()
        images.append(Entry(item_id, str(file)))
        sidecar = file.with_suffix(".txt")
        if sidecar.is_file():
            try:
                lines = [normalise_caption(line) for line in read_utf8(sidecar).splitlines() if line.strip()]
            except DataError as error:
                report.handle(error)  # raises unless --skip-bad: then the image is indexed without its texts
                continue
            texts.extend(Entry(text_id(item_id, k), line, {"image": item_id}) for k, line in enumerate(lines))
    skipped = [f"{link.relative_to(root)}: a symlink that leads outside the folder, not followed" for link in outside]
    return Collection(str(root), images, texts, skipped=skipped + report.messages(), skip_bad=skip_bad)


def _text_file_collection(path: Path) -> Collection:
    texts = [Entry(f"line-{number}", normalise_caption(line))
             for number, line in enumerate(read_utf8(path, whole_list=True).splitlines(), start=1) if line.strip()]
    if not texts:
        raise DataError(path, "no texts", "write one text per line")
    return Collection(str(path.absolute()), [], texts)
