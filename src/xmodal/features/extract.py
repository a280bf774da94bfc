"""Running the frozen encoders over a dataset once and caching what they produce.

Three extractors, each cached on its own (``xmodal extract --encoders``):

- ``effnet``: EfficientNet-Lite0 grid (float16, ``[items, regions, 1280]``) and pooled vector
  (float32, ``[items, 1280]``), one row per item in dataset order;
- ``minilm``: MiniLM-L6 token states (float16, ``[texts, T, 384]``) and lengths of each text's
  first window (its first ``max_tokens`` word pieces), the sentence vector of the whole text
  (every window, :mod:`xmodal.encoders.minilm`) and each text's window count, one row per text in
  :func:`xmodal.data.records.all_texts` order;
- ``words``: a vocabulary built from the training texts, padded word ids and lengths, GloVe
  50-d vectors for the vocabulary, and bag-of-words counts (sparse), rows as for ``minilm``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from xmodal.data.images import load_rgb
from xmodal.data.records import Dataset, all_texts
from xmodal.errors import DataError, SkipReport, XmodalError
from xmodal.features.store import FeatureSet, FeatureWriter, feature_dir, open_cached, write_feature_set
from xmodal.progress import progress

EXTRACTORS = ("effnet", "minilm", "words")
DEFAULT_EXTRACTORS = EXTRACTORS


@dataclass
class ExtractOptions:
    image_resolution: int = 224
    batch_size: int = 32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    skip_bad: bool = False
    max_text_tokens: int = 64


@dataclass
class ExtractResult:
    features: FeatureSet
    cached: bool
    seconds: float


def extractor_settings(name: str, options: ExtractOptions) -> dict[str, Any]:
    """The settings that change an extractor's output (and so its cache key)."""
    if name == "effnet":
        return {"encoder": "efficientnet-lite0", "resolution": options.image_resolution}
    if name == "minilm":
        return {"encoder": "all-MiniLM-L6-v2", "max_tokens": options.max_text_tokens}
    if name == "words":
        return {"tokenizer": "lower-word-v2", "vectors": "glove-6B-50d", "vocabulary": "train"}
    raise XmodalError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")


def extract(dataset: Dataset, name: str, options: ExtractOptions, force: bool = False) -> ExtractResult:
    """Return the cached features of ``dataset`` for extractor ``name``, computing them if needed."""
    settings = extractor_settings(name, options)
    _check_applicable(dataset, name)
    final = feature_dir(dataset, name, settings)
    started = time.perf_counter()
    if not force and (cached := open_cached(final)) is not None:
        return ExtractResult(cached, True, time.perf_counter() - started)
    fill: Callable[[FeatureWriter], dict[str, Any]] = {
        "effnet": lambda w: _fill_effnet(dataset, options, w),
        "minilm": lambda w: _fill_minilm(dataset, options, w),
        "words": lambda w: _fill_words(dataset, w),
    }[name]

    def fill_with_manifest(writer: FeatureWriter) -> dict[str, Any]:
        manifest = fill(writer)
        return {"dataset": dataset.name, "source": dataset.source, "fingerprint": dataset.fingerprint(),
                "extractor": name, "settings": settings, "items": len(dataset),
                "seconds": round(time.perf_counter() - started, 3), **manifest}

    features = write_feature_set(final, fill_with_manifest)
    return ExtractResult(features, False, time.perf_counter() - started)


def _check_applicable(dataset: Dataset, name: str) -> None:
    if name == "effnet" and dataset.image_kind != "file":
        raise XmodalError(f"dataset {dataset.name!r} ships image features, not image files: nothing to extract "
                          "with effnet (its features are used as they are)")
    if name in ("minilm", "words") and dataset.text_kind != "raw":
        raise XmodalError(f"dataset {dataset.name!r} ships text features, not texts: nothing to extract with {name}")


