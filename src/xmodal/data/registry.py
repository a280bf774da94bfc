"""Dataset names the CLI and configs use, and the reader behind each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xmodal.data.records import Dataset
from xmodal.errors import XmodalError

Reader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    reader: Reader
    needs_path: bool = True

    def load(self, path: Path | None = None, *, skip_bad: bool = False) -> Dataset:
        if path is None and self.needs_path:
            raise XmodalError(f"dataset {self.name!r} needs --path: {self.description}")
        if path is not None and not Path(path).exists():
            raise XmodalError(f"--path {path} does not exist")
        return self.reader(Path(path) if path is not None else None, skip_bad=skip_bad)


def _specs() -> dict[str, DatasetSpec]:
    from xmodal.data import collection, emoji, karpathy, precomputed, wikipedia

    specs = [
        DatasetSpec("emoji", "built in: Noto emoji images with names and keywords, 9 categories (fetched with npm, "
                    "or --path to a folder holding the two npm tarballs)", emoji.read_emoji, needs_path=False),
        DatasetSpec("wikipedia-features", "folder with raw_features.mat and the Wikipedia list files",
                    wikipedia.read_wikipedia_features),
        DatasetSpec("wikipedia", "folder with the list files, texts/ and images/<category>/", wikipedia.read_wikipedia),
        DatasetSpec("folder", "folder of images, each with a same-named .txt of captions", collection.read_folder),
        DatasetSpec("csv", "CSV with image, caption[, label, split, id] columns", collection.read_csv),
        DatasetSpec("jsonl", "JSON lines with image, captions[, labels, split, id]", collection.read_jsonl),
        DatasetSpec("karpathy", "dataset_{coco,flickr30k,flickr8k}.json beside the images", karpathy.read_karpathy),
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


def load_dataset(name: str, path: Path | None = None, *, skip_bad: bool = False) -> Dataset:
    return get_spec(name).load(path, skip_bad=skip_bad)
