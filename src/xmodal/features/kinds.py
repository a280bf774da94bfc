"""The registry of model input kinds: each kind declared once, with everything the pipeline needs.

An input kind is one part of what a model reads from one side: an image's ``global`` vector or
its ``regions``; a text's ``global`` vector, its ``words`` (ids into a GloVe-initialised
vocabulary), its ``tokens`` (MiniLM states), its ``bow`` (counts on SCANet's word graph) or its
``tfidf`` vector (word and character n-grams, any language). Each :class:`InputKind` says

- which side it belongs to and a one-line description (error messages, ``xmodal models``);
- which datasets can feed it (image files or raw texts, or feature arrays of a given shape);
- how its rows are read for a split (``source``: from the feature cache, extracting once, or
  from the dataset's own arrays) and what it adds to :class:`~xmodal.models.base.InputSpec`;
- how items outside the dataset (queries) are encoded the same way (``encode_new``, given the
  run's :class:`~xmodal.features.pipeline.InputPipeline`), and what of the training data that
  needs (``state``: the vocabulary of ``words``, the graph's words of ``bow``, the TF-IDF
  vocabularies), which a run keeps in its folder (``save_state`` / ``load_state``);
- a small synthetic example for tests (``example``).

Adding a kind is one :func:`register_kind` call; models name kinds in ``image_inputs`` /
``text_inputs`` (alternatives for one part, preferred first) or ``image_parts`` /
``text_parts`` (several parts, each with its alternatives).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from xmodal.data.images import load_rgb, to_rgb
from xmodal.data.records import Dataset
from xmodal.encoders import image as effnet
from xmodal.encoders import minilm
from xmodal.encoders import objects as object_proxies
from xmodal.encoders import tfidf as tfidf_encoder
from xmodal.encoders.graph import build_graph, load_vertices, save_vertices, vertex_counts
from xmodal.encoders.tokenize import Vocabulary
from xmodal.errors import XmodalError
from xmodal.features.extract import extract
from xmodal.models.base import Rep
from xmodal.registry import Registry

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from xmodal.features.inputs import ModelData
    from xmodal.features.pipeline import InputPipeline

Side = Literal["image", "text"]
RowReader = Callable[[np.ndarray], Rep]


@dataclass
class KindSource:
    """A kind's rows for one dataset: the reader, and the :class:`InputSpec` fields it sets."""

    reader: RowReader
    spec: dict[str, Any]


@dataclass(frozen=True)
class ExampleDims:
    """Sizes of the synthetic examples the contract test feeds every model."""

    image_dim: int = 24
    text_dim: int = 16
    regions: int = 4
    grid_side: int = 2
    vocab: int = 30
    length: int = 6


@dataclass(frozen=True)
class InputKind:
    name: str
    side: Side
    description: str
    keys: tuple[str, ...]  # the representation keys the kind provides
    feeds: Callable[[Dataset], bool]  # can this dataset feed it?
    source: Callable[["ModelData"], KindSource]
    example: Callable[[int, torch.Generator, ExampleDims], Rep]
    example_spec: Callable[[ExampleDims, torch.Generator], dict[str, Any]]
    encode_new: Callable[["InputPipeline", Sequence[Any]], Rep] | None = None
    extractor: str | None = None  # the cached extractor behind it (``xmodal extract --encoders``)
    notes: dict[str, str] = field(default_factory=dict)
    # What encode_new needs of the training data, read from its features; saved into a run's folder.
    state: Callable[["ModelData"], Any] | None = None
    save_state: Callable[[Any, Path], None] | None = None
    load_state: Callable[[Path], Any] | None = None


KINDS: dict[str, Registry[InputKind]] = {"image": Registry("image input"), "text": Registry("text input")}


def register_kind(kind: InputKind) -> InputKind:
    return KINDS[kind.side].register(kind.name, kind)


def get_kind(side: str, name: str) -> InputKind:
    if side not in KINDS:
        raise XmodalError(f"unknown side {side!r}; choose from {', '.join(KINDS)}")
    return KINDS[side].get(name)


def kind_names(side: str) -> list[str]:
    return KINDS[side].names()


def describe(side: str, name: str) -> str:
    return get_kind(side, name).description


# -- shared readers --------------------------------------------------------------------------

