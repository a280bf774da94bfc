"""Running the extractors (:mod:`xmodal.features.extractors`) over a dataset once and caching what they produce.

Item extractors (``effnet``, ``objects``, ``minilm``) store their features item by item under what
produced them (the image file's content hash, the text string; see :mod:`xmodal.features.store`):
a call encodes only the items the store lacks, in chunks committed one by one (so a killed run
resumes where it stopped), then gathers the dataset's view in row order. Collection extractors
(``words``, ``graph``, ``tfidf``) depend on the whole collection (a vocabulary fitted on its
training texts) and take seconds, so each is cached per collection.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from xmodal.data.images import load_rgb
from xmodal.data.records import Dataset
from xmodal.errors import DataError, SkipReport, XmodalError
from xmodal.features.extractors import EXTRACTORS, ExtractOptions, Extractor, raw_texts
from xmodal.features.shards import Shard, ShardMarkers, merged
from xmodal.features.store import (
    ContentStore,
    FeatureSet,
    FeatureWriter,
    StoreIndex,
    clean_features_folder,
    collection_key,
    features_root,
    open_cached,
    prune_superseded,
    text_key,
    view_key,
    write_feature_set,
)
from xmodal.file_hashes import file_keys
from xmodal.progress import progress

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

@dataclass
class ExtractResult:
    features: FeatureSet
    cached: bool  # nothing was encoded: every row came from the cache
    seconds: float


def extractor_settings(name: str, options: ExtractOptions) -> dict[str, Any]:
    """The settings that change an extractor's output (and so its cache key)."""
    return EXTRACTORS.get(name).settings(options)


def extract(dataset: Dataset, name: str, options: ExtractOptions, force: bool = False) -> ExtractResult:
    """Return the cached features of ``dataset`` for extractor ``name``, computing what is missing.

    With ``force`` every item is encoded again (the new rows replace the stored ones).
    ``options`` is only read.
    """
    extractor = EXTRACTORS.get(name)
    settings = extractor.settings(options)
    _check_applicable(dataset, extractor)
    started = time.perf_counter()
    clean_features_folder()
    if extractor.collection is not None:
        return _extract_collection(dataset, extractor, settings, options, force, started)
    store = ContentStore(name, settings)
    if extractor.side == "image":
        keys = file_keys([item.image for item in dataset.items])  # type: ignore[misc]
    else:
        keys = [text_key(text) for text in raw_texts(dataset)]
    final = _view_path(dataset, store, keys)
    if not force and (cached := open_cached(final)) is not None:
        return ExtractResult(cached, True, time.perf_counter() - started)
    index = store.index()
    if extractor.images is not None:
        encoded, extra, fallback = _encode_images(dataset, keys, store, index, options, force, extractor)
    else:
        encoded, extra, fallback = _encode_texts(raw_texts(dataset), keys, store, index, options, force, extractor)
    if force:
        store.remove_superseded_shards()
    return _assemble(dataset, name, store, keys, final, extra, fallback, extractor, started, encoded)


def _view_path(dataset: Dataset, store: ContentStore, keys: list[str | None]) -> Path:
    """Where the dataset's view of ``store`` lives: keyed by the store and the rows' content keys."""
    return features_root() / dataset.name / f"{store.extractor}-{view_key(store.name, keys)}"


def _assemble(dataset: Dataset, name: str, store: ContentStore, keys: list[str | None], final: Path,
              extra: dict[str, Any], fallback: Any, extractor: Extractor, started: float, encoded: int
              ) -> ExtractResult:
    """Gather the dataset's view from the store in row order (keys the store lacks give zero rows)."""
    index = store.index()
    row_keys = [None if key is None or key not in index.rows else key for key in keys]
    extra.update(_merge_shard_fields(index, row_keys, extractor.merge_fields))
    manifest = {"dataset": dataset.name, "source": dataset.source, "extractor": name, "settings": store.settings,
                "items": len(dataset), "rows": len(keys), "encoded": encoded,
                "seconds": round(time.perf_counter() - started, 3), **extra}
    features = store.assemble(final, index, row_keys, manifest, fallback)
    prune_superseded(features)
    return ExtractResult(features, encoded == 0, time.perf_counter() - started)


@dataclass
class ShardResult:
    encoded: int  # images this shard encoded now
    seconds: float
    view: ExtractResult | None  # the dataset's view, when this shard completed the set (or it was cached)
    waiting: list[int]  # shards that have not finished
    left_to_shard_0: bool = False  # not an image extractor: shard 0 runs it whole


def extract_shard(dataset: Dataset, name: str, options: ExtractOptions, shard: Shard) -> ShardResult:
    """Encode this shard's part of the images (:mod:`xmodal.features.shards`); the shard that completes
    the set gathers the view. Text and collection extractors are cheap and run whole in shard 0."""
    extractor = EXTRACTORS.get(name)
    started = time.perf_counter()
    if extractor.images is None:
        if shard.index != 0:
            return ShardResult(0, 0.0, None, [], left_to_shard_0=True)
        result = extract(dataset, name, options)
        return ShardResult(int(result.features.manifest.get("encoded", 0)), result.seconds, result, [])
    _check_applicable(dataset, extractor)
    clean_features_folder()
    store = ContentStore(name, extractor.settings(options))
    keys = file_keys([item.image for item in dataset.items])  # type: ignore[misc]
    final = _view_path(dataset, store, keys)
    if (cached := open_cached(final)) is not None:
        return ShardResult(0, time.perf_counter() - started, ExtractResult(cached, True, 0.0), [])
    encoded, extra, fallback = _encode_images(dataset, keys, store, store.index(), options, False, extractor,
                                              owns=shard.owns)
    markers = ShardMarkers(final, shard.count)
    markers.finish(shard, {"encoded": encoded, "bad_items": extra["bad_items"], "skipped": extra["skipped"]})
    waiting = markers.waiting()
    if waiting:
        logger.info("%s shard %s: encoded %d images; waiting for shard(s) %s before the view is built", name,
                    shard, encoded, ", ".join(map(str, waiting)))
        return ShardResult(encoded, time.perf_counter() - started, None, waiting)
    reports = markers.reports()
    extra.update(bad_items=merged(reports, "bad_items"), skipped=merged(reports, "skipped"))
    view = _assemble(dataset, name, store, keys, final, extra, fallback, extractor, started,
                     encoded=sum(report["encoded"] for report in reports))
    markers.remove()
    return ShardResult(encoded, time.perf_counter() - started, view, [])


