"""Recall of a first-stage index against exact search, and search settings chosen to reach a target.

An approximate backend (faiss HNSW, IVF-PQ with or without its refining stage) trades recall for
speed through search-time settings (``ef_search``; ``nprobe`` and the refine ``k_factor``) that can
change without rebuilding. :func:`tune_recall` measures recall@k on a sample of the indexed items
and walks the backend's ladder of settings, cheapest first, until the target is met; the measured
figure is kept in the index options, so ``xmodal index info`` can say what the index promises.

The sample's queries are indexed items themselves (a fixed-seed draw): each is searched for, and
its own key is left out of both the exact and the approximate answer, so recall@k counts its k
nearest *other* items. Queries at search time come from the other modality, whose vectors lie in
the same joint space but not on the items: the figure is a measurement on the collection, not a
guarantee for every query. So a rung passes only when the target lies below its recall's one-sided
95% lower bound (the mean of the sampled queries' recalls less 1.645 standard errors), not merely
below its mean: on a million clustered vectors, HNSW at ef_search 1024 measured 0.952 on sampled
items and 0.937 on held-out queries, the shortfall a sample of 200 cannot rule out.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from xmodal.errors import XmodalError

logger = logging.getLogger(__name__)

SAMPLE_QUERIES = 200
RECALL_K = 10
LOWER_BOUND_Z = 1.645  # one-sided 95% normal bound on the mean of the sampled queries' recalls


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """Row indices of each query's ``k`` largest inner products over ``vectors`` (float32, in blocks)."""
    matrix = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    found = []
    for start in range(0, len(queries), block):
        scores = torch.from_numpy(np.ascontiguousarray(queries[start:start + block], dtype=np.float32)) @ matrix.T
        found.append(scores.topk(min(k, len(vectors)), dim=1).indices.numpy())
    return np.concatenate(found) if found else np.zeros((0, k), np.int64)


def _without_self(found: np.ndarray, own: np.ndarray, k: int) -> list[set[int]]:
    return [set([key for key in row if key != me][:k]) for row, me in zip(found, own)]


class RecallProbe:
    """A fixed sample of indexed items and their exact ``k`` nearest other items."""

    def __init__(self, keys: np.ndarray, vectors: np.ndarray, k: int = RECALL_K,
                 queries: int = SAMPLE_QUERIES, seed: int = 0):
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        self.k = min(k, len(keys) - 1)
        picked = np.random.default_rng(seed).choice(len(keys), min(queries, len(keys)), replace=False)
        self.queries = np.ascontiguousarray(vectors[picked], dtype=np.float32)
        self.own = np.asarray(keys)[picked]
        truth = np.asarray(keys)[exact_neighbours(vectors, self.queries, self.k + 1)]
        self.truth = _without_self(truth, self.own, self.k)

    def recall(self, index) -> float:
        """Mean share of each sampled item's exact ``k`` nearest others that ``index.search`` returns."""
        return self.recall_bounds(index)[0]

    def recall_bounds(self, index) -> tuple[float, float]:
        """(mean recall, its one-sided 95% lower bound over the sampled queries)."""
        if self.k < 1:
            return 1.0, 1.0
        _, found = index.search(self.queries, self.k + 1)
        got = _without_self(found, self.own, self.k)
        shares = np.array([len(a & b) / self.k for a, b in zip(got, self.truth)])
        spread = shares.std(ddof=1) / np.sqrt(len(shares)) if len(shares) > 1 else 0.0
        return float(shares.mean()), float(shares.mean() - LOWER_BOUND_Z * spread)


def tune_recall(index, keys: np.ndarray, vectors: np.ndarray, target: float, k: int = RECALL_K,
                queries: int = SAMPLE_QUERIES) -> dict[str, Any]:
    """Set ``index``'s search settings to the cheapest on its ladder whose measured recall@k reaches
    ``target`` with its lower bound; returns what was measured (also kept in ``index.options["recall"]``).

    Raises :class:`XmodalError` when even the last rung falls short, naming the best it reached.
    """
    if not 0 < target <= 1:
        raise XmodalError(f"--recall-target {target}: give a share between 0 and 1, such as 0.95")
    probe = RecallProbe(keys, vectors, k, queries)
    tried = []
    for settings in index.search_ladder() or [{}]:  # nothing to tune (exact, flat): measured as built
        index.apply_search(settings)
        recall, lower = probe.recall_bounds(index)
        tried.append((settings, recall))
        logger.info("recall@%d %.3f (lower bound %.3f) with %s", probe.k, recall, lower,
                    settings or "the build's settings")
        if lower >= target:
            break
    else:
        best_settings, best = max(tried, key=lambda pair: pair[1])
        raise XmodalError(f"the {index.describe_kind()} index reaches recall@{probe.k} {best:.3f} at best "
                          f"({best_settings or 'its build settings'}), not surely above --recall-target {target} "
                          "(its 95% lower bound must reach it); build it "
                          "with larger graph or list settings, add the refining stage (--faiss-refine), or use "
                          "--backend exact")
    measured = {"recall_at_k": round(recall, 4), "lower_bound": round(lower, 4), "k": probe.k,
                "queries": len(probe.queries), "target": target, "items": len(keys), "settings": settings}
    index.options["recall"] = measured
    return measured
