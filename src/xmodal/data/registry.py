"""Dataset names the CLI and configs use, and the reader behind each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xmodal.data.records import Dataset
from xmodal.errors import XmodalError

Reader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset name, its reader, and the reader's keyword options beyond ``skip_bad``.

    ``options`` lists what :meth:`load` passes through (``image_root`` for ``csv``); anything
    else is an error naming the options the reader takes, so a typo is never silently ignored.
    """

    name: str
    description: str
    reader: Reader
    needs_path: bool = True
    options: tuple[str, ...] = ()

    def load(self, path: Path | None = None, *, skip_bad: bool = False, **options: Any) -> Dataset:
        if path is None and self.needs_path:
            raise XmodalError(f"dataset {self.name!r} needs --path: {self.description}")
        if path is not None and not Path(path).exists():
            raise XmodalError(f"--path {path} does not exist")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = f"it takes {', '.join(self.options)}" if self.options else "it takes none"
            raise XmodalError(f"dataset {self.name!r} has no option {', '.join(unknown)}; {takes}")
        given = {key: value for key, value in options.items() if value is not None}
        return self.reader(Path(path) if path is not None else None, skip_bad=skip_bad, **given)


def _specs() -> dict[str, DatasetSpec]:
    from xmodal.data import collection, emoji, flickr8k, karpathy, precomputed, wikipedia

    specs = [
        DatasetSpec("emoji", "built in: Noto emoji images with names and keywords, 9 categories (fetched with npm, "
                    "or --path to a folder holding the two npm tarballs)", emoji.read_emoji, needs_path=False),
        DatasetSpec("wikipedia-features", "folder with raw_features.mat and the Wikipedia list files",
                    wikipedia.read_wikipedia_features),
        DatasetSpec("wikipedia-texts", "the wikipedia-features folder with texts/<id>.xml: SIFT image features, "
                    "the articles as raw texts", wikipedia.read_wikipedia_texts),
        DatasetSpec("wikipedia", "folder with the list files, texts/ and images/<category>/", wikipedia.read_wikipedia),
        DatasetSpec("folder", "folder of images, each with a same-named .txt of captions", collection.read_folder),
        DatasetSpec("flickr8k", "Flickr8k folder: captions.txt (image,caption CSV) beside Images/; "
                    "80/10/10 split by a stable hash of the image name", flickr8k.read_flickr8k),
        DatasetSpec("csv", "CSV with image, caption[, label, split, id] columns; relative image paths "
                    "resolve against the CSV's folder, or image_root", collection.read_csv, options=("image_root",)),
        DatasetSpec("jsonl", "JSON lines with image, captions[, labels, split, id]", collection.read_jsonl),
        DatasetSpec("karpathy", "dataset_{coco,flickr30k,flickr8k}.json beside the images (or image_root)",
                    karpathy.read_karpathy, options=("image_root",)),
        DatasetSpec("precomputed", "{split}_images/_texts/_labels.npy arrays, or a .mat with I_tr/T_tr/L_tr...",
                    precomputed.read_feature_arrays),
        DatasetSpec("scan-precomputed", "SCAN-style {split}_ims.npy + {split}_caps.txt",
                    precomputed.read_scan_precomputed),
    ]
    return {spec.name: spec for spec in specs}


def dataset_names() -> list[str]:
    return list(_specs())


def get_spec(name: str) -> DatasetSpec:
    specs = _specs()
    if name not in specs:
        raise XmodalError(f"unknown dataset {name!r}; choose from {', '.join(specs)}")
    return specs[name]


def load_dataset(name: str, path: Path | None = None, *, skip_bad: bool = False, **options: Any) -> Dataset:
    """Read dataset ``name``; ``options`` are its reader's keyword options (``image_root=``)."""
    return get_spec(name).load(path, skip_bad=skip_bad, **options)
