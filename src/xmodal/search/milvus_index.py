"""The ``milvus`` first-stage backend (pymilvus): Milvus Lite in one local file, or a Milvus server.

``uri`` is a file path (Milvus Lite, embedded: the default is ``milvus.db`` inside the index
folder) or a server address (``http://host:19530``) for collections that outgrow one machine;
``collection`` names the Milvus collection (one per index side). The vectors live in Milvus, not
in the index's version folders: an add or remove changes the collection at once, and the index
version that lists the items is then written as for every backend. Opening an index checks that
Milvus holds as many vectors as the index lists items.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import XmodalError
from xmodal.search.vector_index import BACKENDS, VectorIndex

logger = logging.getLogger(__name__)

KEY, VECTOR = "key", "vector"
INSERT_BATCH = 10_000


class MilvusIndex(VectorIndex):
    backend = "milvus"
    INDEX_TYPES: ClassVar[tuple[str, ...]] = ("FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX")

    def __init__(self, dim: int, options: dict[str, Any] | None = None, device: torch.device | str = "cpu"):
        options = {"index_type": "FLAT", **(options or {})}
        if "uri" not in options or "collection" not in options:
            raise XmodalError("the milvus backend needs a uri and a collection name")
        if options["index_type"] not in self.INDEX_TYPES:
            raise XmodalError(f"unknown Milvus index type {options['index_type']!r}; "
                              f"choose from {', '.join(self.INDEX_TYPES)}")
        super().__init__(dim, options)
        self._client = None
        self._count: int | None = None

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
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._client = MilvusClient(uri)
            except Exception as error:  # pymilvus raises its own exception types, with the server's reason
                raise XmodalError(f"cannot open Milvus at {uri}: {error}") from None
        return self._client

    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        name = self.options["collection"]
        if self.client.has_collection(name):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(KEY, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name=VECTOR, index_type=self.options["index_type"], metric_type="IP")
        self.client.create_collection(name, schema=schema, index_params=index_params)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._ensure_collection()
        for start in range(0, len(keys), INSERT_BATCH):
            rows = [{KEY: int(key), VECTOR: vector}
                    for key, vector in zip(keys[start : start + INSERT_BATCH], vectors[start : start + INSERT_BATCH])]
            self.client.insert(self.options["collection"], rows)
        self._count = None

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self.client.delete(self.options["collection"], ids=[int(key) for key in keys])
            self._count = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        if k == 0:
            return scores, keys
        results = self.client.search(self.options["collection"], data=np.asarray(queries, np.float32).tolist(),
                                     limit=k, output_fields=[KEY], search_params={"metric_type": "IP"})
        for row, hits in enumerate(results):
            for column, hit in enumerate(hits[:k]):
                scores[row, column] = hit["distance"]
                keys[row, column] = hit[KEY] if KEY in hit else hit["id"]
        return scores, keys

    def save(self, folder: Path) -> None:
        self.client.flush(self.options["collection"])  # Milvus holds the vectors; make them durable

    @classmethod
    def load(cls, folder: Path, dim: int, options: dict[str, Any], device: torch.device | str = "cpu"
             ) -> "MilvusIndex":
        index = cls(dim, options)
        if not index.client.has_collection(options["collection"]):
            raise XmodalError(f"Milvus at {options['uri']} has no collection {options['collection']!r}; "
                              "rebuild the index with xmodal index build")
        return index

    def __len__(self) -> int:
        if self._count is None:
            if self._client is None and not self.client.has_collection(self.options["collection"]):
                return 0
            result = self.client.query(self.options["collection"], filter="", output_fields=["count(*)"])
            self._count = int(result[0]["count(*)"])
        return self._count

    def drop(self) -> None:
        """Delete the collection (when an index is rebuilt over this one)."""
        if self.client.has_collection(self.options["collection"]):
            self.client.drop_collection(self.options["collection"])


BACKENDS.register("milvus", MilvusIndex)
