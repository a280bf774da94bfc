"""Running the frozen encoders over a dataset once and caching what they produce.

Five extractors, each cached on its own (``xmodal extract --encoders``):

- ``effnet``: EfficientNet-Lite0 grid (float16, ``[items, regions, 1280]``) and pooled vector
  (float32, ``[items, 1280]``), one row per item in dataset order;
- ``minilm``: MiniLM-L6 token states (float16, ``[texts, T, 384]``) and lengths of each text's
  first window (its first ``max_tokens`` word pieces), the sentence vector of the whole text
  (every window, :mod:`xmodal.encoders.minilm`) and each text's window count, one row per text in
  :func:`xmodal.data.records.all_texts` order;
- ``words``: a vocabulary built from the training texts, padded word ids and lengths, GloVe
  50-d vectors for the vocabulary, and bag-of-words counts (sparse), rows as for ``minilm``;
- ``graph``: SCANet's word graph (:mod:`xmodal.encoders.graph`): the most frequent training
  words GloVe knows, their k-nearest-neighbour adjacency and normalised Laplacian (sparse), and
  each text's counts on the vertices (sparse), rows as for ``minilm``;
- ``tfidf``: word and character n-gram TF-IDF fitted on the training texts
  (:mod:`xmodal.encoders.tfidf`; vocabularies and idf weights, rows sparse).

``effnet`` and ``minilm`` features are stored item by item under what produced them (the image
file's content hash, the text string; see :mod:`xmodal.features.store`): a call encodes only
the items the store lacks, in chunks committed one by one (so a killed run resumes where it
stopped), then gathers the dataset's view in row order. ``words``, ``graph`` and ``tfidf``
depend on the whole collection (a vocabulary fitted on its training texts) and take seconds, so
each is cached per collection.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from xmodal.data.images import DEFAULT_MAX_PIXELS, load_rgb
from xmodal.data.records import Dataset, all_texts
from xmodal.errors import DataError, SkipReport, XmodalError
from xmodal.features.store import (
    ContentStore,
    FeatureSet,
    FeatureWriter,
    StoreIndex,
    clean_features_folder,
    collection_key,
    features_root,
    file_keys,
    open_cached,
    prune_superseded,
    text_key,
    view_key,
    write_feature_set,
)
from xmodal.progress import progress

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

EXTRACTORS = ("effnet", "objects", "minilm", "words", "graph", "tfidf")
IMAGE_EXTRACTORS = ("effnet", "objects")
COLLECTION_EXTRACTORS = ("words", "graph", "tfidf")  # cached per collection, not item by item
# `objects` costs 10 encoder passes per image, so it runs when a model asks for it (or by name).
DEFAULT_EXTRACTORS = ("effnet", "minilm", "words", "graph", "tfidf")


@dataclass
class ExtractOptions:
    image_resolution: int = 224
    batch_size: int = 32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    skip_bad: bool = False
    max_text_tokens: int = 64
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (0: no limit); see load_rgb
    chunk_images: int = 128  # images per committed shard: what a kill can cost (about 4 s at 224 px on 2 cores)
    chunk_texts: int = 1024  # texts per committed shard
    graph_vertices: int = 2000  # word-graph vertices (the paper's vary by dataset: 598 to 10,055)
    graph_neighbours: int = 8  # k of the word graph's nearest neighbours (the paper's k)
    graph_stop_words: bool = False  # leave English stop words off the word graph's vertices
    tfidf_max_features: int = 4096  # tf-idf columns, half word n-grams, half character n-grams


@dataclass
class ExtractResult:
    features: FeatureSet
    cached: bool  # nothing was encoded: every row came from the cache
    seconds: float


def extractor_settings(name: str, options: ExtractOptions) -> dict[str, Any]:
    """The settings that change an extractor's output (and so its cache key)."""
    if name == "effnet":
        # "loader": large images are shrunk while decoding (JPEG draft, integer reduce) since v2.
        return {"encoder": "efficientnet-lite0", "resolution": options.image_resolution, "loader": "reduce-on-load-v2"}
    if name == "objects":
        from xmodal.encoders.objects import BOXES, CROP_RESOLUTION

        return {"encoder": "efficientnet-lite0", "boxes": [list(box) for box in BOXES], "decode": 2 * CROP_RESOLUTION,
                "crop": CROP_RESOLUTION, "loader": "reduce-on-load-v2"}
    if name == "minilm":
        # "sentence": the sentence vector is the token-weighted mean over windows of the whole text (v1).
        return {"encoder": "all-MiniLM-L6-v2", "max_tokens": options.max_text_tokens, "sentence": "windows-v1"}
    if name == "words":
        return {"tokenizer": "lower-word-v2", "vectors": "glove-6B-50d", "vocabulary": "train"}
    if name == "graph":
        settings = {"tokenizer": "lower-word-v2", "vectors": "glove-6B-50d", "vocabulary": "train",
                    "vertices": options.graph_vertices, "neighbours": options.graph_neighbours,
                    "edges": "knn-cosine-sym"}
        if options.graph_stop_words:  # only when set, so the caches of graphs built before the option stay valid
            settings["stop_words"] = "sklearn-english"
        return settings
    if name == "tfidf":
        return {"parts": "word-1-2+char_wb-2-4", "tf": "sublinear", "vocabulary": "train",
                "max_features": options.tfidf_max_features}
    raise XmodalError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")


