"""From a dataset to model inputs: which features feed which input kind, split by split.

A model asks for one image input kind (``global`` or ``regions``) and one text input kind
(``global``, ``words`` or ``tokens``). Datasets of image files and raw texts get them from the
feature cache (extracting once if needed); datasets that ship feature arrays use those arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from xmodal.data.images import load_rgb, to_rgb
from xmodal.data.records import SPLITS, Dataset, FeatureRow, all_texts
from xmodal.data.splits import stratified_split
from xmodal.errors import XmodalError
from xmodal.features.extract import ExtractOptions, extract
from xmodal.models.base import IMAGE_INPUTS, TEXT_INPUTS, Batch, InputSpec, Rep

RowReader = Callable[[np.ndarray], Rep]


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
    """Features of one dataset for one (image input, text input) choice."""

    def __init__(self, dataset: Dataset, image_input: str, text_input: str, *,
                 resolution: int = 224, val_fraction: float = 0.1, extract_options: ExtractOptions | None = None):
        if image_input not in IMAGE_INPUTS or text_input not in TEXT_INPUTS:
            raise XmodalError(f"unknown input kinds image={image_input!r} text={text_input!r}; "
                              f"image: {IMAGE_INPUTS}, text: {TEXT_INPUTS}")
        self.dataset = dataset
        # A copy: the caller's options are theirs (this sets the resolution the config asks for).
        self.options = replace(extract_options or ExtractOptions(), image_resolution=resolution)
        self.bad_items: set[str] = set()
        self._image_encoder = self._text_encoder = None  # built on first use for new images / texts
        image_dim, regions, grid_side, self._read_images = self._image_reader(image_input)
        text_dim, vocab_size, vectors, self._read_texts = self._text_reader(text_input)
        self.spec = InputSpec(image=image_input, text=text_input, image_dim=image_dim, text_dim=text_dim,
                              image_regions=regions, grid_side=grid_side, vocab_size=vocab_size,
                              word_vectors=vectors, n_classes=len(dataset.label_names))
        self._splits = self._assign_splits(val_fraction)

    # -- images ------------------------------------------------------------------------------
    def _image_reader(self, kind: str) -> tuple[int, int | None, int | None, RowReader]:
        dataset = self.dataset
        if dataset.image_kind == "features":
            array = dataset.arrays["image"]
            if kind == "regions" and array.ndim != 3:
                raise XmodalError(f"this model needs image regions, but dataset {dataset.name!r} ships one global "
                                  "feature vector per image; choose a model or input that takes global features")
            if kind == "global" and array.ndim == 3:
                return array.shape[2], None, None, lambda rows: {"features": _float(array[rows]).mean(1)}
            if kind == "global":
                return array.shape[1], None, None, lambda rows: {"features": _float(array[rows])}
            return array.shape[2], array.shape[1], None, lambda rows: {"regions": _float(array[rows])}
        features = extract(dataset, "effnet", self.options).features
        if features.bad_items and not self.options.skip_bad:
            # The cache may come from an `extract --skip-bad`: the same data must not pass here silently.
            raise XmodalError(f"dataset {dataset.name!r}: {len(features.bad_items)} image(s) could not be read "
                              f"(first: {', '.join(features.bad_items[:3])}); fix or remove them, or pass --skip-bad "
                              "to leave them out")
        self.bad_items |= set(features.bad_items)
        if kind == "global":
            pooled = features.array("pooled")
            return pooled.shape[1], None, None, lambda rows: {"features": _float(pooled[np.sort(rows)], rows)}
        grid = features.array("grid")
        side = features.manifest["grid_side"]
        return grid.shape[2], grid.shape[1], side, lambda rows: {"regions": _float(grid[np.sort(rows)], rows)}

    # -- texts -------------------------------------------------------------------------------
    def _text_reader(self, kind: str) -> tuple[int, int | None, Tensor | None, RowReader]:
        dataset = self.dataset
        if dataset.text_kind == "features":
            if kind != "global":
                raise XmodalError(f"this model needs {kind} text input, but dataset {dataset.name!r} ships one "
                                  "global feature vector per text; choose a model or input that takes global features")
            array = dataset.arrays["text"]
            return array.shape[1], None, None, lambda rows: {"features": _float(array[rows])}
        if kind == "global":
            sentence = extract(dataset, "minilm", self.options).features.array("sentence")
            return sentence.shape[1], None, None, lambda rows: {"features": _float(sentence[rows])}
        if kind == "tokens":
            features = extract(dataset, "minilm", self.options).features
            tokens, lengths = features.array("tokens"), features.array("lengths")

            def read_tokens(rows: np.ndarray) -> Rep:
                batch_lengths = torch.from_numpy(np.asarray(lengths[rows], dtype=np.int64))
                width = int(batch_lengths.max())
                return {"tokens": _float(tokens[rows, :width]), "lengths": batch_lengths}

            return tokens.shape[2], None, None, read_tokens
        features = extract(dataset, "words", self.options).features
        ids, lengths = features.array("ids"), features.array("lengths")
        vectors = torch.from_numpy(np.array(features.array("glove"), dtype=np.float32))

        def read_words(rows: np.ndarray) -> Rep:
            batch_lengths = torch.from_numpy(np.asarray(lengths[rows], dtype=np.int64))
            width = int(batch_lengths.max())
            return {"ids": torch.from_numpy(np.asarray(ids[rows, :width], dtype=np.int64)), "lengths": batch_lengths}

        return vectors.shape[1], len(vectors), vectors, read_words

    # -- splits ------------------------------------------------------------------------------
    def _assign_splits(self, val_fraction: float) -> dict[str, list[int]]:
        """Item positions per split; a validation part is carved from train when there is none."""
        items = self.dataset.items
        splits = {split: [i for i, item in enumerate(items) if item.split == split and item.id not in self.bad_items]
                  for split in SPLITS}
        if not splits["val"] and val_fraction > 0 and splits["train"]:
            train = splits["train"]
            assignment = stratified_split([items[i].id for i in train],
                                          [items[i].labels[:1] for i in train], (1 - val_fraction, val_fraction, 0.0))
            splits["val"] = [i for i in train if assignment[items[i].id] == "val"]
            splits["train"] = [i for i in train if assignment[items[i].id] == "train"]
        return splits

    def encode_new_texts(self, texts: Sequence[str]) -> Rep:
        """Model inputs for sentences outside the dataset (queries), with the same frozen encoders."""
        if self.dataset.text_kind == "features":
            raise XmodalError(f"dataset {self.dataset.name!r} ships text features: free-text queries cannot be "
                              "encoded the same way")
        texts = list(texts)
        if not texts or not all(isinstance(text, str) for text in texts):
            raise XmodalError("encode_new_texts: give a non-empty list of strings")
        kind = self.spec.text
        if kind == "words":
            from xmodal.encoders.tokenize import Vocabulary

            vocabulary = Vocabulary.load(extract(self.dataset, "words", self.options).features.path / "vocabulary.json")
            ids, lengths = vocabulary.encode_padded(texts)
            return {"ids": torch.from_numpy(ids).long(), "lengths": torch.from_numpy(lengths).long()}
        if self._text_encoder is None:
            from xmodal.encoders.minilm import MiniLM

            self._text_encoder = MiniLM(self.options.max_text_tokens, self.options.device)
        encoded = self._text_encoder.encode(texts)
        if kind == "global":
            return {"features": encoded.sentence.cpu()}
        return {"tokens": encoded.tokens.cpu(), "lengths": encoded.lengths.long().cpu()}

    def encode_new_images(self, images: Sequence[str | Path | Image.Image]) -> Rep:
        """Model inputs for images outside the dataset (files or PIL images), as extraction encodes them."""
        if self.dataset.image_kind == "features":
            raise XmodalError(f"dataset {self.dataset.name!r} ships image features: new images cannot be encoded "
                              "the same way (its features came from an encoder xmodal does not have)")
        images = list(images)
        if not images:
            raise XmodalError("encode_new_images: give at least one image (a file path or a PIL image)")
        resolution = self.options.image_resolution
        pictures = [to_rgb(image).resize((resolution, resolution), Image.Resampling.BICUBIC)
                    if isinstance(image, Image.Image) else load_rgb(Path(image), resolution) for image in images]
        if self._image_encoder is None:
            from xmodal.encoders.image import EfficientNetLite0

            self._image_encoder = EfficientNetLite0(resolution, self.options.device)
        encoded = self._image_encoder.encode(pictures)
        if self.spec.image == "global":
            return {"features": encoded.pooled.cpu()}
        return {"regions": encoded.grid.cpu()}

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
        image_rows, text_rows, text_items = [], [], []
        for position, item_index in enumerate(positions):
            image = self.dataset.items[item_index].image
            image_rows.append(image.row if isinstance(image, FeatureRow) else item_index)
            for row in raw_text_rows.get(item_index, []):
                text_rows.append(row)
                text_items.append(position)
        labels = None
        if self.dataset.has_labels:
            labels = torch.zeros(len(positions), len(self.dataset.label_names), dtype=torch.bool)
            for position, item_index in enumerate(positions):
                labels[position, list(self.dataset.items[item_index].labels)] = True
        return SplitData(name, np.asarray(positions), np.asarray(image_rows), np.asarray(text_rows),
                         np.asarray(text_items), labels, self._read_images, self._read_texts)


def _float(array: np.ndarray, order: np.ndarray | None = None) -> Tensor:
    """float32 tensor of ``array``; with ``order`` (rows requested unsorted) restore that order.

    Memory-mapped arrays are read fastest with sorted row indices, so readers sort and undo it.
    """
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if order is not None:
        tensor = tensor[torch.from_numpy(np.argsort(np.argsort(order)))]
    return tensor
