"""Readers for a user's own collection: a folder of images with caption sidecars, a CSV file or
a JSON Lines file. All three produce the same :class:`~xmodal.data.records.Dataset`.

Conventions shared by the three formats (see :mod:`xmodal.data.build`):

* Relative image paths are resolved against the folder that holds the list file (CSV/JSONL),
  or against ``image_root`` for a CSV whose images live elsewhere (``read_csv(path,
  image_root=...)``; the Flickr8k layout, ``captions.txt`` beside ``Images/``, is one).
  Images are only checked to exist; decoding them is left to feature extraction.
* Item ids default to the image path as written (relative to the list file's folder, or to the
  collection folder), in POSIX form and without its suffix. Ids must be unique.
* Labels are strings in the files; their ids follow the sorted order of the label names.
* Split values are ``train``, ``val`` or ``test`` (case-insensitive; ``dev``, ``valid`` and
  ``validation`` mean ``val``). When no record names a split, splits are assigned with
  :func:`~xmodal.data.splits.stratified_split` (70/10/20, stratified by each item's first
  label); when some records name one, every record must.
* Every bad record goes through :meth:`SkipReport.handle`: it raises by default and is counted
  in ``Dataset.skipped`` with ``skip_bad=True``. A list file that cannot be read at all
  (missing, not UTF-8, no header) always raises.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from xmodal.data.build import (
    SKIP_HINT,
    Record,
    build_dataset,
    default_id,
    parse_split,
    require_dir,
    require_file,
    resolve_image,
)
from xmodal.data.records import Dataset
from xmodal.data.registry import DatasetSpec, register_dataset
from xmodal.data.texts import normalise_caption, read_utf8, require_caption
from xmodal.errors import DataError, SkipReport

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
CSV_REQUIRED = ("image", "caption")
CSV_OPTIONAL = ("label", "split", "id")
CSV_LABEL_SEPARATOR = ";"

# ---------------------------------------------------------------------------------------------
# Folder of images with caption sidecars
# ---------------------------------------------------------------------------------------------


def read_folder(path: Path, *, skip_bad: bool = False) -> Dataset:
    """A folder of images, each ``x.jpg`` with its captions in ``x.txt`` (one per non-empty line).

    Images are found recursively (jpg, jpeg, png, webp, bmp, gif; hidden files and folders are
    ignored) and sorted by relative path. When any image sits in a sub-folder, the first-level
    sub-folder name is its label (``root/cat/a.jpg`` -> ``cat``) and images directly in the
    root are unlabelled; when all images are in the root there are no labels. The item id is
    the relative path without suffix (``cat/a``).
    """
    root = require_dir(path).absolute()
    report = SkipReport(skip_bad)
    outside: list[Path] = []
    images = find_images(root, outside)
    if outside:
        logger.warning("%s: left out %d symlink(s) that lead outside the folder (first: %s)", root, len(outside),
                       outside[0].relative_to(root))
    if not images and outside:
        raise DataError(root, f"no images inside the folder ({len(outside)} symlink(s) lead outside it and are "
                        "left out, first: " + outside[0].relative_to(root).as_posix() + ")",
                        "a collection stays inside its folder: copy the images in, or index the folder the links "
                        "lead to")
    if not images:
        raise DataError(
            root,
            "no images found",
            f"put image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder",
        )
    labelled = any(len(image.relative_to(root).parts) > 1 for image in images)
    records = []
    for image in images:
        try:
            records.append(_folder_record(root, image, labelled))
        except DataError as error:
            report.handle(error)
    return build_dataset("folder", path, records, report)


def find_images(root: Path, outside: list[Path] | None = None) -> list[Path]:
    """Image files under ``root``, skipping hidden ones, sorted by relative path.

    Symlinks are followed while they stay inside ``root`` (collections are often assembled from
    links), each real folder once, so a link back up the tree cannot loop. A link that leads out
    of ``root`` (``up -> ..``) is not followed: it is added to ``outside`` when a list is given,
    so a caller can say how many it left out.
    """
    real_root = root.resolve()
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        identity = (os.stat(folder).st_dev, os.stat(folder).st_ino)
        if identity in seen:
            subfolders[:] = []
            continue
        seen.add(identity)
        kept = []
        for name in subfolders:
            if name.startswith("."):
                continue
            if _leaves(Path(folder) / name, real_root):
                (outside if outside is not None else []).append(Path(folder) / name)
                continue
            kept.append(name)
        subfolders[:] = kept
        for name in files:
            file = Path(folder) / name
            if not name.startswith(".") and file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                if _leaves(file, real_root):
                    (outside if outside is not None else []).append(file)
                else:
                    found.append(file)
    return sorted(found, key=lambda file: file.relative_to(root).as_posix())


def _leaves(path: Path, real_root: Path) -> bool:
    """A symlink (or a path through one) whose target lies outside the collection's root."""
    return path.is_symlink() and not path.resolve().is_relative_to(real_root)