def float_rows(array: np.ndarray, rows: np.ndarray, sort: bool = False) -> Tensor:
    """float32 rows of ``array``; ``sort`` reads a memory map in row order and restores the request's."""
    if not sort:
        return torch.from_numpy(np.asarray(array[rows], dtype=np.float32))
    order = np.argsort(rows, kind="stable")
    tensor = torch.from_numpy(np.asarray(array[rows[order]], dtype=np.float32))
    return tensor[torch.from_numpy(np.argsort(order, kind="stable"))]


def _sequence_reader(values: np.ndarray, lengths: np.ndarray, key: str, as_float: bool) -> RowReader:
    """Rows of a padded sequence array cut to the batch's longest, with their lengths."""

    def read(rows: np.ndarray) -> Rep:
        batch_lengths = torch.from_numpy(np.asarray(lengths[rows], dtype=np.int64))
        width = max(1, int(batch_lengths.max()))
        part = values[rows, :width]
        tensor = torch.from_numpy(np.asarray(part, dtype=np.float32 if as_float else np.int64))
        return {key: tensor, "lengths": batch_lengths}

    return read


def _random_lengths(n: int, generator: torch.Generator, dims: ExampleDims) -> Tensor:
    return torch.randint(2, dims.length, (n,), generator=generator)


def _padded(values: Tensor, lengths: Tensor) -> Tensor:
    values[torch.arange(values.shape[1])[None, :] >= lengths[:, None]] = 0
    return values


# -- images ----------------------------------------------------------------------------------

def _has_image_files(dataset: Dataset) -> bool:
    return dataset.image_kind == "file"


def _image_array(dataset: Dataset) -> np.ndarray | None:
    return dataset.arrays.get("image") if dataset.image_kind == "features" else None


def _has_image_sets(dataset: Dataset) -> bool:
    """Image files, or an image array of vector sets ``[n, P, d]`` (regions or objects) per item."""
    array = _image_array(dataset)
    return _has_image_files(dataset) or (array is not None and array.ndim == 3)


def _effnet(data: "ModelData"):
    return data.checked_images(extract(data.dataset, "effnet", data.options).features)


def _global_image_source(data: "ModelData") -> KindSource:
    array = _image_array(data.dataset)
    if array is not None:  # the dataset's own vectors; a region array is mean-pooled
        if array.ndim == 3:
            return KindSource(lambda rows: {"features": float_rows(array, rows).mean(1)}, {"dim": array.shape[2]})
        return KindSource(lambda rows: {"features": float_rows(array, rows)}, {"dim": array.shape[1]})
    pooled = _effnet(data).array("pooled")
    return KindSource(lambda rows: {"features": float_rows(pooled, rows, sort=True)}, {"dim": pooled.shape[1]})


def _region_source(data: "ModelData") -> KindSource:
    array = _image_array(data.dataset)
    if array is not None:
        return KindSource(lambda rows: {"regions": float_rows(array, rows)},
                          {"dim": array.shape[2], "regions": array.shape[1], "grid_side": None})
    features = _effnet(data)
    grid = features.array("grid")
    return KindSource(lambda rows: {"regions": float_rows(grid, rows, sort=True)},
                      {"dim": grid.shape[2], "regions": grid.shape[1], "grid_side": features.manifest["grid_side"]})


def _new_pictures(pipeline: "InputPipeline", images: Sequence[str | Path | Image.Image], size: int
                  ) -> list[Image.Image]:
    """New images (files or PIL images) as extraction decodes them: RGB, ``size x size``."""
    refusal = pipeline.refusal("image")
    if refusal:
        raise XmodalError(refusal)
    images = list(images)
    if not images:
        raise XmodalError("encode_new_images: give at least one image (a file path or a PIL image)")
    return [to_rgb(image).resize((size, size), Image.Resampling.BICUBIC) if isinstance(image, Image.Image)
            else load_rgb(Path(image), size) for image in images]


def _new_image_features(pipeline: "InputPipeline", images: Sequence[str | Path | Image.Image]):
    resolution = pipeline.options.image_resolution
    encoder = pipeline.encoder("effnet", lambda: _load_effnet(resolution, pipeline.options.device))
    return encoder.encode(_new_pictures(pipeline, images, resolution))


def _load_effnet(resolution: int, device: torch.device):
    return effnet.EfficientNetLite0(resolution, device)


