"""Readers for datasets published as precomputed features rather than images and captions.

Two layouts are read:

* :func:`read_feature_arrays`: paired image and text feature arrays with class labels, as
  published for Wikipedia, Pascal Sentences or NUS-WIDE (a folder of ``.npy`` files, or one
  ``.mat`` file). Texts are feature rows too, so such datasets skip both encoders.
* :func:`read_scan_precomputed`: SCAN's ``data/*_precomp`` folders, bottom-up region features
  per image with raw captions (``train_ims.npy`` + ``train_caps.txt``).

Arrays are memory-mapped while checked. Paired feature arrays (small: Wikipedia's are 2,866 rows)
are then copied into memory as float32; SCAN's region features (COCO's training split is 17 GB
as float16) stay mapped, their good rows read per batch (:class:`~xmodal.data.stacked.StackedRows`).
Array rows in error messages are 0-based; caption lines are 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.io

from xmodal.data.build import SKIP_HINT, require_dir, require_file
from xmodal.data.records import SPLITS, Dataset, FeatureRow, Item, Split
from xmodal.data.registry import DatasetSpec, register_dataset
from xmodal.data.stacked import StackedRows
from xmodal.data.texts import read_utf8, require_caption
from xmodal.errors import DataError, SkipReport

MAT_SPLITS: tuple[tuple[Split, str], ...] = (("train", "tr"), ("test", "te"))
SCAN_SPLITS: tuple[tuple[str, Split], ...] = (
    ("train", "train"),
    ("dev", "val"),
    ("test", "test"),
    ("testall", "test"),
)
ROW_FIX = "row i of the image, text and label arrays must be the same item; re-export them with matching rows"
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class _Array:
    """A loaded (usually memory-mapped) array, and how to name it in errors."""

    data: np.ndarray
    name: str
    where: str


@dataclass(frozen=True)
class _FeatureSplit:
    """The image, text and (optional) label arrays of one split; row i is one item."""

    split: Split
    images: _Array
    texts: _Array
    labels: _Array | None


# ---------------------------------------------------------------------------------------------
# Paired feature arrays with labels
# ---------------------------------------------------------------------------------------------


def read_feature_arrays(path: Path, *, skip_bad: bool = False) -> Dataset:
    """Paired image/text features: a folder of ``.npy`` files or one ``.mat`` file.

    The folder holds ``{split}_images.npy``, ``{split}_texts.npy`` and ``{split}_labels.npy``
    for train and test, and optionally val. The ``.mat`` file holds ``I_tr, T_tr, I_te, T_te``
    and ``L_tr, L_te``. Labels are optional but, if given, given for every split.

    Row i of each split's arrays is one item (id ``{split}-{i}``) with one image and one text
    feature row. Labels are either class ids, one per row, taken as given (no shifting, so
    1-based ids leave class 0 empty), or 0/1 multi-hot rows, whose nonzero columns are the
    item's labels. Label names are ``"0" .. str(n_classes - 1)``.
    """
    report = SkipReport(skip_bad)
    parts = _mat_splits(path) if path.suffix.lower() == ".mat" else _npy_splits(path)
    parts = [_checked_split(part) for part in parts]
    _check_same_across_splits(parts)
    keeps = [_good_rows(part, report) for part in parts]
    n_classes = _class_count(parts, keeps)
    items: list[Item] = []
    offset = 0
    for part, keep in zip(parts, keeps):
        items += _feature_items(part, keep, offset)
        offset += int(keep.sum())
    if not items:
        raise DataError(path, "no usable items", "every row was bad; check the arrays")
    arrays = {
        "image": _stack([part.images.data for part in parts], keeps),
        "text": _stack([part.texts.data for part in parts], keeps),
    }
    label_names = [str(index) for index in range(n_classes)]
    return Dataset(
        "precomputed", items, label_names=label_names, arrays=arrays, source=str(path), skipped=report.messages()
    )


def _npy_splits(folder: Path) -> list[_FeatureSplit]:
    """The splits of a ``.npy`` folder; train and test are required, val optional."""
    require_dir(folder)
    parts = []
    for split in SPLITS:
        files = {kind: folder / f"{split}_{kind}.npy" for kind in ("images", "texts", "labels")}
        if split == "val" and not any(file.exists() for file in files.values()):
            continue
        for kind in ("images", "texts"):
            if not files[kind].is_file():
                raise DataError(
                    files[kind],
                    "file not found",
                    "a feature folder needs train_images.npy, train_texts.npy, test_images.npy and "
                    "test_texts.npy; the val_ files are optional",
                )
        images, texts = _load_npy(files["images"]), _load_npy(files["texts"])
        labels = _load_npy(files["labels"]) if files["labels"].is_file() else None
        parts.append(_FeatureSplit(split, images, texts, labels))
    return parts


def _mat_splits(path: Path) -> list[_FeatureSplit]:
    """The train and test splits of a ``.mat`` file (``I_tr``, ``T_tr``, ``L_tr``, ...)."""
    require_file(path)
    variables = _load_mat(path)
    parts = []
    for split, suffix in MAT_SPLITS:
        images = _mat_array(path, variables, f"I_{suffix}")
        texts = _mat_array(path, variables, f"T_{suffix}")
        label_key = f"L_{suffix}"
        labels = _mat_array(path, variables, label_key) if label_key in variables else None
        parts.append(_FeatureSplit(split, images, texts, labels))
    return parts


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError:
        raise DataError(
            path,
            "MATLAB v7.3 (HDF5) files are not supported",
            "re-save it with save(..., '-v7')",
        ) from None
    except (ValueError, TypeError, OSError) as error:
        raise DataError(
            path,
            f"not a readable .mat file ({error})",
            "check the file, or re-save it from MATLAB/scipy",
        ) from None


def _mat_array(path: Path, variables: dict[str, np.ndarray], key: str) -> _Array:
    if key not in variables:
        found = ", ".join(sorted(name for name in variables if not name.startswith("__"))) or "none"
        raise DataError(
            path,
            f"missing variable {key!r}; variables found: {found}",
            "a feature .mat file needs I_tr, T_tr, I_te, T_te (and optionally L_tr, L_te)",
        )
    return _Array(variables[key], key, str(path))


def _oriented_labels(labels: _Array | None, n_rows: int) -> _Array | None:
    """Class-id vectors as 1-D: MATLAB stores them as ``(1, n)`` or ``(n, 1)`` matrices."""
    if labels is None or labels.data.ndim != 2:
        return labels
    data = labels.data
    if data.shape[1] == 1:
        return _Array(data[:, 0], labels.name, labels.where)
    if data.shape[0] == 1 and data.shape[1] == n_rows != 1:
        return _Array(data[0], labels.name, labels.where)
    return labels


def _checked_split(part: _FeatureSplit) -> _FeatureSplit:
    """``part`` with class-id labels made 1-D, once its arrays are checked.

    They must be numeric, of the right rank, and agree on the number of rows.
    """
    for array in (part.images, part.texts):
        _require_numeric(array)
        if array.data.ndim < 2:
            raise DataError(
                array.where,
                f"{array.name} has shape {array.data.shape}",
                "expected (rows, feature dim)",
            )
    n_rows = len(part.images.data)
    part = replace(part, labels=_oriented_labels(part.labels, n_rows))
    if len(part.texts.data) != n_rows:
        raise DataError(
            part.texts.where,
            f"{part.images.name} has {n_rows} rows but {part.texts.name} has {len(part.texts.data)}",
            ROW_FIX,
        )
    if part.labels is not None:
        _require_numeric(part.labels)
        if part.labels.data.ndim not in (1, 2):
            raise DataError(
                part.labels.where,
                f"{part.labels.name} has shape {part.labels.data.shape}",
                "expected class ids (rows,) or multi-hot (rows, classes)",
            )
        if len(part.labels.data) != n_rows:
            raise DataError(
                part.labels.where,
                f"{part.images.name} has {n_rows} rows but {part.labels.name} has {len(part.labels.data)}",
                ROW_FIX,
            )
    return part


def _check_same_across_splits(parts: list[_FeatureSplit]) -> None:
    """Every split has the same feature shapes, and labels of the same kind (or none)."""
    first = parts[0]
    for part in parts[1:]:
        for mine, theirs in ((part.images, first.images), (part.texts, first.texts)):
            if mine.data.shape[1:] != theirs.data.shape[1:]:
                raise DataError(
                    mine.where,
                    f"{mine.name} has rows of shape {mine.data.shape[1:]} "
                    f"but {theirs.name} has {theirs.data.shape[1:]}",
                    "every split must come from the same feature extractor",
                )
        if (part.labels is None) != (first.labels is None):
            named = part.labels or first.labels
            raise DataError(
                named.where,
                f"{named.name} gives labels but another split has none",
                "give labels for every split, or for none",
            )
        if part.labels is not None and part.labels.data.shape[1:] != first.labels.data.shape[1:]:
            raise DataError(
                part.labels.where,
                f"{part.labels.name} has label rows of shape {part.labels.data.shape[1:]} "
                f"but {first.labels.name} has {first.labels.data.shape[1:]}",
                "use the same label format (class ids or multi-hot over the same classes) for every split",
            )


def _good_rows(part: _FeatureSplit, report: SkipReport) -> np.ndarray:
    """A mask of the rows with finite features and valid labels; each bad row is reported once."""
    non_finite = "non-finite value (NaN or inf)"
    checks = [
        (part.images, _nonfinite_rows(part.images.data), non_finite),
        (part.texts, _nonfinite_rows(part.texts.data), non_finite),
    ]
    if part.labels is not None:
        bad_label = "invalid label (neither a class id >= 0 nor a 0/1 multi-hot row)"
        checks.append((part.labels, _bad_label_rows(part.labels.data), bad_label))
    keep = np.ones(len(part.images.data), dtype=bool)
    for array, bad, problem in checks:
        for row in np.flatnonzero(bad & keep):
            report.handle(
                DataError(
                    array.where,
                    f"{problem} in row {row} (0-based) of {array.name}",
                    f"fix or drop that row in every array, {SKIP_HINT}",
                )
            )
        keep &= ~bad
    return keep


def _bad_label_rows(labels: np.ndarray) -> np.ndarray:
    """Rows that are not a non-negative integer class id or a 0/1 multi-hot row."""
    values = np.asarray(labels, dtype=np.float64)
    if values.ndim == 1:
        return ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    return ~((values == 0) | (values == 1)).all(axis=1)


def _class_count(parts: list[_FeatureSplit], keeps: list[np.ndarray]) -> int:
    """Columns of multi-hot labels, or the largest kept class id + 1; 0 without labels."""
    if parts[0].labels is None:
        return 0
    if parts[0].labels.data.ndim == 2:
        return parts[0].labels.data.shape[1]
    kept = [np.asarray(part.labels.data)[keep] for part, keep in zip(parts, keeps) if keep.any()]
    return int(max(values.max() for values in kept)) + 1 if kept else 0


def _feature_items(part: _FeatureSplit, keep: np.ndarray, offset: int) -> list[Item]:
    """One item per kept row; ``offset`` is where this split starts in the stacked arrays."""
    labels = np.asarray(part.labels.data) if part.labels is not None else None
    items = []
    for position, row in enumerate(np.flatnonzero(keep)):
        index = offset + position
        items.append(
            Item(
                id=f"{part.split}-{row}",
                image=FeatureRow("image", index),
                texts=(FeatureRow("text", index),),
                labels=_row_labels(labels, row),
                split=part.split,
            )
        )
    return items


def _row_labels(labels: np.ndarray | None, row: int) -> tuple[int, ...]:
    if labels is None:
        return ()
    if labels.ndim == 1:
        return (int(labels[row]),)
    return tuple(int(column) for column in np.flatnonzero(labels[row]))


# ---------------------------------------------------------------------------------------------
# SCAN precomputed region features with captions
# ---------------------------------------------------------------------------------------------


def read_scan_precomputed(path: Path, *, skip_bad: bool = False) -> Dataset:
    """A SCAN ``*_precomp`` folder: ``{split}_ims.npy`` with ``{split}_caps.txt`` per split.

    Images are ``(n, regions, dim)`` region features or ``(n, dim)`` vectors; the captions file
    has one caption per line, ``k`` per image in image order (k = 5 for SCAN; k = 1 for copies
    that repeat each image row once per caption). ``k`` is inferred as captions / images.
    Splits: ``train``, ``dev`` (-> val), ``test``, and ``testall`` (-> test, used only when
    there is no ``test``; SCAN's COCO release ships both, ``testall`` being the 5K test set).
    Trailing blank lines in a captions file are ignored; a blank line elsewhere is an empty
    caption. Item ids are ``{split}-{image row}``; images are rows of the ``"image"`` array.
    """
    folder = require_dir(path)
    report = SkipReport(skip_bad)
    items: list[Item] = []
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    reference: _Array | None = None
    for split, images_file, captions_file in _scan_sources(folder):
        images = _load_npy(images_file)
        _check_scan_images(images, reference)
        reference = reference or images
        captions = _scan_caption_lines(captions_file)
        per_image = _captions_per_image(images_file, captions_file, len(images.data), len(captions))
        keep = _finite_image_rows(images, report)
        split_items, rows = _scan_items(split, captions_file, captions, per_image, keep, len(items), report)
        items += split_items
        blocks.append((images.data, rows))
    if not items:
        raise DataError(folder, "no usable items", "every image or caption was bad; check the files")
    arrays = {"image": StackedRows(blocks)}
    return Dataset("scan-precomputed", items, arrays=arrays, source=str(folder), skipped=report.messages())


def _scan_sources(folder: Path) -> list[tuple[Split, Path, Path]]:
    """``(split, ims file, caps file)`` for each split present; ``testall`` only without ``test``."""
    sources: list[tuple[Split, Path, Path]] = []
    for stem, split in SCAN_SPLITS:
        images_file, captions_file = folder / f"{stem}_ims.npy", folder / f"{stem}_caps.txt"
        if not images_file.exists() and not captions_file.exists():
            continue
        missing = captions_file if images_file.exists() else images_file
        if not missing.is_file():
            raise DataError(
                missing,
                "file not found",
                f"each split needs both {stem}_ims.npy and {stem}_caps.txt",
            )
        if not any(taken == split for taken, _, _ in sources):
            sources.append((split, images_file, captions_file))
    if not sources:
        raise DataError(
            folder,
            "no SCAN precomputed files found",
            "expected train_ims.npy with train_caps.txt (and dev_/test_/testall_)",
        )
    return sources


def _check_scan_images(images: _Array, reference: _Array | None) -> None:
    """Numeric ``(n, dim)`` or ``(n, regions, dim)``, shaped like the first split's."""
    _require_numeric(images)
    if images.data.ndim not in (2, 3):
        raise DataError(
            images.where,
            f"{images.name} has shape {images.data.shape}",
            "expected (images, regions, dim) or (images, dim)",
        )
    if reference is not None and images.data.shape[1:] != reference.data.shape[1:]:
        raise DataError(
            images.where,
            f"{images.name} has rows of shape {images.data.shape[1:]} "
            f"but {reference.name} has {reference.data.shape[1:]}",
            "every split must come from the same feature extractor",
        )


def _scan_caption_lines(captions_file: Path) -> list[str]:
    """The file's lines (UTF-8), without trailing blank lines."""
    lines = read_utf8(captions_file, whole_list=True).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _captions_per_image(images_file: Path, captions_file: Path, n_images: int, n_captions: int) -> int:
    """``n_captions / n_images``, which must be a whole number >= 1."""
    if n_images == 0 or n_captions < n_images or n_captions % n_images:
        raise DataError(
            captions_file,
            f"{n_captions} captions in {captions_file.name} are not a whole multiple "
            f"of the {n_images} images in {images_file.name}",
            "the captions file needs the same number of lines (5 for SCAN) for every image, in image order",
        )
    return n_captions // n_images


def _finite_image_rows(images: _Array, report: SkipReport) -> np.ndarray:
    """A mask of image rows without NaN or inf; each bad row is reported."""
    bad = _nonfinite_rows(images.data)
    for row in np.flatnonzero(bad):
        report.handle(
            DataError(
                images.where,
                f"non-finite value (NaN or inf) in row {row} (0-based) of {images.name}",
                SKIP_HINT,
            )
        )
    return ~bad


def _scan_items(
    split: Split,
    captions_file: Path,
    lines: list[str],
    per_image: int,
    keep: np.ndarray,
    offset: int,
    report: SkipReport,
) -> tuple[list[Item], np.ndarray]:
    """One item per kept image with its good captions, and the image rows they use.

    An image left with no good caption is dropped (its captions were already reported).
    """
    items: list[Item] = []
    rows: list[int] = []
    for row in np.flatnonzero(keep):
        first_line = row * per_image
        captions = []
        for number in range(first_line, first_line + per_image):
            try:
                captions.append(require_caption(lines[number], captions_file, line=number + 1))
            except DataError as error:
                report.handle(error)
        if captions:
            image = FeatureRow("image", offset + len(items))
            items.append(Item(f"{split}-{row}", image, tuple(captions), split=split))
            rows.append(int(row))
    return items, np.asarray(rows, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Array helpers
# ---------------------------------------------------------------------------------------------


def _load_npy(file: Path) -> _Array:
    """A memory-mapped ``.npy`` array; pickled object arrays are refused."""
    try:
        data = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataError(
            file,
            f"not a readable .npy array ({error})",
            "re-save it with numpy.save from a numeric array",
        ) from None
    return _Array(data, file.name, str(file))


def _require_numeric(array: _Array) -> None:
    if not (np.issubdtype(array.data.dtype, np.number) or array.data.dtype == np.bool_):
        raise DataError(
            array.where,
            f"{array.name} has non-numeric dtype {array.data.dtype}",
            "save numeric features",
        )


def _nonfinite_rows(data: np.ndarray) -> np.ndarray:
    """A mask of rows holding NaN or inf, computed in chunks so memory maps stay cheap."""
    bad = np.zeros(len(data), dtype=bool)
    if not np.issubdtype(data.dtype, np.inexact):
        return bad
    for start in range(0, len(data), CHUNK_ROWS):
        block = _row_block(data, start, start + CHUNK_ROWS)
        bad[start : start + len(block)] = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
    return bad


def _row_block(data: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` in memory. A memory map's rows are read from its file rather than through the
    map: one pass over a 17 GB file would otherwise leave all of it mapped into the process."""
    filename = getattr(data, "filename", None)
    if not isinstance(data, np.memmap) or filename is None or not data.flags.c_contiguous:
        return np.asarray(data[start:stop])
    stop = min(stop, len(data))
    row_items = int(np.prod(data.shape[1:], dtype=np.int64))
    with open(filename, "rb") as stream:
        stream.seek(data.offset + start * row_items * data.dtype.itemsize)
        values = np.fromfile(stream, dtype=data.dtype, count=(stop - start) * row_items)
    return values.reshape(stop - start, *data.shape[1:])


def _stack(arrays: list[np.ndarray], keeps: list[np.ndarray]) -> np.ndarray:
    """The kept rows of every split, one after another, as float32 in memory."""
    return np.concatenate([np.asarray(array[keep], dtype=np.float32) for array, keep in zip(arrays, keeps)])


register_dataset(DatasetSpec("precomputed", "{split}_images/_texts/_labels.npy arrays, or a .mat with "
                             "I_tr/T_tr/L_tr...", read_feature_arrays))
register_dataset(DatasetSpec("scan-precomputed", "SCAN-style {split}_ims.npy + {split}_caps.txt",
                             read_scan_precomputed))