def _folder_record(root: Path, image: Path, labelled: bool) -> Record:
    relative = image.relative_to(root)
    sidecar = image.with_suffix(".txt")
    if not sidecar.is_file():
        raise DataError(
            image,
            f"no caption file {sidecar.name}",
            f"add {sidecar.name} next to the image with one caption per line, {SKIP_HINT}",
        )
    labels = [relative.parts[0]] if labelled and len(relative.parts) > 1 else []
    return Record(
        id=relative.with_suffix("").as_posix(),
        image=image,
        captions=_sidecar_captions(sidecar),
        labels=labels,
        where=str(image),
    )


def _sidecar_captions(sidecar: Path) -> list[str]:
    """Each non-empty line of a UTF-8 caption file, normalised; at least one is required."""
    captions = [normalise_caption(line) for line in read_utf8(sidecar).splitlines() if line.strip()]
    if not captions:
        raise DataError(sidecar, "empty caption file", f"write at least one caption in it, {SKIP_HINT}")
    return captions


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def read_csv(path: Path, *, image_root: Path | None = None, skip_bad: bool = False) -> Dataset:
    """A CSV file with a header: ``image`` and ``caption`` required; ``label``, ``split``, ``id``
    optional (other columns are ignored; names are case-insensitive).

    An image with several captions is written as several rows; rows with the same id (by
    default the image path without suffix) are merged into one item, captions in file order.
    Later rows may leave ``label``/``split`` blank but must not contradict the first row.
    Several labels go in one field separated by ``;``. Relative image paths are resolved
    against ``image_root`` (default: the CSV's own folder), so a caption file can sit apart
    from its images.
    """
    report = SkipReport(skip_bad)
    records = csv_records(path, report, image_root)
    return build_dataset("csv", path, records, report)


def csv_records(path: Path, report: SkipReport, image_root: Path | None = None) -> list[Record]:
    """The merged records of a CSV file (one per image), bad rows routed through ``report``."""
    require_file(path)
    base = path.absolute().parent if image_root is None else _image_root(Path(image_root))
    rows = _csv_rows(path)
    if not rows:
        raise DataError(path, "empty file, no header", "start the file with a header row: image,caption")
    header_line, header = rows[0]
    csv_header = _csv_header(path, header, header_line)
    merged: dict[str, Record] = {}
    for line, row in rows[1:]:
        try:
            _merge_row(merged, _csv_record(path, base, line, row, csv_header))
        except DataError as error:
            report.handle(error)
    return list(merged.values())


