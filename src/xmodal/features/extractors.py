"""The extractors: each frozen encoder (or fitted text transform) declared once, with its settings.

An :class:`Extractor` says what it produces and how; :func:`xmodal.features.extract.extract` is a
loop over these declarations (``xmodal extract --encoders`` names them):

- ``effnet``: EfficientNet-Lite0 grid (float16, ``[items, regions, 1280]``) and pooled vector
  (float32, ``[items, 1280]``), one row per item in dataset order;
- ``objects``: 10 fixed-box crops per image, each crop's pooled EfficientNet-Lite0 vector
  (:mod:`xmodal.encoders.objects`; on demand only: 10 encoder passes per image);
- ``minilm``: MiniLM-L6 token states (float16, ``[texts, T, 384]``) and lengths of each text's
  first window, the sentence vector of the whole text (every window,
  :mod:`xmodal.encoders.minilm`) and each text's window count, one row per text in
  :func:`xmodal.data.records.all_texts` order;
- ``words``: a vocabulary built from the training texts, padded word ids and lengths, GloVe
  50-d vectors for the vocabulary, and bag-of-words counts (sparse), rows as for ``minilm``;
- ``graph``: SCANet's word graph (:mod:`xmodal.encoders.graph`): the most frequent training
  words GloVe knows, their k-nearest-neighbour adjacency and normalised Laplacian (sparse), and
  each text's counts on the vertices (sparse), rows as for ``minilm``;
- ``tfidf``: word and character n-gram TF-IDF fitted on the training texts
  (:mod:`xmodal.encoders.tfidf`; vocabularies and idf weights, rows sparse).

Item extractors (``effnet``, ``objects``, ``minilm``) are stored item by item in the content
store (:mod:`xmodal.features.store`); collection extractors (``words``, ``graph``, ``tfidf``)
are fitted on a collection's training texts and cached per collection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch

from xmodal.data.images import DEFAULT_MAX_PIXELS
from xmodal.data.records import Dataset, all_texts
from xmodal.encoders import image, minilm, objects
from xmodal.encoders.bow import bow_counts
from xmodal.encoders.glove import vectors_for
from xmodal.encoders.graph import build_word_graph, save_vertices, vertex_counts
from xmodal.encoders.tfidf import TfidfEncoder
from xmodal.encoders.tokenize import Vocabulary
from xmodal.errors import XmodalError
from xmodal.features.store import FeatureWriter
from xmodal.progress import progress
from xmodal.registry import Registry

logger = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    image_resolution: int = 224
    batch_size: int = 32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    skip_bad: bool = False
    max_text_tokens: int = minilm.DEFAULT_MAX_TOKENS
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (0: no limit); see load_rgb
    chunk_images: int = 128  # images per committed shard: what a kill can cost (about 4 s at 224 px on 2 cores)
    chunk_texts: int = 1024  # texts per committed shard
    graph_vertices: int = 2000  # word-graph vertices (the paper's vary by dataset: 598 to 10,055)
    graph_neighbours: int = 8  # k of the word graph's nearest neighbours (the paper's k)
    graph_stop_words: bool = False  # leave English stop words off the word graph's vertices
    graph_vectors: str = "glove"  # the word graph's neighbours: "glove" vectors or "ppmi" over the training texts
    tfidf_max_features: int = 4096  # tf-idf columns, half word n-grams, half character n-grams
    unknown_words: str = "zero"  # `words` rows without a GloVe vector: "zero" or "random" (model input only)


@dataclass(frozen=True)
class ImageCodec:
    """How an image extractor decodes, encodes and stores a chunk of images."""

    decode_size: Callable[[ExtractOptions], int]
    build: Callable[[ExtractOptions], Any]
    fill: Callable[..., dict[str, Any]]  # (keys, images, encoder, options, writer) -> shard manifest fields
    fallback: Callable[[ExtractOptions], dict[str, Any]]  # array shapes when no row is stored
    extra: Callable[[ExtractOptions], dict[str, Any]]  # view manifest fields


@dataclass(frozen=True)
class Extractor:
    """One extractor: its name, side, the settings that key its cache, and how it fills it.

    Exactly one of ``images`` (item extractor over image files), ``texts`` (item extractor over
    raw texts: ``(texts, options, writer) -> shard manifest fields``) and ``collection``
    (``(dataset, writer, options) -> manifest fields``, fitted on the training texts) is set.
    ``merge_fields``: numeric shard manifest fields whose largest value the view records.
    """

    name: str
    side: Literal["image", "text"]
    description: str
    settings: Callable[[ExtractOptions], dict[str, Any]]
    images: ImageCodec | None = None
    texts: Callable[[list[str], ExtractOptions, FeatureWriter], dict[str, Any]] | None = None
    collection: Callable[[Dataset, FeatureWriter, ExtractOptions], dict[str, Any]] | None = None
    merge_fields: tuple[str, ...] = ()
    default: bool = True  # run by ``xmodal extract`` when no --encoders are named

    def __post_init__(self) -> None:
        if sum(fill is not None for fill in (self.images, self.texts, self.collection)) != 1:
            raise ValueError(f"extractor {self.name!r}: set exactly one of images, texts, collection")


EXTRACTORS: Registry[Extractor] = Registry("extractor")


def register_extractor(extractor: Extractor) -> Extractor:
    return EXTRACTORS.register(extractor.name, extractor)


def default_extractors() -> list[str]:
    return [name for name, extractor in EXTRACTORS.entries().items() if extractor.default]


# -- images --------------------------------------------------------------------------------------

def _fill_effnet(keys: list[str], images: list, encoder: image.EfficientNetLite0, options: ExtractOptions,
                 writer: FeatureWriter) -> dict[str, Any]:
    grid = writer.allocate("grid", (len(images), encoder.grid_side**2, image.CHANNELS), np.float16)
    pooled = writer.allocate("pooled", (len(images), image.CHANNELS), np.float32)
    for start in range(0, len(images), options.batch_size):
        out = encoder.encode(images[start : start + options.batch_size])
        stop = start + len(out.pooled)
        grid[start:stop] = out.grid.cpu().numpy().astype(np.float16)
        pooled[start:stop] = out.pooled.cpu().numpy()
    return {"keys": keys, "grid_side": encoder.grid_side}


def _effnet_fallback(options: ExtractOptions) -> dict[str, Any]:
    side = options.image_resolution // 32
    return {"grid": ((side * side, image.CHANNELS), "float16"), "pooled": ((image.CHANNELS,), "float32")}


register_extractor(Extractor(
    "effnet", "image", "EfficientNet-Lite0 region grid and pooled vector",
    # "loader": large images are shrunk while decoding (JPEG draft, integer reduce) since v2.
    settings=lambda options: {"encoder": "efficientnet-lite0", "resolution": options.image_resolution,
                              "loader": "reduce-on-load-v2"},
    images=ImageCodec(decode_size=lambda options: options.image_resolution,
                      build=lambda options: image.EfficientNetLite0(options.image_resolution, options.device),
                      fill=_fill_effnet, fallback=_effnet_fallback,
                      extra=lambda options: {"grid_side": options.image_resolution // 32})))


def _fill_objects(keys: list[str], images: list, encoder: objects.ObjectProxies, options: ExtractOptions,
                  writer: FeatureWriter) -> dict[str, Any]:
    array = writer.allocate("objects", (len(images), encoder.count, image.CHANNELS), np.float16)
    for start in range(0, len(images), options.batch_size):
        part = encoder.encode(images[start : start + options.batch_size])
        array[start : start + len(part)] = part.cpu().numpy().astype(np.float16)
    return {"keys": keys}


register_extractor(Extractor(
    "objects", "image", "10 fixed-box crops per image through EfficientNet-Lite0 (object proxies)",
    settings=lambda options: {"encoder": "efficientnet-lite0", "boxes": [list(box) for box in objects.BOXES],
                              "decode": 2 * objects.CROP_RESOLUTION, "crop": objects.CROP_RESOLUTION,
                              "loader": "reduce-on-load-v2"},
    images=ImageCodec(decode_size=lambda options: 2 * objects.CROP_RESOLUTION,
                      build=lambda options: objects.ObjectProxies(options.device),
                      fill=_fill_objects,
                      fallback=lambda options: {"objects": ((len(objects.BOXES), image.CHANNELS), "float16")},
                      extra=lambda options: {"boxes": [list(box) for box in objects.BOXES]}),
    default=False))  # 10 encoder passes per image: extracted when a model asks for it (or by name)


# -- texts, item by item ---------------------------------------------------------------------------

def _fill_minilm(texts: list[str], options: ExtractOptions, writer: FeatureWriter) -> dict[str, Any]:
    """Token states of each text's first window; the sentence vector over all its windows.

    Called once per shard of texts the store lacks; texts are tokenised once. ``windows`` holds
    each text's window count (1: nothing was cut); the shard's manifest records how many texts
    needed more than one (``long_texts``) and the windows encoded in all.
    """
    encoder = minilm.MiniLM(options.max_text_tokens, options.device)
    windows = encoder.windows(texts)
    width = max(len(text_windows[0]) for text_windows in windows)
    tokens = writer.allocate("tokens", (len(texts), width, minilm.DIMENSION), np.float16)
    lengths = writer.allocate("lengths", (len(texts),), np.int32)
    sentence = writer.allocate("sentence", (len(texts), minilm.DIMENSION), np.float32)
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


register_extractor(Extractor(
    "minilm", "text", "MiniLM-L6 token states and sentence vectors",
    # "sentence": the sentence vector is the token-weighted mean over windows of the whole text (v1).
    settings=lambda options: {"encoder": "all-MiniLM-L6-v2", "max_tokens": options.max_text_tokens,
                              "sentence": "windows-v1"},
    texts=_fill_minilm,
    # Per-shard maxima; per-text window counts are the view's ``windows`` array (counts do not merge by max).
    merge_fields=("max_tokens", "most_windows")))


# -- texts, per collection (fitted on the training texts) ------------------------------------------

def raw_texts(dataset: Dataset) -> list[str]:
    return [text for _, text in all_texts(dataset.items)]  # type: ignore[misc]


def train_texts(dataset: Dataset) -> list[str]:
    """The texts a vocabulary is fitted on: the training split's (every text when there is none)."""
    return [text for item in dataset.split("train") for text in item.texts] or raw_texts(dataset)  # type: ignore[misc]