def extract(dataset: Dataset, name: str, options: ExtractOptions, force: bool = False) -> ExtractResult:
    """Return the cached features of ``dataset`` for extractor ``name``, computing what is missing.

    With ``force`` every item is encoded again (the new rows replace the stored ones).
    ``options`` is only read.
    """
    settings = extractor_settings(name, options)
    _check_applicable(dataset, name)
    started = time.perf_counter()
    clean_features_folder()
    if name in COLLECTION_EXTRACTORS:
        return _extract_collection(dataset, name, settings, options, force, started)
    store = ContentStore(name, settings)
    if name in IMAGE_EXTRACTORS:
        keys = file_keys([item.image for item in dataset.items])  # type: ignore[misc]
    else:
        keys = [text_key(text) for text in _raw_texts(dataset)]
    final = features_root() / dataset.name / f"{name}-{view_key(store.name, keys)}"
    if not force and (cached := open_cached(final)) is not None:
        return ExtractResult(cached, True, time.perf_counter() - started)
    index = store.index()
    if name in IMAGE_EXTRACTORS:
        encoded, extra, fallback = _encode_images(dataset, keys, store, index, options, force, _IMAGE_CODECS[name])
    else:
        encoded, extra, fallback = _encode_texts(_raw_texts(dataset), keys, store, index, options, force)
    if encoded:
        index = store.index()
    if force:
        store.remove_superseded_shards()
    row_keys = [None if key is None or key not in index.rows else key for key in keys]
    if name == "minilm":
        # Per-shard maxima; per-text window counts are the view's ``windows`` array (counts do not merge by max).
        extra.update(_merge_shard_fields(index, row_keys, ("max_tokens", "most_windows")))
    manifest = {"dataset": dataset.name, "source": dataset.source, "extractor": name, "settings": settings,
                "items": len(dataset), "rows": len(keys), "encoded": encoded,
                "seconds": round(time.perf_counter() - started, 3), **extra}
    features = store.assemble(final, index, row_keys, manifest, fallback)
    prune_superseded(features)
    return ExtractResult(features, encoded == 0, time.perf_counter() - started)


def _check_applicable(dataset: Dataset, name: str) -> None:
    if name in IMAGE_EXTRACTORS and dataset.image_kind != "file":
        raise XmodalError(f"dataset {dataset.name!r} ships image features, not image files: nothing to extract "
                          f"with {name} (its features are used as they are)")
    if name in ("minilm", *COLLECTION_EXTRACTORS) and dataset.text_kind != "raw":
        raise XmodalError(f"dataset {dataset.name!r} ships text features, not texts: nothing to extract with {name}")


def _todo(keys: list[str | None], index: StoreIndex, force: bool) -> list[int]:
    """Rows whose key the store lacks (all with ``force``), one row per distinct key, in row order."""
    seen: set[str] = set()
    rows = []
    for row, key in enumerate(keys):
        if key is not None and key not in seen and (force or key not in index.rows):
            seen.add(key)
            rows.append(row)
    return rows


@dataclass(frozen=True)
class _ImageCodec:
    """What differs between image extractors: the decode size, the encoder, a shard's arrays."""

    name: str
    decode_size: Callable[[ExtractOptions], int]
    build: Callable[[ExtractOptions], Any]
    fill: Callable[..., dict[str, Any]]  # (keys, images, encoder, options, writer) -> shard manifest fields
    fallback: Callable[[ExtractOptions], dict[str, Any]]  # array shapes when no row is stored
    extra: Callable[[ExtractOptions], dict[str, Any]]  # view manifest fields