register_kind(InputKind(
    "global", "image", "global features", ("features",),
    feeds=lambda dataset: True,
    source=_global_image_source,
    example=lambda n, g, dims: {"features": torch.randn(n, dims.image_dim, generator=g)},
    example_spec=lambda dims, g: {"dim": dims.image_dim},
    encode_new=lambda pipeline, images: {"features": _new_image_features(pipeline, images).pooled.cpu()},
    extractor="effnet"))

register_kind(InputKind(
    "regions", "image", "regions", ("regions",),
    feeds=_has_image_sets,
    source=_region_source,
    example=lambda n, g, dims: {"regions": torch.randn(n, dims.regions, dims.image_dim, generator=g)},
    example_spec=lambda dims, g: {"dim": dims.image_dim, "regions": dims.regions, "grid_side": dims.grid_side},
    encode_new=lambda pipeline, images: {"regions": _new_image_features(pipeline, images).grid.cpu()},
    extractor="effnet"))


def _object_source(data: "ModelData") -> KindSource:
    array = _image_array(data.dataset)
    if array is not None:  # object (region) features the dataset ships, [n, P, d]
        return KindSource(lambda rows: {"objects": float_rows(array, rows)},
                          {"dim": array.shape[2], "count": array.shape[1]})
    objects = data.checked_images(extract(data.dataset, "objects", data.options).features).array("objects")
    return KindSource(lambda rows: {"objects": float_rows(objects, rows, sort=True)},
                      {"dim": objects.shape[2], "count": objects.shape[1]})


def _new_objects(pipeline: "InputPipeline", images: Sequence[str | Path | Image.Image]) -> Rep:
    pictures = _new_pictures(pipeline, images, 2 * object_proxies.CROP_RESOLUTION)
    encoder = pipeline.encoder("objects", lambda: object_proxies.ObjectProxies(pipeline.options.device))
    return {"objects": encoder.encode(pictures).cpu()}


register_kind(InputKind(
    "objects", "image", "object features", ("objects",),
    feeds=_has_image_sets,
    source=_object_source,
    example=lambda n, g, dims: {"objects": torch.randn(n, dims.regions + 1, dims.image_dim, generator=g)},
    example_spec=lambda dims, g: {"dim": dims.image_dim, "count": dims.regions + 1},
    encode_new=_new_objects,
    extractor="objects",
    notes={"stands in for": "Faster R-CNN top-10 proposals (BSSAN): 10 fixed boxes at three scales, each crop "
                            "through EfficientNet-Lite0 (xmodal.encoders.objects)"}))


# -- texts -----------------------------------------------------------------------------------

def _has_raw_texts(dataset: Dataset) -> bool:
    return dataset.text_kind == "raw"


def _minilm(data: "ModelData"):
    return extract(data.dataset, "minilm", data.options).features


def _global_text_source(data: "ModelData") -> KindSource:
    if not _has_raw_texts(data.dataset):
        array = data.dataset.arrays["text"]
        return KindSource(lambda rows: {"features": float_rows(array, rows)}, {"dim": array.shape[1]})
    sentence = _minilm(data).array("sentence")
    return KindSource(lambda rows: {"features": float_rows(sentence, rows)}, {"dim": sentence.shape[1]})


def _token_source(data: "ModelData") -> KindSource:
    features = _minilm(data)
    tokens = features.array("tokens")
    return KindSource(_sequence_reader(tokens, features.array("lengths"), "tokens", as_float=True),
                      {"dim": tokens.shape[2]})


def word_rows(vectors: np.ndarray, found: np.ndarray, unknown: str) -> Tensor:
    """The embedding rows a ``words`` model starts from: GloVe's where it has the word; the others zero,
    or with ``unknown="random"`` a fixed Gaussian draw at the scale of the known rows (so each word
    of a script GloVe does not cover starts distinct). Row 0 (padding) stays zero."""
    rows = torch.from_numpy(np.array(vectors, dtype=np.float32))
    missing = ~torch.from_numpy(np.array(found, dtype=bool))  # a copy: the memmap is read-only
    missing[0] = False
    if unknown == "random" and bool(missing.any()):
        known = rows[~missing][1:]
        scale = float(known.std()) if len(known) > 1 else 1.0 / rows.shape[1] ** 0.5
        draw = torch.randn(int(missing.sum()), rows.shape[1], generator=torch.Generator().manual_seed(0))
        rows[missing] = draw * scale
    return rows


