"""Shared pieces of the list-file readers: one record shape, path/split/id rules, and the
step that turns records into a :class:`~xmodal.data.records.Dataset` (label ids, unique ids,
splits). Used by :mod:`xmodal.data.collection` and :mod:`xmodal.data.karpathy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from xmodal.data.records import Dataset, Item, Split
from xmodal.data.splits import stratified_split
from xmodal.errors import DataError, SkipReport

SPLIT_ALIASES: dict[str, Split] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
SKIP_HINT = "or pass --skip-bad to skip it"


@dataclass
class Record:
    """One item as read from a file, before label names get ids and splits are assigned.

    ``where`` and ``line`` locate the record for error messages.
    """

    id: str
    image: Path
    captions: list[str]
    labels: list[str] = field(default_factory=list)
    split: Split | None = None
    where: str = ""
    line: int | None = None


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def require_file(path: Path) -> Path:
    """``path`` if it is a file; otherwise an error saying so (a folder, or nothing there)."""
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file", "pass the list file itself")
    if not path.is_file():
        raise DataError(path, "file not found", "check the path")
    return path


def require_dir(path: Path) -> Path:
    """``path`` if it is a folder; otherwise an error saying so."""
    if not path.is_dir():
        problem = "is a file, expected a folder" if path.exists() else "folder not found"
        raise DataError(path, problem, "pass the folder that holds the data")
    return path


def parse_split(value: object, where: str | Path, line: int | None = None) -> Split | None:
    """The split named by ``value``; ``None`` when blank. Unknown names are an error."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if text not in SPLIT_ALIASES:
        raise DataError(where, f"bad value {value!r} in field 'split'", "use train, val or test", line=line)
    return SPLIT_ALIASES[text]


def default_id(image: str) -> str:
    """The image path as written, in POSIX form and without its suffix (``imgs/cat1``)."""
    return PurePosixPath(image.strip().replace("\\", "/")).with_suffix("").as_posix()


def resolve_image(raw: str, base: Path, where: str | Path, line: int | None = None) -> Path:
    """The image path ``raw`` joined to ``base`` when relative; it must name an existing file."""
    text = raw.strip()
    if not text:
        raise DataError(where, "empty field 'image'", "give the path of the image file", line=line)
    image = Path(text).expanduser()
    if not image.is_absolute():
        image = base / image
    if not image.is_file():
        raise DataError(
            where,
            f"image not found: {image}",
            f"check the path (relative paths are resolved against {base}), {SKIP_HINT}",
            line=line,
        )
    return image


def build_dataset(
    name: str,
    source: Path,
    records: list[Record],
    report: SkipReport,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """Turn records into a :class:`Dataset`: unique ids, label ids, splits, skip count.

    Records without a split get the train/val/test ``fractions`` (see :func:`_assign_splits`).
    """
    records = _unique_records(records, report)
    records = _records_with_consistent_splits(records, report)
    if not records:
        what = "folder's images and captions" if Path(source).is_dir() else "file's contents"
        skipped = f"; {report.count} bad record(s) skipped, first: {report.skipped[0]}" if report.count else ""
        raise DataError(source, f"no usable items{skipped}", f"check the {what} (every record was bad or none "
                        "was found)")
    label_names = sorted({label for record in records for label in record.labels})
    label_ids = {label: index for index, label in enumerate(label_names)}
    splits = _assign_splits(records, fractions)
    items = [
        Item(
            id=record.id,
            image=record.image,
            texts=tuple(record.captions),
            labels=tuple(sorted({label_ids[label] for label in record.labels})),
            split=splits[record.id],
        )
        for record in records
    ]
    return Dataset(name=name, items=items, label_names=label_names, source=str(source), skipped=report.messages())


def _unique_records(records: list[Record], report: SkipReport) -> list[Record]:
    """Records whose id was not used before; a repeated id is a bad record."""
    first: dict[str, Record] = {}
    for record in records:
        if record.id in first:
            earlier = first[record.id]
            first_use = f"line {earlier.line}" if earlier.line is not None else str(earlier.image)
            report.handle(
                DataError(
                    record.where,
                    f"duplicate item id {record.id!r} (first used by {first_use})",
                    f"give each item its own id, {SKIP_HINT}",
                    line=record.line,
                )
            )
        else:
            first[record.id] = record
    return list(first.values())


def _records_with_consistent_splits(records: list[Record], report: SkipReport) -> list[Record]:
    """All records when none or all name a split; otherwise those without one are bad."""
    if not any(record.split for record in records):
        return records
    kept = []
    for record in records:
        if record.split is None:
            report.handle(
                DataError(
                    record.where,
                    "no split, while other records name one",
                    "give every record a split (train, val or test), or none to have them assigned",
                    line=record.line,
                )
            )
        else:
            kept.append(record)
    return kept


def _assign_splits(records: list[Record], fractions: tuple[float, float, float]) -> dict[str, Split]:
    """The records' own splits, or a split stratified by first label (70/10/20 by default)
    when none names one."""
    if any(record.split for record in records):
        return {record.id: record.split for record in records if record.split}
    ids = [record.id for record in records]
    strata = [record.labels[0] if record.labels else "" for record in records]
    return stratified_split(ids, strata=strata, fractions=fractions)
