"""First-stage vector indexes: one small interface, three backends.

Every backend stores unit-length float32 vectors under int64 keys and answers top-k queries by
inner product (so by cosine, the score of every model's first stage, :mod:`xmodal.eval.two_stage`).

* ``exact``: the vectors as one matrix; a query is a matrix product and a top-k (torch, on the
  GPU when one is given). Right up to about a million items.
* ``faiss`` (faiss-cpu): ``flat`` (exact, faiss's kernels), ``hnsw`` (graph search, no training)
  or ``ivfpq`` (inverted lists of product-quantised codes: trained on the first vectors added,
  a fraction of the memory). For large collections on one machine.
* ``milvus`` (pymilvus, :mod:`xmodal.search.milvus_index`): Milvus Lite in one local file, or a
  Milvus server by URI, for collections that outgrow one machine.

Backends save to a folder of their own files (``.npy``, faiss's binary index format; never
pickle) and load back identically.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import XmodalError
from xmodal.paths import atomic_write_bytes
from xmodal.registry import Registry

logger = logging.getLogger(__name__)

FAISS_KINDS = ("flat", "hnsw", "ivfpq")


def unit_rows(vectors: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 rows scaled to length 1 (zero rows stay zero)."""
    array = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


class VectorIndex(ABC):
    """Unit vectors under int64 keys; ``search`` returns inner products, best first."""

    backend: ClassVar[str]

    def __init__(self, dim: int, options: dict[str, Any] | None = None, device: torch.device | str = "cpu"):
        self.dim = dim
        self.options = dict(options or {})

    def begin(self, version: int) -> None:
        """A writer starts the index version ``version`` (backends whose vectors live outside the version
        folders tag what it changes with it; for the others there is nothing to do)."""
        return None

    @abstractmethod
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows (``vectors`` already unit length, ``[n, dim]``) under new ``keys``."""

    @abstractmethod
    def remove(self, keys: np.ndarray) -> None:
        """Drop the rows of ``keys`` (keys not present are ignored)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [Q, k'], keys [Q, k'])``, k' = min(k, len(self)), best first."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the index's files into ``folder`` (a fresh folder of the index's next version)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, dim: int, options: dict[str, Any], device: torch.device | str = "cpu"
             ) -> "VectorIndex":
        """The index ``save`` wrote."""

    @abstractmethod
    def __len__(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.options}

    def describe_kind(self) -> str:
        return self.backend

    def search_ladder(self) -> list[dict[str, Any]]:
        """Search-time settings from cheapest to most thorough (:func:`xmodal.search.recall.tune_recall`
        walks them); empty for a backend whose search has nothing to trade."""
        return []

    def apply_search(self, settings: dict[str, Any]) -> None:
        """Use ``settings`` (a rung of :meth:`search_ladder`) from now on; they are kept in ``options``."""
        self.options.update(settings)

    def close(self) -> None:
        """Let go of what the backend holds open (a Milvus connection); in-memory backends hold nothing."""
        return None


