"""The ``milvus`` first-stage backend (pymilvus): Milvus Lite in one local file, or a Milvus server.

``uri`` is a file path (Milvus Lite, embedded: the default is ``milvus.db`` inside the index
folder, stored relative to it, so a copy of the index folder is a copy of its vectors) or a server
address (``http://host:19530``) for collections that outgrow one machine; ``collection`` names the
Milvus collection (one per index side).

The vectors live in Milvus, outside the index's version folders, so every row says which versions
see it: ``added`` (the version that inserted it) and ``removed`` (the version that removed it, or
:data:`LIVE`). Version V searches and counts the rows with ``added <= V < removed``, so rows a
writer inserted or removed become visible only with the version that lists them (a writer killed
before it switched ``CURRENT`` changes nothing a reader sees), and the next writer rolls back what
a killed one left (:meth:`MilvusIndex.begin`). Rows no kept version sees are deleted then.
Opening an index loads the collection and checks that its version holds as many vectors as items.

Milvus Lite serves one process per file: while ``xmodal serve`` holds it, updating the index from
another process fails with a message that says so; a Milvus server has no such limit.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import XmodalError
from xmodal.search.vector_index import BACKENDS, VectorIndex

logger = logging.getLogger(__name__)

KEY, VECTOR, ADDED, REMOVED = "key", "vector", "added", "removed"
LIVE = 2**62  # ``removed`` of a row no version has removed
INSERT_BATCH = 10_000
DEFAULT_URI = "milvus.db"  # Milvus Lite, inside the index folder
_LITE_USERS: Counter[str] = Counter()  # open MilvusIndex objects per Lite file in this process (they share its server)


class MilvusIndex(VectorIndex):
    backend = "milvus"
    INDEX_TYPES: ClassVar[tuple[str, ...]] = ("FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX")

    def __init__(self, dim: int, options: dict[str, Any] | None = None, device: torch.device | str = "cpu"):
        options = {"index_type": "FLAT", **(options or {})}
        self.root = Path(options.pop("root", "."))  # the index folder a relative Lite uri lies in (not saved)
        if "uri" not in options or "collection" not in options:
            raise XmodalError("the milvus backend needs a uri and a collection name")
        if options["index_type"] not in self.INDEX_TYPES:
            raise XmodalError(f"unknown Milvus index type {options['index_type']!r}; "
                              f"choose from {', '.join(self.INDEX_TYPES)}")
        super().__init__(dim, options)
        self._client = None
        self._count: int | None = None
        self.version = 0  # the index version this reads (0: none yet)
        self.pending: int | None = None  # the version being written, between begin() and save()

    @property
    def client(self):
        if self._client is None:
            try:
                from pymilvus import MilvusClient
            except ImportError:
                raise XmodalError("the milvus backend needs pymilvus (and milvus-lite for a local file): "
                                  "pip install pymilvus milvus-lite") from None
            uri = self.options["uri"]
            if "://" not in uri:
                uri = str(self.root / uri)
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._client = MilvusClient(uri)
                if "://" not in self.options["uri"]:
                    _LITE_USERS[os.path.abspath(uri)] += 1
            except Exception as error:  # pymilvus raises its own exception types, with the server's reason
                held = "://" not in self.options["uri"] and "Open local milvus failed" in str(error)
                raise XmodalError(f"cannot open Milvus at {Path(uri).name if held else uri}: "
                                  + ("Milvus Lite serves one process per file, and another (a running xmodal "
                                     "serve?) holds it; stop that process, or use a Milvus server "
                                     "(--milvus-uri http://host:19530)" if held else str(error))) from None
        return self._client

    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        name = self.options["collection"]
        if self.client.has_collection(name):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(KEY, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field(ADDED, DataType.INT64)
        schema.add_field(REMOVED, DataType.INT64)
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name=VECTOR, index_type=self.options["index_type"], metric_type="IP")
        self.client.create_collection(name, schema=schema, index_params=index_params)

    def _visible(self, version: int) -> str:
        return f"{ADDED} <= {version} and {REMOVED} > {version}"

    def begin(self, version: int) -> None:
        """Start writing ``version``: undo what a killed writer of it (or later) left, drop rows no kept
        version sees (removed at or before ``version - 2``)."""
        self.pending = version
        if not self.client.has_collection(self.options["collection"]):
            return
        name = self.options["collection"]
        self.client.load_collection(name)
        self.client.delete(name, filter=f"{ADDED} >= {version}")
        undone = self.client.query(name, filter=f"{REMOVED} >= {version} and {REMOVED} < {LIVE}",
                                   output_fields=[KEY, VECTOR, ADDED])
        if undone:
            self.client.upsert(name, [row | {REMOVED: LIVE} for row in _plain(undone)])
        self.client.delete(name, filter=f"{REMOVED} <= {version - 2}")
        self._count = None

    def _writing(self) -> int:
        if self.pending is None:
            raise RuntimeError("MilvusIndex changed outside begin(version) / save()")
        return self.pending

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        version = self._writing()
        self._ensure_collection()
        for start in range(0, len(keys), INSERT_BATCH):
            rows = [{KEY: int(key), VECTOR: vector, ADDED: version, REMOVED: LIVE}
                    for key, vector in zip(keys[start : start + INSERT_BATCH], vectors[start : start + INSERT_BATCH])]
            self.client.insert(self.options["collection"], rows)
        self._count = None

    def remove(self, keys: np.ndarray) -> None:
        version = self._writing()
        if len(keys):
            name = self.options["collection"]
            for start in range(0, len(keys), INSERT_BATCH):
                chunk = ", ".join(str(int(key)) for key in keys[start : start + INSERT_BATCH])
                rows = self.client.query(name, filter=f"{KEY} in [{chunk}] and {REMOVED} == {LIVE}",
                                         output_fields=[KEY, VECTOR, ADDED])
                self.client.upsert(name, [row | {REMOVED: version} for row in _plain(rows)])
            self._count = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        if k == 0:
            return scores, keys
        results = self.client.search(self.options["collection"], data=np.asarray(queries, np.float32).tolist(),
                                     limit=k, output_fields=[KEY], search_params={"metric_type": "IP"},
                                     filter=self._visible(self.version))
        for row, hits in enumerate(results):
            for column, hit in enumerate(hits[:k]):
                scores[row, column] = hit["distance"]
                keys[row, column] = hit[KEY] if KEY in hit else hit["id"]
        return scores, keys

    def save(self, folder: Path) -> None:
        self.client.flush(self.options["collection"])  # Milvus holds the vectors; make them durable
        self.version, self.pending = self._writing(), None
        self._count = None

    @classmethod
    def load(cls, folder: Path, dim: int, options: dict[str, Any], device: torch.device | str = "cpu"
             ) -> "MilvusIndex":
        """The collection as index version ``folder`` (``INDEX/vNNNNNN/<side>/vectors``) sees it."""
        index = cls(dim, {**options, "root": str(folder.parents[2])})
        index.version = int(folder.parents[1].name[1:])
        name = options["collection"]
        if not index.client.has_collection(name):
            raise XmodalError(f"Milvus has no collection {name!r} for this index; rebuild it with xmodal index build "
                              "--overwrite")
        fields = {field["name"] for field in index.client.describe_collection(name)["fields"]}
        if REMOVED not in fields:
            raise XmodalError(f"Milvus collection {name!r} was written by an older xmodal (its rows carry no "
                              "versions); rebuild the index with xmodal index build --overwrite")
        index.client.load_collection(name)  # a collection a new process opens starts released
        return index

    def __len__(self) -> int:
        if self._count is None:
            if self._client is None and not self.client.has_collection(self.options["collection"]):
                return 0
            version = self.pending if self.pending is not None else self.version
            result = self.client.query(self.options["collection"], filter=self._visible(version),
                                       output_fields=["count(*)"])
            self._count = int(result[0]["count(*)"])
        return self._count

    def close(self) -> None:
        """Let go of the Milvus connection; the last user of a Lite file in this process stops its server,
        which frees the file for other processes."""
        if self._client is None:
            return
        self._client.close()
        self._client = None
        if "://" in self.options["uri"]:
            return
        path = os.path.abspath(self.root / self.options["uri"])
        _LITE_USERS[path] -= 1
        if _LITE_USERS[path] <= 0:
            del _LITE_USERS[path]
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(path)

    def drop(self) -> None:
        """Delete the collection (when an index is rebuilt over this one)."""
        if self.client.has_collection(self.options["collection"]):
            self.client.drop_collection(self.options["collection"])


def _plain(rows: list[dict]) -> list[dict]:
    """Query rows as insertable dicts (vectors as float lists)."""
    return [{KEY: int(row[KEY]), VECTOR: [float(x) for x in row[VECTOR]], ADDED: int(row[ADDED])} for row in rows]


BACKENDS.register("milvus", MilvusIndex)
