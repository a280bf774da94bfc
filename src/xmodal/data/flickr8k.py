"""The Flickr8k layout most copies are distributed in: ``captions.txt`` beside ``Images/``.

``captions.txt`` is a CSV with the header ``image,caption`` (captions holding a comma are
double-quoted), five rows per image, image names relative to ``Images/``. It is read by the
``csv`` reader's code (:func:`xmodal.data.collection.csv_records`) with ``Images/`` as the
image root, so bad input gets the same errors and the same ``--skip-bad`` counting (one per bad
row: an image that is missing skips each of its caption rows).

There are no labels. Without a ``split`` column the images get a deterministic 80/10/10 split:
ordered by :func:`xmodal.data.splits.stable_rank` of the item id (the image name without
suffix), the first 10% are val, the next 10% test, the rest train; the 1,000-image copy gives
800 / 100 / 100, on every machine and Python version. Figures on it are not comparable with
Karpathy's Flickr8k split (the ``karpathy`` reader takes ``dataset_flickr8k.json`` for that).
"""

from __future__ import annotations

from pathlib import Path

from xmodal.data.build import build_dataset, require_dir
from xmodal.data.collection import csv_records
from xmodal.data.records import Dataset
from xmodal.data.registry import DatasetSpec, register_dataset
from xmodal.errors import DataError, SkipReport

CAPTIONS_FILE = "captions.txt"
IMAGE_FOLDERS = ("Images", "images")
FLICKR8K_FRACTIONS = (0.8, 0.1, 0.1)


def read_flickr8k(path: Path, *, skip_bad: bool = False) -> Dataset:
    """Items of a Flickr8k folder: one per image, its five captions in file order."""
    root = require_dir(Path(path))
    captions = root / CAPTIONS_FILE
    if not captions.is_file():
        raise DataError(root, f"no {CAPTIONS_FILE} in the folder",
                        f"point --path at the Flickr8k folder holding {CAPTIONS_FILE} and Images/")
    images = next((root / name for name in IMAGE_FOLDERS if (root / name).is_dir()), None)
    if images is None:
        raise DataError(root, "no Images/ folder", f"point --path at the folder holding {CAPTIONS_FILE} and Images/")
    report = SkipReport(skip_bad)
    records = csv_records(captions, report, image_root=images)
    dataset = build_dataset("flickr8k", captions, records, report, fractions=FLICKR8K_FRACTIONS)
    dataset.source = str(root)
    return dataset


register_dataset(DatasetSpec("flickr8k", "Flickr8k folder: captions.txt (image,caption CSV) beside Images/; "
                             "80/10/10 split by a stable hash of the image name", read_flickr8k,
                             detect=lambda path: (path / CAPTIONS_FILE).is_file()))