def _image_root(root: Path) -> Path:
    """The folder relative image paths are resolved against; it must exist."""
    if not root.is_dir():
        problem = "is a file, expected a folder" if root.exists() else "folder not found"
        raise DataError(root, f"image root {problem}", "pass the folder that holds the images as the image root")
    return root.absolute()


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows with the 1-based line each starts on; the file must be UTF-8."""
    text = read_utf8(path, whole_list=True).removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as error:
        raise DataError(
            path,
            f"malformed CSV: {error}",
            "check the quoting of this line",
            line=reader.line_num,
        ) from None
    return rows


@dataclass(frozen=True)
class _CsvHeader:
    """Where the known columns are, and how many fields every row must have."""

    columns: dict[str, int]
    width: int


def _csv_header(path: Path, header: list[str], line: int) -> _CsvHeader:
    """The known columns of ``header``; the required ones must be there, each column once."""
    names = [name.strip().lower() for name in header]
    for name in CSV_REQUIRED:
        if name not in names:
            raise DataError(
                path,
                f"missing required column {name!r}; header found: {', '.join(header)}",
                "the header must name the columns image,caption (optional: label, split, id)",
                line=line,
            )
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in CSV_REQUIRED + CSV_OPTIONAL:
            if name in columns:
                raise DataError(
                    path,
                    f"column {name!r} appears twice in the header",
                    "keep one of them",
                    line=line,
                )
            columns[name] = index
    return _CsvHeader(columns, len(header))


def _csv_record(path: Path, base: Path, line: int, row: list[str], header: _CsvHeader) -> Record:
    expected = header.width
    if len(row) != expected:
        raise DataError(
            path,
            f"expected {expected} fields, found {len(row)}",
            f"fill in every column and quote fields that contain commas, {SKIP_HINT}",
            line=line,
        )

    def cell(name: str) -> str:
        return row[header.columns[name]] if name in header.columns else ""

    image_field = cell("image")
    image = resolve_image(image_field, base, path, line)
    caption = require_caption(cell("caption"), path, line)
    labels = [label.strip() for label in cell("label").split(CSV_LABEL_SEPARATOR) if label.strip()]
    item_id = cell("id").strip() or default_id(image_field)
    split = parse_split(cell("split"), path, line)
    return Record(item_id, image, [caption], labels, split, where=str(path), line=line)


def _merge_row(merged: dict[str, Record], record: Record) -> None:
    """Add ``record``, or append its caption to the earlier record with the same id."""
    earlier = merged.get(record.id)
    if earlier is None:
        merged[record.id] = record
        return
    if earlier.image != record.image:
        raise DataError(
            record.where,
            f"duplicate item id {record.id!r}: line {earlier.line} used it for {earlier.image}",
            f"give each image its own id, {SKIP_HINT}",
            line=record.line,
        )
    conflicts = [
        ("label", earlier.labels, record.labels, set(earlier.labels) != set(record.labels)),
        ("split", earlier.split, record.split, earlier.split != record.split),
    ]
    for name, old, new, differ in conflicts:
        if new and old and differ:
            raise DataError(
                record.where,
                f"field {name!r} says {new!r} but line {earlier.line} said {old!r} for the same image",
                f"make the rows of one image agree, or leave the field blank after the first, {SKIP_HINT}",
                line=record.line,
            )
    earlier.labels = earlier.labels or record.labels
    earlier.split = earlier.split or record.split
    earlier.captions.extend(record.captions)


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


def read_jsonl(path: Path, *, skip_bad: bool = False) -> Dataset:
    """One JSON object per line (blank lines ignored)::

        {"image": "imgs/a.jpg", "captions": ["..", ".."], "labels": ["cat"], "split": "train", "id": "a"}

    ``caption`` (one string) may replace ``captions`` and ``label`` may replace ``labels``;
    ``image`` and a caption are required, the rest optional. Each line is one item.
    """
    require_file(path)
    report = SkipReport(skip_bad)
    base = path.absolute().parent
    records = []
    for line, text in enumerate(read_utf8(path, whole_list=True).removeprefix("\ufeff").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            records.append(_jsonl_record(path, base, line, text))
        except DataError as error:
            report.handle(error)
    return build_dataset("jsonl", path, records, report)


def _jsonl_record(path: Path, base: Path, line: int, text: str) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            path,
            f"invalid JSON: {error.msg} (column {error.colno})",
            f"write one JSON object per line, {SKIP_HINT}",
            line=line,
        ) from None
    if not isinstance(value, dict):
        raise DataError(
            path,
            f"expected a JSON object, found {type(value).__name__}",
            f"write one object per line, {SKIP_HINT}",
            line=line,
        )
    image_field = value.get("image")
    if not isinstance(image_field, str):
        raise DataError(
            path,
            "missing or non-string field 'image'",
            f'add "image": "path/to/file.jpg", {SKIP_HINT}',
            line=line,
        )
    image = resolve_image(image_field, base, path, line)
    raw_captions = _json_strings(value, "captions", "caption", path, line)
    captions = [require_caption(caption, path, line) for caption in raw_captions]
    if not captions:
        raise DataError(
            path,
            "no captions",
            f'add "captions": ["..."] or "caption": "...", {SKIP_HINT}',
            line=line,
        )
    raw_labels = _json_strings(value, "labels", "label", path, line, numbers=True)
    labels = [label.strip() for label in raw_labels if label.strip()]
    raw_id = value.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise DataError(path, "field 'id' must be a string or an integer", f"fix it, {SKIP_HINT}", line=line)
    item_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else default_id(image_field)
    split = parse_split(value.get("split"), path, line)
    return Record(item_id, image, captions, labels, split, where=str(path), line=line)


def _json_strings(
    value: dict, many: str, one: str, path: Path, line: int, numbers: bool = False
) -> list[str]:
    """The list under ``many`` or the single value under ``one`` (not both), as strings.

    With ``numbers`` integers are accepted too (labels such as ``3`` become ``"3"``).
    """
    if value.get(many) is not None and value.get(one) is not None:
        raise DataError(path, f"both {many!r} and {one!r} given", f"keep one of them, {SKIP_HINT}", line=line)
    if value.get(many) is not None:
        entries = value[many]
        if not isinstance(entries, list):
            raise DataError(
                path,
                f"field {many!r} must be a list",
                f'write "{many}": [...], {SKIP_HINT}',
                line=line,
            )
    elif value.get(one) is not None:
        entries = [value[one]]
    else:
        return []
    allowed = (str, int) if numbers else (str,)
    for entry in entries:
        if isinstance(entry, bool) or not isinstance(entry, allowed):
            kind = "strings or integers" if numbers else "strings"
            raise DataError(
                path,
                f"field {many!r}/{one!r} must hold {kind}, found {entry!r}",
                f"write them as {kind}, {SKIP_HINT}",
                line=line,
            )
    return [str(entry) for entry in entries]


register_dataset(DatasetSpec("folder", "folder of images, each with a same-named .txt of captions", read_folder))
register_dataset(DatasetSpec("csv", "CSV with image, caption[, label, split, id] columns; relative image paths "
                             "resolve against the CSV's folder, or image_root", read_csv, options=("image_root",),
                             detect=lambda path: path.suffix.lower() == ".csv"))
register_dataset(DatasetSpec("jsonl", "JSON lines with image, captions[, labels, split, id]", read_jsonl,
                             detect=lambda path: path.suffix.lower() == ".jsonl"))