# Storage types of the exact backend: 16 bits halve the memory a search streams through (it is bound
# by memory traffic), at a rounding of the scores (bfloat16: 8 bits of mantissa; float16: 11).
EXACT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ExactIndex(VectorIndex):
    """All vectors in one matrix; a query block is one matrix product and a top-k.

    ``options["dtype"]`` stores the matrix as float32 (the default), bfloat16 or float16; queries are
    cast to it, the product runs in it and scores come back as float32. numpy has no bfloat16, so a
    bfloat16 matrix is saved as its raw 16-bit words (``vectors.npy`` of uint16) and read back as such.
    """

    backend = "exact"

    def __init__(self, dim: int, options: dict[str, Any] | None = None, device: torch.device | str = "cpu"):
        super().__init__(dim, options)
        name = self.options.setdefault("dtype", "float32")
        if name not in EXACT_DTYPES:
            raise XmodalError(f"exact index dtype {name!r}: choose one of {', '.join(EXACT_DTYPES)}")
        self.dtype = EXACT_DTYPES[name]
        self.device = torch.device(device)
        self.keys = np.zeros(0, dtype=np.int64)
        self.vectors = torch.zeros(0, dim, device=self.device, dtype=self.dtype)

    def to(self, device: torch.device | str) -> "ExactIndex":
        """Keep the matrix on ``device`` (the run's GPU, when it has one)."""
        self.device = torch.device(device)
        self.vectors = self.vectors.to(self.device)
        return self

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.keys = np.concatenate([self.keys, np.asarray(keys, dtype=np.int64)])
        rows = torch.from_numpy(np.asarray(vectors, np.float32)).to(self.device, self.dtype, copy=True)  # its own
        # the first rows become the matrix as they are: a copy of a 5 GB matrix would double the peak
        self.vectors = rows if len(self.vectors) == 0 else torch.cat([self.vectors, rows])

    def remove(self, keys: np.ndarray) -> None:
        kept = ~np.isin(self.keys, np.asarray(keys, dtype=np.int64))
        self.keys = self.keys[kept]
        self.vectors = self.vectors[torch.from_numpy(kept).to(self.device)]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        scores = torch.from_numpy(np.asarray(queries, np.float32)).to(self.device, self.dtype) @ self.vectors.T
        top = scores.topk(k, dim=1)
        return top.values.float().cpu().numpy(), self.keys[top.indices.cpu().numpy()]

    def save(self, folder: Path) -> None:
        np.save(folder / "keys.npy", self.keys)
        vectors = self.vectors.cpu()
        np.save(folder / "vectors.npy", vectors.view(torch.uint16).numpy() if self.dtype == torch.bfloat16
                else vectors.numpy())

    @classmethod
    def load(cls, folder: Path, dim: int, options: dict[str, Any], device: torch.device | str = "cpu") -> "ExactIndex":
        index = cls(dim, options, device)
        try:  # never unpickled: an object array is refused by numpy itself
            keys = np.load(folder / "keys.npy", allow_pickle=False)
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as error:
            raise XmodalError(f"{_where(folder)}: unreadable vectors ({str(error)[:80]}); rebuild the index") from None
        if keys.ndim != 1 or keys.dtype != np.int64 or vectors.ndim != 2 or len(vectors) != len(keys):
            raise XmodalError(f"{_where(folder)}: keys and vectors do not match; rebuild the index")
        if vectors.shape[1] != dim:
            raise XmodalError(f"{_where(folder)}: vectors of width {vectors.shape[1]}, the index says {dim}; "
                              "rebuild the index")
        stored = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.float16: np.float16}[index.dtype]
        if vectors.dtype != stored:
            raise XmodalError(f"{_where(folder)}: vectors stored as {vectors.dtype}, the index says "
                              f"{index.options['dtype']}; rebuild the index")
        matrix = torch.from_numpy(np.ascontiguousarray(vectors))
        index.keys = keys
        index.vectors = (matrix.view(torch.bfloat16) if index.dtype == torch.bfloat16 else matrix).to(index.device)
        return index

    def __len__(self) -> int:
        return len(self.keys)