def _word_source(data: "ModelData") -> KindSource:
    features = extract(data.dataset, "words", data.options).features
    found = np.asarray(features.array("glove_found"), dtype=bool)
    vectors = word_rows(features.array("glove"), found, data.options.unknown_words)
    coverage = float(found[2:].mean()) if len(found) > 2 else 1.0
    if coverage < 0.8:
        advice = ("they start as random vectors (data.unknown_words: random)" if data.options.unknown_words == "random"
                  else "they start at zero; a model that trains its embedding learns them, one that freezes it cannot "
                       "(set data.unknown_words: random)")
        logger.warning("GloVe knows %.0f%% of the %d words of %s's vocabulary: %s", 100 * coverage, len(found) - 2,
                       data.dataset.name, advice)
    return KindSource(_sequence_reader(features.array("ids"), features.array("lengths"), "ids", as_float=False),
                      {"dim": vectors.shape[1], "vocab_size": len(vectors), "word_vectors": vectors})


def _checked_texts(pipeline: "InputPipeline", texts: Sequence[str]) -> list[str]:
    refusal = pipeline.refusal("text")
    if refusal:
        raise XmodalError(refusal)
    texts = list(texts)
    if not texts or not all(isinstance(text, str) for text in texts):
        raise XmodalError("encode_new_texts: give a non-empty list of strings")
    return texts


def _new_minilm(pipeline: "InputPipeline", texts: Sequence[str]):
    options = pipeline.options
    encoder = pipeline.encoder("minilm", lambda: minilm.MiniLM(options.max_text_tokens, options.device))
    return encoder.encode(_checked_texts(pipeline, texts))


def _vocabulary(data: "ModelData") -> Vocabulary:
    return Vocabulary.load(extract(data.dataset, "words", data.options).features.path / "vocabulary.json")


def _new_words(pipeline: "InputPipeline", texts: Sequence[str]) -> Rep:
    vocabulary: Vocabulary = pipeline.state("text.words")
    ids, lengths = vocabulary.encode_padded(_checked_texts(pipeline, texts))
    return {"ids": torch.from_numpy(ids).long(), "lengths": torch.from_numpy(lengths).long()}


def _token_rep(out) -> Rep:
    return {"tokens": out.tokens.cpu(), "lengths": out.lengths.long().cpu()}


def _example_words(n: int, g: torch.Generator, dims: ExampleDims) -> Rep:
    lengths = _random_lengths(n, g, dims)
    return {"ids": _padded(torch.randint(2, dims.vocab, (n, dims.length), generator=g), lengths), "lengths": lengths}


def _example_tokens(n: int, g: torch.Generator, dims: ExampleDims) -> Rep:
    lengths = _random_lengths(n, g, dims)
    return {"tokens": _padded(torch.randn(n, dims.length, dims.text_dim, generator=g), lengths), "lengths": lengths}


register_kind(InputKind(
    "global", "text", "global features", ("features",),
    feeds=lambda dataset: True,
    source=_global_text_source,
    example=lambda n, g, dims: {"features": torch.randn(n, dims.text_dim, generator=g)},
    example_spec=lambda dims, g: {"dim": dims.text_dim},
    encode_new=lambda pipeline, texts: {"features": _new_minilm(pipeline, texts).sentence.cpu()},
    extractor="minilm"))

register_kind(InputKind(
    "words", "text", "word sequences", ("ids", "lengths"),
    feeds=_has_raw_texts,
    source=_word_source,
    example=_example_words,
    example_spec=lambda dims, g: {"dim": dims.text_dim, "vocab_size": dims.vocab,
                                  "word_vectors": torch.randn(dims.vocab, dims.text_dim, generator=g)},
    encode_new=_new_words,
    extractor="words",
    state=_vocabulary,
    save_state=lambda vocabulary, folder: vocabulary.save(folder / "vocabulary.json"),
    load_state=lambda folder: Vocabulary.load(folder / "vocabulary.json")))

register_kind(InputKind(
    "tokens", "text", "token sequences", ("tokens", "lengths"),
    feeds=_has_raw_texts,
    source=_token_source,
    example=_example_tokens,
    example_spec=lambda dims, g: {"dim": dims.text_dim},
    encode_new=lambda pipeline, texts: _token_rep(_new_minilm(pipeline, texts)),
    extractor="minilm"))


# -- texts on the word graph (SCANet) and tf-idf -------------------------------------------------