def _encode_images(dataset: Dataset, keys: list[str | None], store: ContentStore, index: StoreIndex,
                   options: ExtractOptions, force: bool, codec: _ImageCodec
                   ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Encode the images the store lacks, a committed shard per chunk; report the unreadable ones."""
    report = SkipReport(options.skip_bad)
    bad_keys: set[str | None] = {None}
    for row, key in enumerate(keys):
        if key is None:  # missing or not a file: load_rgb says why, in the words it always uses
            report.handle(_load_error(dataset.items[row].image))
    todo = _todo(keys, index, force)
    size = codec.decode_size(options)
    logger.info("%s@%dpx: %d images, %d distinct, %d of them cached, encoding %d", codec.name, size,
                len(keys), len(set(keys) - {None}), len(set(keys) - {None}) - len(todo), len(todo))
    encoded = 0
    if todo:
        encoder = codec.build(options)
        chunk = max(1, options.chunk_images)
        chunks = [todo[start : start + chunk] for start in range(0, len(todo), chunk)]
        # Decoding overlaps the forward pass only where that runs elsewhere: on a CPU the forward
        # already takes every core, and a decoding thread beside it measured slower (benchmarks/SPEED.md).
        decoded_chunks = _decoded_ahead(dataset, chunks, size, options.max_image_pixels,
                                        ahead=options.device.type != "cpu")
        for decoded in progress(decoded_chunks, total=len(chunks), desc=f"{codec.name}@{size}px",
                                unit=f"x{chunk} images"):
            good: list[str] = []
            images = []
            for row, image in decoded:
                if isinstance(image, DataError):
                    report.handle(image)  # raises unless --skip-bad; then the key is never stored
                    bad_keys.add(keys[row])
                else:
                    images.append(image)
                    good.append(keys[row])  # type: ignore[arg-type]
            if good:
                store.write_shard(partial(codec.fill, good, images, encoder, options))
                encoded += len(good)
    bad = [item.id for item, key in zip(dataset.items, keys) if key in bad_keys]
    extra = {**codec.extra(options), "bad_items": bad, "skipped": [str(e) for e in report.skipped]}
    return encoded, extra, codec.fallback(options)


def _decoded_ahead(dataset: Dataset, chunks: list[list[int]], size: int, max_pixels: int, ahead: bool = True
                   ) -> Iterator[list[tuple[int, Image.Image | DataError]]]:
    """Each chunk's rows with their decoded image (or the error that refused it), in order.

    With ``ahead`` the next chunk is decoded in a background thread while the caller encodes this
    one: Pillow releases the GIL while it decodes, so decoding overlaps a forward pass on a GPU.
    One thread, so images are opened one at a time as before."""

    def decode(rows: list[int]) -> list[tuple[int, Image.Image | DataError]]:
        decoded: list[tuple[int, Image.Image | DataError]] = []
        for row in rows:
            try:
                decoded.append((row, load_rgb(dataset.items[row].image, size, max_pixels)))
            except DataError as error:
                decoded.append((row, error))
        return decoded

    if not ahead:
        yield from map(decode, chunks)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xmodal-decode") as pool:
        pending = pool.submit(decode, chunks[0]) if chunks else None
        for following in [*chunks[1:], None]:
            current = pending.result()
            pending = pool.submit(decode, following) if following is not None else None
            yield current


def _load_error(path: Path) -> DataError:
    try:
        load_rgb(path)
    except DataError as error:
        return error
    return DataError(path, "image changed while it was being read", "run the extraction again")


def _fill_effnet(keys: list[str], images: list, encoder, options: ExtractOptions, writer: FeatureWriter
                 ) -> dict[str, Any]:
    from xmodal.encoders.image import CHANNELS

    grid = writer.allocate("grid", (len(images), encoder.grid_side**2, CHANNELS), np.float16)
    pooled = writer.allocate("pooled", (len(images), CHANNELS), np.float32)
    for start in range(0, len(images), options.batch_size):
        out = encoder.encode(images[start : start + options.batch_size])
        stop = start + len(out.pooled)
        grid[start:stop] = out.grid.cpu().numpy().astype(np.float16)
        pooled[start:stop] = out.pooled.cpu().numpy()
    return {"keys": keys, "grid_side": encoder.grid_side}


def _effnet_encoder(options: ExtractOptions):
    from xmodal.encoders.image import EfficientNetLite0

    return EfficientNetLite0(options.image_resolution, options.device)


def _effnet_fallback(options: ExtractOptions) -> dict[str, Any]:
    from xmodal.encoders.image import CHANNELS

    side = options.image_resolution // 32
    return {"grid": ((side * side, CHANNELS), "float16"), "pooled": ((CHANNELS,), "float32")}


def _objects_encoder(options: ExtractOptions):
    from xmodal.encoders.objects import ObjectProxies

    return ObjectProxies(options.device)


def _fill_objects(keys: list[str], images: list, encoder, options: ExtractOptions, writer: FeatureWriter
                  ) -> dict[str, Any]:
    from xmodal.encoders.image import CHANNELS

    objects = writer.allocate("objects", (len(images), encoder.count, CHANNELS), np.float16)
    for start in range(0, len(images), options.batch_size):
        part = encoder.encode(images[start : start + options.batch_size])
        objects[start : start + len(part)] = part.cpu().numpy().astype(np.float16)
    return {"keys": keys}


def _objects_fallback(options: ExtractOptions) -> dict[str, Any]:
    from xmodal.encoders.image import CHANNELS
    from xmodal.encoders.objects import BOXES

    return {"objects": ((len(BOXES), CHANNELS), "float16")}


def _objects_extra(options: ExtractOptions) -> dict[str, Any]:
    from xmodal.encoders.objects import BOXES

    return {"boxes": [list(box) for box in BOXES]}


def _objects_decode_size(options: ExtractOptions) -> int:
    from xmodal.encoders.objects import CROP_RESOLUTION

    return 2 * CROP_RESOLUTION


_IMAGE_CODECS = {
    "effnet": _ImageCodec("effnet", lambda options: options.image_resolution, _effnet_encoder, _fill_effnet,
                          _effnet_fallback, lambda options: {"grid_side": options.image_resolution // 32}),
    "objects": _ImageCodec("objects", _objects_decode_size, _objects_encoder, _fill_objects, _objects_fallback,
                           _objects_extra),
}


def _raw_texts(dataset: Dataset) -> list[str]:
    return [text for _, text in all_texts(dataset.items)]  # type: ignore[misc]


def _encode_texts(texts: list[str], keys: list[str | None], store: ContentStore, index: StoreIndex,
                  options: ExtractOptions, force: bool) -> tuple[int, dict[str, Any], None]:
    """Encode the texts the store lacks, a committed shard per chunk."""
    todo = _todo(keys, index, force)
    logger.info("minilm: %d texts, %d distinct, %d of them cached, encoding %d", len(keys), len(set(keys)),
                len(set(keys)) - len(todo), len(todo))
    chunk = max(1, options.chunk_texts)
    for start in range(0, len(todo), chunk):
        rows = todo[start : start + chunk]
        store.write_shard(partial(_text_shard, [texts[row] for row in rows], [keys[row] for row in rows], options))
    return len(todo), {"texts": len(texts)}, None


def _text_shard(texts: list[str], keys: list[str], options: ExtractOptions, writer: FeatureWriter
                ) -> dict[str, Any]:
    return {**_fill_minilm(texts, options, writer), "keys": keys}


def _merge_shard_fields(index: StoreIndex, keys: list[str | None], fields: tuple[str, ...]) -> dict[str, Any]:
    """The largest value of each numeric ``fields`` over the shards that hold ``keys`` (e.g. ``max_tokens``)."""
    shards = {index.rows[key][0] for key in keys if key is not None}
    merged: dict[str, Any] = {}
    for name in fields:
        values = [index.shards[shard][name] for shard in shards if name in index.shards[shard]]
        if values:
            merged[name] = max(values)
    return merged


def _fill_minilm(texts: list[str], options: ExtractOptions, writer: FeatureWriter) -> dict[str, Any]:
    """Token states of each text's first window; the sentence vector over all its windows.

    Called once per shard of texts the store lacks; texts are tokenised once. ``windows`` holds
    each text's window count (1: nothing was cut); the shard's manifest records how many texts
    needed more than one (``long_texts``) and the windows encoded in all.
    """
    from xmodal.encoders.minilm import DIMENSION, MiniLM

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


def _extract_collection(dataset: Dataset, name: str, settings: dict[str, Any], options: ExtractOptions,
                        force: bool, started: float) -> ExtractResult:
    """Collection-dependent features (a vocabulary from the training texts): keyed by the collection's texts."""
    content = [[text, item.split == "train"] for item in dataset.items for text in item.texts]
    final = features_root() / dataset.name / f"{name}-{collection_key(name, settings, content)}"
    if not force and (cached := open_cached(final)) is not None:
        return ExtractResult(cached, True, time.perf_counter() - started)
    fillers = {"words": _fill_words, "graph": partial(_fill_graph, options=options),
               "tfidf": partial(_fill_tfidf, options=options)}

    def fill(writer: FeatureWriter) -> dict[str, Any]:
        manifest = fillers[name](dataset, writer)
        return {"dataset": dataset.name, "source": dataset.source, "extractor": name, "settings": settings,
                "items": len(dataset), "seconds": round(time.perf_counter() - started, 3), **manifest}

    features = write_feature_set(final, fill)
    prune_superseded(features)
    return ExtractResult(features, False, time.perf_counter() - started)


def _train_texts(dataset: Dataset) -> list[str]:
    """The texts a vocabulary is fitted on: the training split's (every text when there is none)."""
    return [text for item in dataset.split("train") for text in item.texts] or _raw_texts(dataset)  # type: ignore[misc]


def _fill_words(dataset: Dataset, writer: FeatureWriter) -> dict[str, Any]:
    from xmodal.encoders.bow import bow_counts
    from xmodal.encoders.glove import vectors_for
    from xmodal.encoders.tokenize import Vocabulary

    texts = _raw_texts(dataset)
    vocabulary = Vocabulary.build(_train_texts(dataset))
    vocabulary.save(writer.staging / "vocabulary.json")
    ids, lengths = vocabulary.encode_padded(texts)
    vectors, found = vectors_for(vocabulary)
    writer.save("ids", ids)
    writer.save("lengths", lengths)
    writer.save("glove", vectors)
    writer.save("glove_found", found)
    writer.save_sparse("bow", bow_counts(texts, vocabulary))
    return {"texts": len(texts), "vocabulary": len(vocabulary), "glove_coverage": round(float(found[2:].mean()), 4)}


def _fill_graph(dataset: Dataset, writer: FeatureWriter, options: ExtractOptions) -> dict[str, Any]:
    from xmodal.encoders.graph import build_word_graph, save_vertices, vertex_counts

    graph = build_word_graph(_train_texts(dataset), dataset.name, options.graph_vertices, options.graph_neighbours,
                             drop_stop_words=options.graph_stop_words)
    texts = _raw_texts(dataset)
    counts = vertex_counts(texts, graph.vertices)
    save_vertices(writer.staging / "vertices.json", graph.vertices)
    writer.save_sparse("adjacency", graph.adjacency)
    writer.save_sparse("laplacian", graph.laplacian)
    writer.save_sparse("bow", counts)
    empty = int((counts.getnnz(axis=1) == 0).sum())
    if empty:
        logger.warning("dataset %r: %d of %d texts have no word on the %d-word graph (their counts are all zero); "
                       "more vertices (ExtractOptions.graph_vertices) or the tfidf input cover more words",
                       dataset.name, empty, len(texts), len(graph.vertices))
    logger.info("word graph of %s: %d vertices, %d edges, built in %.2f s", dataset.name, len(graph.vertices),
                graph.edges, graph.seconds)
    return {"texts": len(texts), "vertices": len(graph.vertices), "edges": graph.edges,
            "lambda_max": round(graph.lambda_max, 6), "build_seconds": round(graph.seconds, 3),
            "texts_without_vertex_words": empty}


def _fill_tfidf(dataset: Dataset, writer: FeatureWriter, options: ExtractOptions) -> dict[str, Any]:
    from xmodal.encoders.tfidf import TfidfEncoder

    encoder = TfidfEncoder.fit(_train_texts(dataset), options.tfidf_max_features)
    if encoder.dim == 0:
        raise XmodalError(f"dataset {dataset.name!r}: the training texts have no word or character n-gram to fit "
                          "tf-idf on; check that the texts are not empty")
    encoder.save(writer.staging)
    texts = _raw_texts(dataset)
    writer.save_sparse("tfidf", encoder.transform(texts))
    return {"texts": len(texts), "dim": encoder.dim,
            "parts": {part: len(words) for part, words in encoder.vocabularies.items()}}