def _fill_words(dataset: Dataset, writer: FeatureWriter, options: ExtractOptions) -> dict[str, Any]:
    texts = raw_texts(dataset)
    vocabulary = Vocabulary.build(train_texts(dataset))
    vocabulary.save(writer.staging / "vocabulary.json")
    ids, lengths = vocabulary.encode_padded(texts)
    vectors, found = vectors_for(vocabulary)
    writer.save("ids", ids)
    writer.save("lengths", lengths)
    writer.save("glove", vectors)
    writer.save("glove_found", found)
    writer.save_sparse("bow", bow_counts(texts, vocabulary))
    return {"texts": len(texts), "vocabulary": len(vocabulary), "glove_coverage": round(float(found[2:].mean()), 4)}


register_extractor(Extractor(
    "words", "text", "a training-split vocabulary with GloVe 6B 50-d vectors, word ids, bag of words",
    settings=lambda options: {"tokenizer": "lower-word-v2", "vectors": "glove-6B-50d", "vocabulary": "train"},
    collection=_fill_words))


def _graph_settings(options: ExtractOptions) -> dict[str, Any]:
    vectors = "glove-6B-50d" if options.graph_vectors == "glove" else "ppmi-text-cooccurrence"
    settings = {"tokenizer": "lower-word-v2", "vectors": vectors, "vocabulary": "train",
                "vertices": options.graph_vertices, "neighbours": options.graph_neighbours, "edges": "knn-cosine-sym"}
    if options.graph_stop_words:  # only when set, so the caches of graphs built before the option stay valid
        settings["stop_words"] = "sklearn-english"
    return settings