def _check_applicable(dataset: Dataset, extractor: Extractor) -> None:
    if extractor.side == "image" and dataset.image_kind != "file":
        raise XmodalError(f"dataset {dataset.name!r} ships image features, not image files: nothing to extract "
                          f"with {extractor.name} (its features are used as they are)")
    if extractor.side == "text" and dataset.text_kind != "raw":
        raise XmodalError(f"dataset {dataset.name!r} ships text features, not texts: nothing to extract with "
                          f"{extractor.name}")


def _todo(keys: list[str | None], index: StoreIndex, force: bool) -> list[int]:
    """Rows whose key the store lacks (all with ``force``), one row per distinct key, in row order."""
    seen: set[str] = set()
    rows = []
    for row, key in enumerate(keys):
        if key is not None and key not in seen and (force or key not in index.rows):
            seen.add(key)
            rows.append(row)
    return rows


def _encode_images(dataset: Dataset, keys: list[str | None], store: ContentStore, index: StoreIndex,
                   options: ExtractOptions, force: bool, extractor: Extractor,
                   owns: Callable[[str], bool] | None = None) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Encode the images the store lacks (those ``owns`` accepts, when given), a committed shard per
    chunk; report the unreadable ones."""
    codec = extractor.images
    assert codec is not None
    report = SkipReport(options.skip_bad)
    bad_keys: set[str | None] = {None}
    for row, key in enumerate(keys):
        if key is None:  # missing or not a file: load_rgb says why, in the words it always uses
            report.handle(_load_error(dataset.items[row].image))
    todo = _todo(keys, index, force)
    if owns is not None:
        todo = [row for row in todo if owns(keys[row])]  # type: ignore[arg-type]
    size = codec.decode_size(options)
    logger.info("%s@%dpx: %d images, %d distinct, %d of them cached, encoding %d", extractor.name, size,
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
        for decoded in progress(decoded_chunks, total=len(chunks), desc=f"{extractor.name}@{size}px",
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


def _encode_texts(texts: list[str], keys: list[str | None], store: ContentStore, index: StoreIndex,
                  options: ExtractOptions, force: bool, extractor: Extractor) -> tuple[int, dict[str, Any], None]:
    """Encode the texts the store lacks, a committed shard per chunk."""
    todo = _todo(keys, index, force)
    logger.info("%s: %d texts, %d distinct, %d of them cached, encoding %d", extractor.name, len(keys),
                len(set(keys)), len(set(keys)) - len(todo), len(todo))
    assert extractor.texts is not None
    chunk = max(1, options.chunk_texts)
    for start in range(0, len(todo), chunk):
        rows = todo[start : start + chunk]
        store.write_shard(partial(_text_shard, extractor.texts, [texts[row] for row in rows],
                                  [keys[row] for row in rows], options))
    return len(todo), {"texts": len(texts)}, None


def _text_shard(fill: Callable[[list[str], ExtractOptions, FeatureWriter], dict[str, Any]], texts: list[str],
                keys: list[str], options: ExtractOptions, writer: FeatureWriter) -> dict[str, Any]:
    return {**fill(texts, options, writer), "keys": keys}


def _merge_shard_fields(index: StoreIndex, keys: list[str | None], fields: tuple[str, ...]) -> dict[str, Any]:
    """The largest value of each numeric ``fields`` over the shards that hold ``keys`` (e.g. ``max_tokens``)."""
    shards = {index.rows[key][0] for key in keys if key is not None}
    merged: dict[str, Any] = {}
    for name in fields:
        values = [index.shards[shard][name] for shard in shards if name in index.shards[shard]]
        if values:
            merged[name] = max(values)
    return merged


def _extract_collection(dataset: Dataset, extractor: Extractor, settings: dict[str, Any], options: ExtractOptions,
                        force: bool, started: float) -> ExtractResult:
    """Collection-dependent features (a vocabulary from the training texts): keyed by the collection's texts."""
    content = [[text, item.split == "train"] for item in dataset.items for text in item.texts]
    final = features_root() / dataset.name / f"{extractor.name}-{collection_key(extractor.name, settings, content)}"
    if not force and (cached := open_cached(final)) is not None:
        return ExtractResult(cached, True, time.perf_counter() - started)
    assert extractor.collection is not None
    fill_collection = extractor.collection

    def fill(writer: FeatureWriter) -> dict[str, Any]:
        manifest = fill_collection(dataset, writer, options)
        return {"dataset": dataset.name, "source": dataset.source, "extractor": extractor.name, "settings": settings,
                "items": len(dataset), "seconds": round(time.perf_counter() - started, 3), **manifest}

    features = write_feature_set(final, fill)
    prune_superseded(features)
    return ExtractResult(features, False, time.perf_counter() - started)
