"""From a dataset to model inputs, split by split.

A model reads one or more parts per side, each an input kind of :mod:`xmodal.features.kinds`
(image ``global`` or ``regions``; text ``global``, ``words`` or ``tokens``; ...). Each kind says
where its rows come from: the feature cache for image files and raw texts (extracting once if
needed), or the arrays a dataset ships.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from xmodal.data.records import SPLITS, Dataset, FeatureRow, all_texts
from xmodal.data.splits import stratified_split
from xmodal.errors import XmodalError
from xmodal.features.extract import ExtractOptions
from xmodal.features.kinds import RowReader, get_kind
from xmodal.features.pipeline import InputPipeline
from xmodal.models.base import Batch, InputSpec, Rep


@dataclass
class SplitData:
    """One split: its items, their texts, labels and the readers that turn rows into tensors."""

    name: str
    item_indices: np.ndarray  # positions in dataset.items
    image_rows: np.ndarray  # rows of the image arrays, one per item
    text_rows: np.ndarray  # rows of the text arrays, one per text
    text_items: np.ndarray  # for each text, the position of its item within this split
    labels: Tensor | None  # [n_items, n_classes] bool
    read_images: RowReader
    read_texts: RowReader
    text_boxes: np.ndarray | None = None  # [n_texts, 4] the part of its image each text describes (NaN: unknown)

    @property
    def n_items(self) -> int:
        return len(self.item_indices)

    @property
    def n_texts(self) -> int:
        return len(self.text_rows)

    def images(self, positions: np.ndarray | slice | None = None) -> Rep:
        rows = self.image_rows if positions is None else self.image_rows[positions]
        return self.read_images(rows)

    def texts(self, positions: np.ndarray | slice | None = None) -> Rep:
        rows = self.text_rows if positions is None else self.text_rows[positions]
        return self.read_texts(rows)

    def ground_truth(self) -> Tensor:
        """``[n_items, n_texts]`` bool: the texts of each image."""
        gt = torch.zeros(self.n_items, self.n_texts, dtype=torch.bool)
        gt[torch.from_numpy(self.text_items), torch.arange(self.n_texts)] = True
        return gt

    def text_labels(self) -> Tensor | None:
        return None if self.labels is None else self.labels[torch.from_numpy(self.text_items)]

    def pair_batch(self, text_positions: np.ndarray) -> Batch:
        """A training batch: each text with its image."""
        items = self.text_items[text_positions]
        labels = None if self.labels is None else self.labels[torch.from_numpy(items)].float()
        return Batch(self.images(items), self.texts(text_positions), torch.from_numpy(items), labels)


class ModelData:
    """Features of one dataset for one choice of input kinds per side (:mod:`xmodal.features.kinds`).

    ``image_input`` / ``text_input`` name one kind, or one kind per part when a model reads
    several parts of a side (regions and objects, say); each part's rows are merged into one
    representation per side.
    """

    def __init__(self, dataset: Dataset, image_input: str | Sequence[str], text_input: str | Sequence[str], *,
                 resolution: int = 224, val_fraction: float = 0.1, val_fold: int = 0,
                 extract_options: ExtractOptions | None = None):
        self.dataset = dataset
        # A copy: the caller's options are theirs (this sets the resolution the config asks for).
        self.options = replace(extract_options or ExtractOptions(), image_resolution=resolution)
        self.bad_items: set[str] = set()
        self._pipeline: InputPipeline | None = None
        image_parts, text_parts = _as_parts(image_input), _as_parts(text_input)
        image_specs, self._read_images = self._side_reader("image", image_parts)
        text_specs, self._read_texts = self._side_reader("text", text_parts)
        self.spec = make_spec(image_specs, text_specs, len(dataset.label_names))
        self._splits = self._assign_splits(val_fraction, val_fold)

    def _side_reader(self, side: str, parts: tuple[str, ...]) -> tuple[dict[str, dict], RowReader]:
        """Each part's source, and one reader that merges their rows."""
        kinds = [get_kind(side, name) for name in parts]
        for kind in kinds:
            if not kind.feeds(self.dataset):
                raise XmodalError(f"this model needs {side} {kind.description}, but dataset {self.dataset.name!r} "
                                  f"cannot provide them; choose a model or input it can feed")
        keys = [key for kind in kinds for key in kind.keys]
        if len(keys) != len(set(keys)):
            raise XmodalError(f"{side} inputs {', '.join(parts)} share representation keys ({', '.join(keys)})")
        sources = {kind.name: kind.source(self) for kind in kinds}
        readers = [source.reader for source in sources.values()]

        def read(rows: np.ndarray) -> Rep:
            merged: Rep = {}
            for reader in readers:
                merged |= reader(rows)
            return merged

        return {name: source.spec for name, source in sources.items()}, read

    def checked_images(self, features):
        """The image features of the cache, after refusing unreadable images unless --skip-bad."""
        if features.bad_items and not self.options.skip_bad:
            # The cache may come from an `extract --skip-bad`: the same data must not pass here silently.
            raise XmodalError(f"dataset {self.dataset.name!r}: {len(features.bad_items)} image(s) could not be read "
                              f"(first: {', '.join(features.bad_items[:3])}); fix or remove them, or pass --skip-bad "
                              "to leave them out")
        self.bad_items |= set(features.bad_items)
        return features

    def refusal(self, side: str) -> str | None:
        """Why new items of ``side`` cannot be encoded as this dataset's were (it ships features), if so."""
        if side == "image" and self.dataset.image_kind == "features":
            return (f"dataset {self.dataset.name!r} ships image features: new images cannot be encoded the same way "
                    "(its features came from an encoder xmodal does not have)")
        if side == "text" and self.dataset.text_kind != "raw":
            return (f"dataset {self.dataset.name!r} ships text features: free-text queries cannot be encoded the "
                    "same way")
        return None

    def can_encode_new(self, side: str) -> bool:
        return self.refusal(side) is None

    def pipeline(self) -> InputPipeline:
        """How new images and texts become inputs of these kinds (what a run keeps in ``RUN/inputs``)."""
        if self._pipeline is None:
            self._pipeline = InputPipeline.from_data(self)
        return self._pipeline

    def encode_new_images(self, images: Sequence[str | Path | Image.Image]) -> Rep:
        """Model inputs for images outside the dataset (files or PIL images), as extraction encodes them."""
        return self.pipeline().encode_images(images)

    def encode_new_texts(self, texts: Sequence[str]) -> Rep:
        """Model inputs for sentences outside the dataset (queries), with the same frozen encoders."""
        return self.pipeline().encode_texts(texts)

    # -- splits ------------------------------------------------------------------------------
    def _assign_splits(self, val_fraction: float, val_fold: int) -> dict[str, list[int]]:
        """Item positions per split; a validation part is carved from train when there is none
        (``val_fold`` picks which part: :func:`xmodal.data.splits.stratified_split`)."""
        items = self.dataset.items
        splits = {split: [i for i, item in enumerate(items) if item.split == split and item.id not in self.bad_items]
                  for split in SPLITS}
        if not splits["val"] and val_fraction > 0 and splits["train"]:
            train = splits["train"]
            assignment = stratified_split([items[i].id for i in train], [items[i].labels[:1] for i in train],
                                          (1 - val_fraction, val_fraction, 0.0), fold=val_fold)
            splits["val"] = [i for i in train if assignment[items[i].id] == "val"]
            splits["train"] = [i for i in train if assignment[items[i].id] == "train"]
        return splits

    def split_ids(self) -> dict[str, list[str]]:
        """Item ids per split, as training used them (bad items out, validation carved)."""
        items = self.dataset.items
        return {name: [items[i].id for i in positions] for name, positions in self._splits.items()}

    def use_split_ids(self, recorded: dict[str, list[str]]) -> None:
        """Evaluate on the items a run recorded, by id; every one must still be in the dataset."""
        position = {item.id: i for i, item in enumerate(self.dataset.items)}
        missing = [item_id for ids in recorded.values() for item_id in ids if item_id not in position]
        if missing:
            raise XmodalError(f"dataset {self.dataset.name!r}: {len(missing)} item(s) the run recorded are gone "
                              f"(first: {', '.join(missing[:3])}); evaluate on the data the run was trained on")
        self._splits = {name: [position[item_id] for item_id in ids] for name, ids in recorded.items()}

    def has_split(self, name: str) -> bool:
        return bool(self._splits.get(name))

    def split(self, name: str) -> SplitData:
        if name not in self._splits:
            raise XmodalError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        positions = self._splits[name]
        if not positions:
            hint = "; set data.val_fraction > 0 to carve one from train" if name == "val" else ""
            raise XmodalError(f"dataset {self.dataset.name!r} has no {name} items{hint}")
        text_source = all_texts(self.dataset.items)
        raw_text_rows: dict[int, list[int]] = {}
        for row, (item_index, text) in enumerate(text_source):
            raw_text_rows.setdefault(item_index, []).append(text.row if isinstance(text, FeatureRow) else row)
        image_rows, text_rows, text_items, boxes = [], [], [], []
        for position, item_index in enumerate(positions):
            item = self.dataset.items[item_index]
            image_rows.append(item.image.row if isinstance(item.image, FeatureRow) else item_index)
            for number, row in enumerate(raw_text_rows.get(item_index, [])):
                text_rows.append(row)
                text_items.append(position)
                boxes.append(item.text_boxes[number] if item.text_boxes else (np.nan,) * 4)
        labels = None
        if self.dataset.has_labels:
            labels = torch.zeros(len(positions), len(self.dataset.label_names), dtype=torch.bool)
            for position, item_index in enumerate(positions):
                labels[position, list(self.dataset.items[item_index].labels)] = True
        text_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return SplitData(name, np.asarray(positions), np.asarray(image_rows), np.asarray(text_rows),
                         np.asarray(text_items), labels, self._read_images, self._read_texts,
                         text_boxes if not np.isnan(text_boxes).all() else None)


def make_spec(image_specs: dict[str, dict], text_specs: dict[str, dict], n_classes: int = 0) -> InputSpec:
    """The :class:`InputSpec` of the parts chosen per side (kind -> what its source declared, in order)."""
    image_parts, text_parts = tuple(image_specs), tuple(text_specs)
    first_image, first_text = image_specs[image_parts[0]], text_specs[text_parts[0]]
    return InputSpec(image=image_parts[0], text=text_parts[0], image_dim=first_image["dim"],
                     text_dim=first_text["dim"], image_regions=first_image.get("regions"),
                     grid_side=first_image.get("grid_side"), vocab_size=first_text.get("vocab_size"),
                     word_vectors=first_text.get("word_vectors"), n_classes=n_classes,
                     image_parts=image_parts, text_parts=text_parts,
                     parts={f"{side}.{kind}": spec for side, specs in (("image", image_specs), ("text", text_specs))
                            for kind, spec in specs.items()})


def _as_parts(kinds: str | Sequence[str]) -> tuple[str, ...]:
    parts = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not parts:
        raise XmodalError("a model input side needs at least one input kind")
    return parts