def _fill_graph(dataset: Dataset, writer: FeatureWriter, options: ExtractOptions) -> dict[str, Any]:
    graph = build_word_graph(train_texts(dataset), dataset.name, options.graph_vertices, options.graph_neighbours,
                             drop_stop_words=options.graph_stop_words, vectors=options.graph_vectors)
    texts = raw_texts(dataset)
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


register_extractor(Extractor(
    "graph", "text", "SCANet's word graph (GloVe or PPMI k-nearest neighbours) and each text's counts on it",
    settings=_graph_settings, collection=_fill_graph))


def _fill_tfidf(dataset: Dataset, writer: FeatureWriter, options: ExtractOptions) -> dict[str, Any]:
    encoder = TfidfEncoder.fit(train_texts(dataset), options.tfidf_max_features)
    if encoder.dim == 0:
        raise XmodalError(f"dataset {dataset.name!r}: the training texts have no word or character n-gram to fit "
                          "tf-idf on; check that the texts are not empty")
    encoder.save(writer.staging)
    texts = raw_texts(dataset)
    writer.save_sparse("tfidf", encoder.transform(texts))
    return {"texts": len(texts), "dim": encoder.dim,
            "parts": {part: len(words) for part, words in encoder.vocabularies.items()}}


register_extractor(Extractor(
    "tfidf", "text", "word and character n-gram TF-IDF fitted on the training texts (any language)",
    settings=lambda options: {"parts": "word-1-2+char_wb-2-4", "tf": "sublinear", "vocabulary": "train",
                              "max_features": options.tfidf_max_features},
    collection=_fill_tfidf))