def _fill_effnet(dataset: Dataset, options: ExtractOptions, writer: FeatureWriter) -> dict[str, Any]:
    from xmodal.encoders.image import CHANNELS, EfficientNetLite0

    encoder = EfficientNetLite0(options.image_resolution, options.device)
    regions = encoder.grid_side**2
    grid = writer.allocate("grid", (len(dataset), regions, CHANNELS), np.float16)
    pooled = writer.allocate("pooled", (len(dataset), CHANNELS), np.float32)
    report = SkipReport(options.skip_bad)
    bad: list[str] = []
    batches = range(0, len(dataset), options.batch_size)
    for start in progress(batches, total=len(batches), desc=f"effnet@{options.image_resolution}px", unit="batch"):
        rows, images = [], []
        for row in range(start, min(start + options.batch_size, len(dataset))):
            item = dataset.items[row]
            try:
                images.append(load_rgb(item.image, options.image_resolution))
                rows.append(row)
            except DataError as error:
                report.handle(error)  # raises unless --skip-bad; then the row stays zero
                bad.append(item.id)
        if images:
            out = encoder.encode(images)
            grid[rows] = out.grid.cpu().numpy().astype(np.float16)
            pooled[rows] = out.pooled.cpu().numpy()
    return {"grid_side": encoder.grid_side, "bad_items": bad, "skipped": [str(e) for e in report.skipped]}


def _raw_texts(dataset: Dataset) -> list[str]:
    return [text for _, text in all_texts(dataset.items)]  # type: ignore[misc]


def _fill_minilm(dataset: Dataset, options: ExtractOptions, writer: FeatureWriter) -> dict[str, Any]:
    """Token states of each text's first window; the sentence vector over all its windows.

    Texts are tokenised once. ``windows`` holds each text's window count (1: nothing was cut);
    the manifest records how many texts needed more than one (``long_texts``) and the windows
    encoded in all.
    """
    from xmodal.encoders.minilm import DIMENSION, MiniLM

    texts = _raw_texts(dataset)
    encoder = MiniLM(options.max_text_tokens, options.device)
    windows = encoder.windows(texts)
    width = max(len(text_windows[0]) for text_windows in windows)
    tokens = writer.allocate("tokens", (len(texts), width, DIMENSION), np.float16)
    lengths = writer.allocate("lengths", (len(texts),), np.int32)
    sentence = writer.allocate("sentence", (len(texts), DIMENSION), np.float32)
    n_windows = [len(text_windows) for text_windows in windows]
    writer.save("windows", np.asarray(n_windows, dtype=np.int32))
    batch_size = max(options.batch_size, 64)
    batches = range(0, len(texts), batch_size)
    for start in progress(batches, total=len(batches), desc="minilm", unit="batch"):
        out = encoder.encode_windows(windows[start : start + batch_size])
        stop = start + len(out.lengths)
        tokens[start:stop, : out.tokens.shape[1]] = out.tokens.cpu().numpy().astype(np.float16)
        lengths[start:stop] = out.lengths.cpu().numpy()
        sentence[start:stop] = out.sentence.cpu().numpy()
    return {"texts": len(texts), "max_tokens": width, "windows": sum(n_windows),
            "long_texts": sum(n > 1 for n in n_windows), "most_windows": max(n_windows)}


def _fill_words(dataset: Dataset, writer: FeatureWriter) -> dict[str, Any]:
    from xmodal.encoders.bow import bow_counts
    from xmodal.encoders.glove import vectors_for
    from xmodal.encoders.tokenize import Vocabulary

    texts = _raw_texts(dataset)
    train_texts = [text for item in dataset.split("train") for text in item.texts]
    vocabulary = Vocabulary.build(train_texts or texts)  # type: ignore[arg-type]
    vocabulary.save(writer.staging / "vocabulary.json")
    ids, lengths = vocabulary.encode_padded(texts)
    vectors, found = vectors_for(vocabulary)
    writer.save("ids", ids)
    writer.save("lengths", lengths)
    writer.save("glove", vectors)
    writer.save("glove_found", found)
    writer.save_sparse("bow", bow_counts(texts, vocabulary))
    return {"texts": len(texts), "vocabulary": len(vocabulary), "glove_coverage": round(float(found[2:].mean()), 4)}
