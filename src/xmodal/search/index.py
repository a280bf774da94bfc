"""A search index: a collection encoded by one trained run, on disk, updated in place.

Layout of ``INDEX/``::

    CURRENT                 the name of the live version ("v000003"), replaced atomically
    v000003/manifest.json   the run, its checkpoint's SHA-256, its inputs, the backend, the sides
    v000003/images/items.jsonl   one line per image: key, id, source file, metadata
    v000003/images/rep.safetensors  the model's per-image representations (for the rerank, explain)
    v000003/images/vectors/      the first-stage backend's files
    v000003/texts/...            the same for texts

Every change (build, add, remove) holds the index's writer lock, writes a complete new version
folder whose manifest lists every file's size and SHA-256, and then points ``CURRENT`` at it, so
a reader or a crash never sees a half-written index and opening refuses a damaged one
(:mod:`xmodal.search.versions`). Nothing is pickled: JSON, safetensors, ``.npy`` and faiss's own
format.

Either side may be empty (a folder of images has no texts). Text queries search the images,
image queries the texts (:mod:`xmodal.search.engine`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xmodal.errors import DataError, NotFoundError, XmodalError
from xmodal.file_hashes import file_keys, hash_file
from xmodal.models.base import Rep, concat_rows, rep_to, take
from xmodal.progress import progress
from xmodal.search.collection import Collection, Entry, text_id
from xmodal.search.recall import MIN_ASKING_QUERIES, tune_recall
from xmodal.search.vector_index import VectorIndex, load_vector_index, make_vector_index, unit_rows, write_json
from xmodal.search.versions import (
    CURRENT,
    MANIFEST,
    file_table,
    holds_lock,
    is_partial,
    live_name,
    next_version,
    publish,
    read_live,
    verify,
    writer_lock,
)
from xmodal.trained import TrainedRun

logger = logging.getLogger(__name__)

FORMAT = 1
SideName = Literal["images", "texts"]
SIDES: tuple[SideName, ...] = ("images", "texts")


@dataclass
class IndexSide:
    """The items of one side, their model representations and their first-stage vectors."""

    entries: list[Entry]
    keys: np.ndarray  # [n] int64, the backend's key of each entry
    reps: Rep  # model representation rows, CPU
    vectors: VectorIndex | None  # None while the side is empty

    def __len__(self) -> int:
        return len(self.entries)

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The rows holding ``keys`` (all present). Keys are handed out in increasing order, appended
        by ``add`` and dropped in place by ``remove``, so ``self.keys`` is always sorted."""
        return np.searchsorted(self.keys, keys)


def checkpoint_digest(path: Path) -> str:
    """The full SHA-256 of a checkpoint file."""
    return hash_file(path, length=64)


def run_identity(run: TrainedRun, index_folder: Path | None = None) -> dict[str, Any]:
    """What an index must match: the checkpoint's bytes and the inputs (encoders) it reads; where the
    run is, absolute and (for an index that moves with its run) relative to the index."""
    spec, data = run.pipeline.spec, run.config.data
    source = Path(run.source).absolute()
    identity = {"folder": str(source), "checkpoint": run.checkpoint, "sha256": run.checkpoint_sha256(),
                "model": run.config.model.name, "dataset": run.dataset_name,
                "inputs": {"image": list(spec.image_parts), "text": list(spec.text_parts),
                           "resolution": data.resolution, "graph_vertices": data.graph_vertices,
                           "graph_stop_words": data.graph_stop_words}}
    if index_folder is not None:
        identity["relative"] = os.path.relpath(source, Path(index_folder).absolute())
    return identity