def _sparse_rows(matrix, key: str) -> RowReader:
    """Dense float32 rows of a sparse (CSR) matrix, one batch at a time."""
    return lambda rows: {key: torch.from_numpy(np.asarray(matrix[rows].toarray(), dtype=np.float32))}


def torch_sparse(matrix) -> Tensor:
    """A scipy sparse matrix as a coalesced float32 torch COO tensor (``torch.sparse.mm`` reads it)."""
    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                   check_invariants=True).coalesce()


def _graph_features(data: "ModelData"):
    return extract(data.dataset, "graph", data.options).features


def _graph_spec(vertices: list[str], laplacian, lambda_max: float) -> dict[str, Any]:
    return {"dim": len(vertices), "vertices": vertices, "laplacian": torch_sparse(laplacian),
            "lambda_max": float(lambda_max)}


def _bow_source(data: "ModelData") -> KindSource:
    features = _graph_features(data)
    return KindSource(_sparse_rows(features.sparse("bow"), "bow"),
                      _graph_spec(load_vertices(features.path / "vertices.json"), features.sparse("laplacian"),
                                  features.manifest["lambda_max"]))


def _new_bow(pipeline: "InputPipeline", texts: Sequence[str]) -> Rep:
    vertices: list[str] = pipeline.state("text.bow")
    texts = _checked_texts(pipeline, texts)
    counts = vertex_counts(texts, vertices)
    empty = np.flatnonzero(counts.getnnz(axis=1) == 0)
    if len(empty):
        raise XmodalError(f"text {texts[empty[0]]!r} has no word of the run's {len(vertices)}-word graph (built on "
                          f"{pipeline.settings.dataset}); use more common English words, or a run with the tfidf input")
    return {"bow": torch.from_numpy(counts.toarray())}


def _example_graph_spec(dims: ExampleDims, g: torch.Generator) -> dict[str, Any]:
    vectors = torch.randn(dims.vocab, dims.text_dim, generator=g).numpy()
    graph = build_graph([f"w{i}" for i in range(dims.vocab)], vectors, k=4)
    return _graph_spec(graph.vertices, graph.laplacian, graph.lambda_max)


def _example_bow(n: int, g: torch.Generator, dims: ExampleDims) -> Rep:
    counts = torch.randint(0, 3, (n, dims.vocab), generator=g) * (torch.rand(n, dims.vocab, generator=g) < 0.2)
    counts[torch.arange(n), torch.randint(0, dims.vocab, (n,), generator=g)] += 1  # every text has a word
    return {"bow": counts.float()}


register_kind(InputKind(
    "bow", "text", "word counts on a word graph", ("bow",),
    feeds=_has_raw_texts,
    source=_bow_source,
    example=_example_bow,
    example_spec=_example_graph_spec,
    encode_new=_new_bow,
    extractor="graph",
    state=lambda data: load_vertices(_graph_features(data).path / "vertices.json"),
    save_state=lambda vertices, folder: save_vertices(folder / "vertices.json", vertices),
    load_state=lambda folder: load_vertices(folder / "vertices.json")))


def _tfidf_features(data: "ModelData"):
    return extract(data.dataset, "tfidf", data.options).features


def _tfidf_source(data: "ModelData") -> KindSource:
    matrix = _tfidf_features(data).sparse("tfidf")
    return KindSource(_sparse_rows(matrix, "features"), {"dim": matrix.shape[1]})


def _new_tfidf(pipeline: "InputPipeline", texts: Sequence[str]) -> Rep:
    encoder: tfidf_encoder.TfidfEncoder = pipeline.state("text.tfidf")
    return {"features": torch.from_numpy(encoder.transform(_checked_texts(pipeline, texts)).toarray())}


register_kind(InputKind(
    "tfidf", "text", "tf-idf vectors (word and character n-grams)", ("features",),
    feeds=_has_raw_texts,
    source=_tfidf_source,
    example=lambda n, g, dims: {"features": torch.rand(n, dims.text_dim, generator=g)},
    example_spec=lambda dims, g: {"dim": dims.text_dim},
    encode_new=_new_tfidf,
    extractor="tfidf",
    state=lambda data: tfidf_encoder.TfidfEncoder.load(_tfidf_features(data).path),
    save_state=lambda encoder, folder: encoder.save(folder),
    load_state=tfidf_encoder.TfidfEncoder.load))
