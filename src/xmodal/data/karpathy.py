"""Reader for Karpathy's split files (``dataset_coco.json``, ``dataset_flickr30k.json``,
``dataset_flickr8k.json``), the splits every image-text retrieval paper reports on.

The file looks like::

    {"dataset": "coco",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
                 "split": "test", "sentences": [{"raw": "A man ..."}, ...], "imgid": 0, ...}]}

``filepath`` is only present for COCO. ``restval`` images count as ``train``, the standard
practice in VSE++ and SCAN (113,287 COCO training images). Most images have 5 captions, but a
few COCO images have 6 or 7; all are kept, so protocols that need exactly 5 per image must
trim them. The files carry no labels.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from xmodal.data.build import SKIP_HINT, Record, build_dataset, require_file
from xmodal.data.records import Dataset, Split
from xmodal.data.registry import DatasetSpec, register_dataset
from xmodal.data.texts import read_utf8, require_caption
from xmodal.errors import DataError, SkipReport

KARPATHY_SPLITS: dict[str, Split] = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def read_karpathy(path: Path, *, image_root: Path | None = None, skip_bad: bool = False) -> Dataset:
    """Items of a Karpathy split file; images are ``image_root / filepath / filename``.

    ``image_root`` defaults to the folder that holds the JSON file. Item ids are
    ``filepath/stem`` (``val2014/COCO_val2014_000000391895``) or the bare stem without a
    ``filepath``. The dataset is named ``karpathy-<dataset>`` after the file's ``dataset`` field.
    """
    require_file(path)
    report = SkipReport(skip_bad)
    content = _load_json(path)
    entries = content.get("images")
    if not isinstance(entries, list):
        raise DataError(path, "no 'images' list", "pass a Karpathy split file such as dataset_coco.json")
    root = Path(image_root).absolute() if image_root is not None else path.absolute().parent
    records = []
    for index, entry in enumerate(entries):
        try:
            records.append(_image_record(path, root, index, entry))
        except DataError as error:
            report.handle(error)
    return build_dataset(f"karpathy-{_dataset_name(path, content)}", path, records, report)


def _load_json(path: Path) -> dict:
    """The file's top-level object; invalid JSON is an error naming the line."""
    try:
        content = json.loads(read_utf8(path, whole_list=True))
    except json.JSONDecodeError as error:
        raise DataError(
            path,
            f"invalid JSON: {error.msg} (column {error.colno})",
            "re-download the file",
            line=error.lineno,
        ) from None
    if not isinstance(content, dict):
        raise DataError(
            path,
            "expected a JSON object at the top",
            "pass a Karpathy split file such as dataset_coco.json",
        )
    return content


def _dataset_name(path: Path, content: dict) -> str:
    """The ``dataset`` field, else the file name without ``dataset_`` (``dataset_f8k.json`` -> ``f8k``)."""
    name = content.get("dataset")
    return str(name) if name else path.stem.removeprefix("dataset_")


def _image_record(path: Path, root: Path, index: int, entry: object) -> Record:
    where = f"{path} images[{index}]"
    if not isinstance(entry, dict):
        raise DataError(where, "not a JSON object", f"every image entry must be an object, {SKIP_HINT}")
    filename = entry.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise DataError(where, "no 'filename'", f"every image entry needs a filename, {SKIP_HINT}")
    filename = filename.strip()
    filepath = str(entry.get("filepath") or "").strip()
    relative = PurePosixPath(filepath, filename) if filepath else PurePosixPath(filename)
    image = root / relative
    if not image.is_file():
        raise DataError(
            where,
            f"image not found: {image} (filename {filename!r})",
            f"point image_root at the folder holding the images, {SKIP_HINT}",
        )
    return Record(
        id=relative.with_suffix("").as_posix(),
        image=image,
        captions=_captions(where, entry.get("sentences")),
        split=_split(where, entry.get("split")),
        where=where,
    )


def _split(where: str, value: object) -> Split:
    if not isinstance(value, str) or value not in KARPATHY_SPLITS:
        raise DataError(
            where,
            f"bad value {value!r} in field 'split'",
            f"use train, restval, val or test, {SKIP_HINT}",
        )
    return KARPATHY_SPLITS[value]


def _captions(where: str, sentences: object) -> list[str]:
    """The ``raw`` text of every sentence, normalised; an empty one is an error."""
    if not isinstance(sentences, list) or not sentences:
        raise DataError(where, "no 'sentences'", f"every image entry needs a list of sentences, {SKIP_HINT}")
    captions = []
    for number, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str):
            raise DataError(where, f"sentences[{number}] has no 'raw' text", f"add the caption, {SKIP_HINT}")
        captions.append(require_caption(raw, f"{where}.sentences[{number}]"))
    return captions


register_dataset(DatasetSpec("karpathy", "dataset_{coco,flickr30k,flickr8k}.json beside the images (or image_root)",
                             read_karpathy, options=("image_root",)))