class FaissIndex(VectorIndex):
    """faiss-cpu: ``kind`` flat, hnsw or ivfpq, inner-product metric, int64 keys (``IndexIDMap2``).

    ``ivfpq`` with ``refine`` keeps the float32 vectors beside the codes (``IndexRefineFlat``): the
    inverted lists propose ``k * k_factor`` candidates by their compressed codes and the stored vectors
    rescore them exactly, which buys back the recall quantisation loses, at 4 bytes a dimension.
    """

    backend = "faiss"
    DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "flat": {},
        "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 128},
        # nlist, pq_m 0: chosen from the data (see _ivfpq)
        "ivfpq": {"nlist": 0, "pq_m": 0, "nbits": 8, "nprobe": 16, "refine": False, "k_factor": 1},
    }
    EF_SEARCH_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)
    K_FACTOR_LADDER = (1, 4, 16, 64)

    def __init__(self, dim: int, options: dict[str, Any] | None = None, device: torch.device | str = "cpu"):
        kind = (options or {}).get("kind", "flat")
        if kind not in FAISS_KINDS:
            raise XmodalError(f"unknown faiss index kind {kind!r}; choose from {', '.join(FAISS_KINDS)}")
        super().__init__(dim, {"kind": kind, **self.DEFAULTS[kind], **(options or {})})
        self.kind = kind
        self.index = None  # built on the first add (ivfpq trains on those vectors)

    @staticmethod
    def _faiss():
        try:
            import faiss
        except ImportError:
            raise XmodalError("the faiss backend needs faiss-cpu: pip install faiss-cpu") from None
        return faiss

    def _build(self, vectors: np.ndarray):
        faiss = self._faiss()
        if self.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, int(self.options["m"]), faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = int(self.options["ef_construction"])
            inner.hnsw.efSearch = int(self.options["ef_search"])
            return faiss.IndexIDMap2(inner)
        inner = self._ivfpq(vectors)
        if self.options["refine"]:
            inner = faiss.IndexRefineFlat(inner)
            inner.k_factor = float(self.options["k_factor"])
        return faiss.IndexIDMap2(inner)

    def _ivfpq(self, vectors: np.ndarray):
        faiss = self._faiss()
        n = len(vectors)
        nbits = int(self.options["nbits"])
        # faiss wants ~39 training points per list and 2^nbits per PQ centroid set.
        needed = max(2 ** nbits, 39 * max(int(self.options["nlist"]), 1))
        if n < needed:
            raise XmodalError(f"the faiss ivfpq index trains on the first vectors added and needs at least {needed} "
                              f"(got {n}); use --backend exact or --faiss-kind flat/hnsw for a collection this small")
        nlist = int(self.options["nlist"]) or max(1, min(int(math.sqrt(n)), n // 39))
        pq_m = int(self.options["pq_m"]) or next(m for m in (32, 16, 8, 4, 2, 1) if self.dim % m == 0)
        if self.dim % pq_m:
            raise XmodalError(f"faiss ivfpq: pq_m {pq_m} must divide the vector size {self.dim}")
        self.options.update(nlist=nlist, pq_m=pq_m)
        quantizer = faiss.IndexFlatIP(self.dim)
        inner = faiss.IndexIVFPQ(quantizer, self.dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
        # k-means needs tens of points per centroid, not millions: train on a fixed-seed sample.
        sample = min(n, max(64 * nlist, 64 * 2 ** nbits))
        rows = np.random.default_rng(0).choice(n, sample, replace=False) if sample < n else slice(None)
        inner.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
        inner.nprobe = int(self.options["nprobe"])
        return inner

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.index is None:
            self.index = self._build(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(keys, dtype=np.int64))

    def remove(self, keys: np.ndarray) -> None:
        if self.index is None or not len(keys):
            return
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if self.kind == "flat" or (self.kind == "ivfpq" and not self.options["refine"]):
            self.index.remove_ids(self._faiss().IDSelectorBatch(keys))
            return
        # HNSW graphs cannot drop nodes, nor can the refining stage: rebuild from the stored vectors
        # that remain (IVF-PQ trains again on them).
        all_keys = self._faiss().vector_to_array(self.index.id_map).astype(np.int64)
        kept = ~np.isin(all_keys, keys)
        vectors = self._faiss().downcast_index(self.index.index).reconstruct_n(0, len(all_keys))[kept]
        self.index = None
        if kept.any():
            self.add(all_keys[kept], vectors)

    def describe_kind(self) -> str:
        return f"faiss {self.kind}{' with refine' if self.options.get('refine') else ''}"

    def search_ladder(self) -> list[dict[str, Any]]:
        if self.kind == "hnsw":
            return [{"ef_search": ef} for ef in self.EF_SEARCH_LADDER]
        if self.kind != "ivfpq" or self.index is None:
            return []
        nlist = int(self.options["nlist"])
        probes = sorted({min(2 ** power, nlist) for power in range(int(math.log2(max(nlist, 1))) + 2)})
        factors = self.K_FACTOR_LADDER if self.options["refine"] else (1,)
        # the lists scanned cost most (nprobe * n / nlist codes); rescoring k * k_factor vectors is cheap
        return [{"nprobe": probe, **({"k_factor": factor} if self.options["refine"] else {})}
                for probe in probes for factor in factors]

    def apply_search(self, settings: dict[str, Any]) -> None:
        super().apply_search(settings)
        if self.index is not None:
            self._set_search_options()

    def _set_search_options(self) -> None:
        """faiss keeps none of the search settings in its file: set them on the loaded objects."""
        inner = self._faiss().downcast_index(self.index.index)  # the index inside the id map
        if self.kind == "hnsw":
            inner.hnsw.efSearch = int(self.options["ef_search"])
        if self.kind == "ivfpq":
            if self.options["refine"]:
                inner.k_factor = float(self.options["k_factor"])
            self._inverted_lists().nprobe = int(self.options["nprobe"])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, keys = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, keys

    def save(self, folder: Path) -> None:
        if self.index is not None:
            self._faiss().write_index(self.index, str(folder / "faiss.index"))

    @classmethod
    def load(cls, folder: Path, dim: int, options: dict[str, Any], device: torch.device | str = "cpu"
             ) -> "FaissIndex":
        index = cls(dim, options)
        path = folder / "faiss.index"
        if path.exists():
            faiss = cls._faiss()
            try:
                index.index = faiss.read_index(str(path))
            except RuntimeError as error:  # faiss raises RuntimeError for a file it cannot parse
                raise XmodalError(f"{_where(folder)}: unreadable faiss index ({str(error).splitlines()[0][:80]}); "
                                  "rebuild the index") from None
            if index.index.d != dim:
                raise XmodalError(f"{_where(folder)}: vectors of width {index.index.d}, the index says {dim}; "
                                  "rebuild the index")
            index._set_search_options()
            if index.kind == "ivfpq":  # the file knows the list and code sizes even when ``options`` does not
                lists = index._inverted_lists()
                index.options.update(nlist=int(lists.nlist), pq_m=int(lists.pq.M))
        return index

    def _inverted_lists(self):
        """The IVF-PQ index inside the id map (and inside the refining stage, with ``refine``)."""
        faiss = self._faiss()
        inner = faiss.downcast_index(self.index.index)
        return faiss.downcast_index(inner.base_index) if self.options["refine"] else inner

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)


def _discover_backends() -> None:
    from xmodal.search import milvus_index  # noqa: F401  (registers "milvus"; pymilvus loads on first use)


BACKENDS: Registry[type[VectorIndex]] = Registry("index backend", _discover_backends)
BACKENDS.register("exact", ExactIndex)
BACKENDS.register("faiss", FaissIndex)


def make_vector_index(backend: str, dim: int, options: dict[str, Any] | None = None,
                      device: torch.device | str = "cpu") -> VectorIndex:
    return BACKENDS.get(backend)(dim, options, device)


def load_vector_index(folder: Path, backend: str, dim: int, options: dict[str, Any],
                      device: torch.device | str = "cpu") -> VectorIndex:
    if backend not in BACKENDS:
        raise XmodalError(f"{folder}: unknown index backend {backend!r} in the manifest; "
                          f"choose from {', '.join(BACKENDS)}")
    return BACKENDS.get(backend).load(folder, dim, options, device)


def _where(folder: Path) -> str:
    """A backend folder named from its index version on (``v000002/images/vectors``), not the whole path."""
    return "/".join(folder.parts[-3:])


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=1) + "\n").encode("ascii"))  # \uXXXX for the rest