class SearchIndex:
    """An index folder opened for search or update (:meth:`build`, :meth:`open`)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], sides: dict[SideName, IndexSide]):
        self.folder = folder
        self.manifest = manifest
        self.sides = sides
        self.version = ""  # the version folder this was read from (or last written)
        self.pending: int | None = None  # the number of the version a writer is preparing
        self._where: dict[str, tuple[SideName, int]] | None = None  # item id -> (side, row), built on first use

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path, device: torch.device | str = "cpu") -> "SearchIndex":
        """The live version, its files checked against its manifest (a snapshot: later changes need a new open)."""
        folder = Path(folder)

        def read(version: Path) -> "SearchIndex":
            manifest = _read_manifest(version)
            verify(version, manifest.get("files", {}))
            sides = {name: _read_side(version / name, manifest, name, device) for name in SIDES}
            index = cls(folder, manifest, sides)
            index.version = version.name
            return index

        return read_live(folder, read)

    @classmethod
    @contextmanager
    def updating(cls, folder: str | Path, device: torch.device | str = "cpu") -> Iterator["SearchIndex"]:
        """The index opened under its writer lock, for :meth:`add` and :meth:`remove` (other writers wait)."""
        folder = Path(folder)
        live_name(folder)  # a clear error before a lock file is made in a folder that is no index
        with writer_lock(folder):
            index = cls.open(folder, device)
            try:
                index._begin(int(index.version[1:]) + 1)
                yield index
            finally:
                index.close()

    def close(self) -> None:
        """Let go of the backends' connections (a Milvus Lite file is then free for other processes)."""
        for side in self.sides.values():
            if side.vectors is not None:
                side.vectors.close()

    @property
    def run_folder(self) -> Path:
        """The run that built the index: where it was, else relative to the index (copied together)."""
        built = self.manifest["run"]
        recorded = Path(built["folder"])
        if not recorded.exists() and "relative" in built and (self.folder / built["relative"]).exists():
            return (self.folder / built["relative"]).resolve()
        return recorded

    def check_run(self, identity: dict[str, Any]) -> None:
        """Refuse a run whose checkpoint or inputs differ from the ones that built the index."""
        built = self.manifest["run"]
        if identity["sha256"] != built["sha256"]:
            raise XmodalError(f"index {self.folder} was built with the checkpoint of {built['folder']} "
                              f"(sha256 {built['sha256'][:12]}); the run given has sha256 {identity['sha256'][:12]}: "
                              "its vectors would not match. Search with that run, or rebuild the index with this one")
        if identity["inputs"] != built["inputs"]:
            raise XmodalError(f"index {self.folder} was built with inputs {built['inputs']}, the run reads "
                              f"{identity['inputs']}; rebuild the index with xmodal index build")

    def entry(self, item_id: str) -> tuple[SideName, int]:
        """The side and row of an item id; a clear error for an unknown one."""
        if self._where is None:
            self._where = {}
            for name, side in reversed(self.sides.items()):  # an id on both sides is found as an image
                self._where |= {entry.id: (name, row) for row, entry in enumerate(side.entries)}
        if item_id not in self._where:
            raise NotFoundError(f"no item {item_id!r} in the index")
        return self._where[item_id]

    # -- writing -----------------------------------------------------------------------------
    @classmethod
    def build(cls, run: TrainedRun, collection: Collection, out: Path, backend: str = "exact",
              options: dict[str, Any] | None = None, overwrite: bool = False, batch_size: int = 64,
              recall_target: float | None = None) -> "SearchIndex":
        """Encode ``collection`` with ``run`` and write ``out``.

        With ``recall_target``, each side's search settings are the cheapest that reach that recall@10
        against exact search on a sample of the other side's vectors, the queries it will be asked
        (of its own items when the other side has fewer than ``MIN_ASKING_QUERIES``;
        :func:`xmodal.search.recall.tune_recall`); the measured recall is kept in the side's options.
        Nothing is written when the target is missed.
        """
        out = Path(out)
        if (out / CURRENT).exists() and not overwrite:
            raise XmodalError(f"{out} already holds an index; update it with xmodal index add/remove, "
                              "or pass --overwrite to rebuild it")
        if out.is_dir() and not (out / CURRENT).exists() and any(out.iterdir()) and not is_partial(out):
            raise XmodalError(f"{out} exists and is not an index; choose an empty or new folder")
        started = time.perf_counter()
        manifest = {"format": FORMAT, "run": run_identity(run, out), "collection": collection.spec,
                    "backend": backend, "options": dict(options or {}), "next_key": 0, "created": time.time()}
        with writer_lock(out):
            if is_partial(out):  # a first build killed before it was live: nothing in it counts
                logger.info("replacing the unfinished index left in %s", out)
                for leftover in out.iterdir():
                    if leftover.name != "LOCK":
                        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            replaced = SearchIndex.open(out) if (out / CURRENT).exists() else None
            index = cls(out, manifest, {name: IndexSide([], np.zeros(0, np.int64), {}, None) for name in SIDES})
            index._begin(int(replaced.version[1:]) + 1 if replaced is not None else 1)
            added = index._append(run, collection.images, collection.texts, collection, batch_size)
            if recall_target is not None:
                for name, (keys, vectors) in added.items():
                    other: SideName = "texts" if name == "images" else "images"
                    _, asking = added.get(other, (None, ()))
                    asked = asking if len(asking) >= MIN_ASKING_QUERIES else None
                    measured = tune_recall(index.sides[name].vectors, keys, vectors, recall_target, asked=asked,
                                           asked_by=f"the collection's {other}")
                    logger.info("%s: recall@%d %.3f (95%% lower bound %.3f) on %d queries from %s", name,
                                measured["k"], measured["recall_at_k"], measured["lower_bound"], measured["queries"],
                                measured["queries_from"])
            index.manifest["build_seconds"] = round(time.perf_counter() - started, 3)
            index.save()
            if replaced is not None:  # vectors kept outside the version folders (Milvus) go with the old index
                for side in replaced.sides.values():
                    if hasattr(side.vectors, "drop"):
                        side.vectors.drop()
                replaced.close()
        return index

    def add(self, run, collection: Collection, batch_size: int = 64) -> dict[str, int]:
        """Encode and append the entries of ``collection`` whose ids are new; returns how many per side.

        An image whose id is indexed already is skipped when it is the same file content, and refused
        when it is another image under that name (nothing is added then).
        """
        _record_contents(collection.images)
        indexed = {entry.id: entry.meta.get("content") for entry in self.sides["images"].entries}
        for entry in collection.images:
            before, now = indexed.get(entry.id), entry.meta.get("content")
            if before is not None and now is not None and before != now:
                raise XmodalError(f"image id {entry.id!r} is indexed already with other content; nothing was added. "
                                  "Remove it first (xmodal index remove), or give the new image another name")
        known = {name: {entry.id for entry in side.entries} for name, side in self.sides.items()}
        images = [entry for entry in collection.images if entry.id not in known["images"]]
        texts = [entry for entry in collection.texts if entry.id not in known["texts"]]
        self._append(run, images, texts, collection, batch_size)
        self.save()
        return {"images": len(images), "texts": len(texts),
                "already_indexed": len(collection.images) + len(collection.texts) - len(images) - len(texts)}

    def remove(self, ids: Sequence[str]) -> int:
        """Drop the items with these ids (either side); unknown ids are an error, nothing is changed."""
        wanted = set(ids)
        found = {entry.id for side in self.sides.values() for entry in side.entries} & wanted
        missing = sorted(wanted - found)
        if missing:
            raise NotFoundError(f"no item {', '.join(repr(i) for i in missing[:5])} in the index; nothing was "
                                "removed")
        for side in self.sides.values():
            kept = np.array([entry.id not in wanted for entry in side.entries], dtype=bool)
            if kept.all():
                continue
            if side.vectors is not None:
                side.vectors.remove(side.keys[~kept])
            side.entries = [entry for entry, keep in zip(side.entries, kept) if keep]
            side.keys = side.keys[kept]
            side.reps = take(side.reps, torch.from_numpy(kept)) if side.reps else {}
        self.save()
        return len(found)

    def _append(self, run, images: list[Entry], texts: list[Entry], collection: Collection, batch_size: int
                ) -> dict[SideName, tuple[np.ndarray, np.ndarray]]:
        """Encode and add the entries; returns each side's new keys and unit vectors."""
        _record_contents(images)
        added = {}
        for name, entries in (("images", images), ("texts", texts)):
            if not entries:
                continue
            reps = _encode(run, name, entries, collection, batch_size)
            entries = [entry for entry in entries if not entry.meta.pop("unreadable", False)]  # --skip-bad
            if not entries:
                continue
            raw = run.model.embed(reps)
            finite = torch.isfinite(raw).all(dim=1)
            if not finite.all():
                bad = entries[int((~finite).nonzero()[0])].id
                raise XmodalError(f"the run gives {name[:-1]} {bad!r} a vector that is not finite (NaN or infinite): "
                                  "its weights are damaged or diverged; nothing was indexed. Check the run "
                                  "(xmodal eval) or use another checkpoint")
            vectors = unit_rows(raw)
            side = self.sides[name]
            keys = np.arange(self.manifest["next_key"], self.manifest["next_key"] + len(entries), dtype=np.int64)
            self.manifest["next_key"] += len(entries)
            if side.vectors is None:
                side.vectors = make_vector_index(self.manifest["backend"], vectors.shape[1], self._side_options(name))
                side.vectors.begin(self._writing())
            side.vectors.add(keys, vectors)
            added[name] = (keys, vectors)
            side.entries = side.entries + entries
            side.keys = np.concatenate([side.keys, keys])
            side.reps = concat_rows([side.reps, reps]) if side.reps else reps
        return added

    def _side_options(self, name: SideName) -> dict[str, Any]:
        options = dict(self.manifest["options"])
        if self.manifest["backend"] == "milvus":  # one collection per side, in a Lite file beside the versions
            options.setdefault("uri", "milvus.db")  # relative to the index: a copied index has its own
            options["collection"] = f"xmodal_{name}_{uuid.uuid4().hex[:12]}"
            options["root"] = str(self.folder.absolute())  # where a relative uri lies (not saved)
        return options

    def _begin(self, number: int) -> None:
        """Start preparing version ``number``: backends that keep vectors outside the versions tag changes."""
        self.pending = number
        for side in self.sides.values():
            if side.vectors is not None:
                side.vectors.begin(number)

    def _writing(self) -> int:
        if self.pending is None or not holds_lock(self.folder):
            raise RuntimeError("an index changed outside build, or add / remove inside SearchIndex.updating(folder)")
        return self.pending

    def save(self) -> None:
        """Write a complete new version, then switch ``CURRENT`` to it (the writer lock must be held)."""
        if not holds_lock(self.folder):
            raise RuntimeError("SearchIndex.save outside the writer lock: change an index through build, or "
                               "add / remove inside SearchIndex.updating(folder)")
        self._where = None  # the rows may have changed
        version = next_version(self.folder)
        if int(version.name[1:]) != self._writing():
            raise RuntimeError(f"version {version.name} is not the one being prepared ({self.pending})")
        self.manifest["sides"] = {}
        for name, side in self.sides.items():
            folder = version / name
            (folder / "vectors").mkdir(parents=True)
            # ASCII JSON: a file name the OS gave undecoded (a lone surrogate) round-trips as \udcxx
            lines = [json.dumps({"key": int(key), "id": e.id, "source": e.source, "meta": e.meta})
                     for key, e in zip(side.keys, side.entries)]
            (folder / "items.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            if side.reps:
                save_file({key: value.contiguous() for key, value in side.reps.items()}, folder / "rep.safetensors")
            if side.vectors is not None:
                side.vectors.save(folder / "vectors")
            self.manifest["sides"][name] = {"items": len(side),
                                            "dim": side.vectors.dim if side.vectors is not None else None,
                                            "options": side.vectors.options if side.vectors is not None else None}
        self.manifest["files"] = file_table(version)
        write_json(version / MANIFEST, self.manifest)
        publish(self.folder, version)
        self.version = version.name


def read_manifest(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The live version folder of an index and its manifest (nothing else is read)."""
    return read_live(folder, lambda version: (version, _read_manifest(version)))


def _read_manifest(version: Path) -> dict[str, Any]:
    path = version / MANIFEST
    where = f"{version.parent.name}/{version.name}/{MANIFEST}"
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise XmodalError(f"{where}: cannot read the index manifest ({type(error).__name__}); rebuild the index "
                          "with xmodal index build --overwrite") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise XmodalError(f"{where}: index format {found!r}, this xmodal reads {FORMAT}; rebuild the index with "
                          "xmodal index build --overwrite")
    return manifest


def _read_side(folder: Path, manifest: dict[str, Any], name: str, device: torch.device | str) -> IndexSide:
    """One side of a version; anything that does not add up (a manifest edited beside its files, a
    backend that lost rows) is one line naming the part, never a traceback."""
    where = f"{folder.parent.parent.name}/{folder.parent.name}/{name}"
    try:
        lines = (folder / "items.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line]
        entries = [Entry(r["id"], r["source"], r.get("meta") or {}) for r in records]
        keys = np.array([r["key"] for r in records], dtype=np.int64)
        reps = load_file(folder / "rep.safetensors") if (folder / "rep.safetensors").exists() else {}
        dim, options = manifest["sides"][name]["dim"], manifest["sides"][name]["options"]
    except FileNotFoundError:
        raise  # a version pruned under a reader: read_live tries the new one
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise XmodalError(f"{where}: unreadable ({type(error).__name__}: {str(error)[:80]}); rebuild the index with "
                          "xmodal index build --overwrite") from None
    problem = None
    if len(keys) and not (np.diff(keys) > 0).all():
        problem = "its keys are not in increasing order"
    elif any(len(value) != len(entries) for value in reps.values()):
        problem = f"{len(entries)} items but representations of another count"
    if problem:
        raise XmodalError(f"{where}: {problem} (damaged); rebuild the index with xmodal index build --overwrite")
    vectors = None if dim is None else load_vector_index(folder / "vectors", manifest["backend"], dim, options, device)
    if vectors is not None and len(vectors) != len(entries):
        raise XmodalError(f"{where}: {len(entries)} items but {len(vectors)} vectors; rebuild the index")
    if vectors is not None and vectors.dim != dim:
        raise XmodalError(f"{where}: vectors of width {vectors.dim}, the manifest says {dim}; rebuild the index")
    return IndexSide(entries, keys, reps, vectors)


@torch.no_grad()
def _encode(run, side: SideName, entries: list[Entry], collection: Collection, batch_size: int) -> Rep:
    """Model representations of ``entries``: from the run's feature cache for its own split, else encoded."""
    model, device = run.model, run.device
    if collection.split is not None:
        split = run.split(collection.split)
        wanted = {entry.id for entry in entries}
        if side == "images":
            ids = [run.dataset.items[i].id for i in split.item_indices]
            rows = np.array([row for row, item_id in enumerate(ids) if item_id in wanted])
            read, encode = split.images, model.encode_images
        else:
            counter: dict[int, int] = {}  # the k of each text within its item, in the split's text order
            ids = []
            for position in split.text_items:
                k = counter.get(int(position), 0)
                counter[int(position)] = k + 1
                ids.append(text_id(run.dataset.items[split.item_indices[position]].id, k))
            rows = np.array([row for row, id_ in enumerate(ids) if id_ in wanted])
            read, encode = split.texts, model.encode_texts
        parts = [_cpu(encode(rep_to(read(rows[start : start + batch_size]), device)))
                 for start in progress(range(0, len(rows), batch_size), desc=f"encoding {side}", unit="batch")]
        return concat_rows(parts)
    noun, content, encode_new = (("image", "file", run.encode_images) if side == "images"
                                 else ("text", "words", run.encode_texts))
    parts = []
    for start in progress(range(0, len(entries), batch_size), desc=f"encoding {side}", unit="batch"):
        chunk = entries[start : start + batch_size]
        missing = [entry.id for entry in chunk if entry.source is None]
        if missing:
            raise XmodalError(f"{noun} {missing[0]!r} has no {content} to encode (a features-only dataset): "
                              "index such a dataset by split:NAME with the run that read it")
        try:
            parts.append(_cpu(encode_new([entry.source for entry in chunk])))
        except DataError as error:
            if not collection.skip_bad:
                raise DataError(error.where, error.problem, "fix or remove it, or pass --skip-bad to index the "
                                "others") from None
            parts.append(_encode_readable(encode_new, chunk, collection))
    return concat_rows([part for part in parts if part])


def _encode_readable(encode_new, chunk: list[Entry], collection: Collection) -> Rep:
    """A batch that held an unreadable image, encoded one by one; the bad ones are listed and marked."""
    parts = []
    for entry in chunk:
        try:
            parts.append(_cpu(encode_new([entry.source])))
        except DataError as error:
            collection.skipped.append(f"{entry.id}: {error.problem}")
            entry.meta["unreadable"] = True
    return concat_rows(parts) if parts else {}


def _record_contents(images: list[Entry]) -> None:
    """Each image file's content key in its metadata, so a different image under a known id is noticed."""
    files = [entry for entry in images if entry.source is not None and "content" not in entry.meta]
    for entry, key in zip(files, file_keys([Path(entry.source) for entry in files])):  # type: ignore[arg-type]
        if key is not None:
            entry.meta["content"] = key


def _cpu(rep: Rep) -> Rep:
    return {key: value.detach().cpu() for key, value in rep.items()}


def rep_rows(side: IndexSide, rows: Sequence[int] | np.ndarray) -> Rep:
    return take(side.reps, torch.as_tensor(np.asarray(rows, dtype=np.int64)))


__all__ = ["IndexSide", "SearchIndex", "checkpoint_digest", "read_manifest", "rep_rows", "run_identity"]
