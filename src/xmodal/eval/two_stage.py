"""Two-stage retrieval (JGCAR, Wang et al. MM 2018, section 2.4) for any model with a global vector.

Stage 1 ranks every candidate by the cosine of the two global vectors (``model.embed``, one
matrix product per query block) and keeps the top K. Stage 2 scores only the query x shortlisted
candidate pairs with the model's own score and reranks them, so stage 2 costs K x (n_images +
n_texts) pair scores for both directions instead of n_images x n_texts. Stage 2 is batched by
image, in both directions: one ``similarity`` call per distinct image against all texts paired
with it (:func:`score_pairs`). Gathering each query's candidate images instead (``[Q, K]`` copies
of the region tensors) cost 4x more for text queries on emoji (benchmarks/results/jgcar.md).

:meth:`TwoStageResult.score_matrix` turns a result into a full ``[n_images, n_texts]`` matrix
for :func:`xmodal.eval.metrics.evaluate_retrieval`: shortlisted candidates keep their stage-2
score, the rest follow below all of them in stage-1 order (so R@k for k > K is stage 1's).

Stage 1 may come from another model: :func:`with_first_stage` puts that model's global vectors of
the same items into a representation (key :data:`FIRST_STAGE`), and stage 1 ranks by them instead
of ``model.embed``: an embedding model (``cca``, ``dual``, the zero-shot ``conse``) shortlisting
for a pairwise one whose own global head is weak. The vectors travel with the representation, so
whatever slices it (the folds of a protocol) slices them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from xmodal.models.base import Rep, RetrievalModel, rep_len, take

Direction = Literal["i2t", "t2i"]

# The representation key of another model's global vectors, used by stage 1 instead of ``model.embed``.
FIRST_STAGE = "first_stage"


@dataclass
class TwoStageResult:
    """Per query: the shortlist reranked by stage 2, and stage 1's cosines of all candidates."""

    direction: Direction
    indices: Tensor  # [Q, K] candidate indices, best first
    scores: Tensor  # [Q, K] stage-2 scores, in that order
    first_stage: Tensor  # [Q, C] stage-1 cosines of every candidate

    def score_matrix(self) -> Tensor:
        """``[n_images, n_texts]``: stage-2 scores on the shortlist, stage-1 order below it."""
        offset = self.first_stage.max() - self.scores.min() + 1.0
        full = (self.first_stage - offset).scatter(1, self.indices, self.scores.to(self.first_stage.dtype))
        return full if self.direction == "i2t" else full.T


def cosine_scores(queries: Tensor, candidates: Tensor, block: int = 1024) -> Tensor:
    """``[Q, C]`` cosines, ``block`` queries per matrix product."""
    candidates = nn.functional.normalize(candidates, dim=-1)
    return torch.cat([nn.functional.normalize(queries[start : start + block], dim=-1) @ candidates.T
                      for start in range(0, len(queries), block)])


def with_first_stage(rep: Rep, vectors: Tensor) -> Rep:
    """``rep`` with the global vectors ``[N, d]`` that stage 1 ranks its ``N`` items by."""
    if len(vectors) != rep_len(rep):
        raise ValueError(f"{len(vectors)} first-stage vectors for {rep_len(rep)} items")
    return rep | {FIRST_STAGE: vectors.to(next(iter(rep.values())).device)}


def has_first_stage(model: RetrievalModel, rep: Rep) -> bool:
    """Whether stage 1 has vectors to rank ``rep``'s items by: given ones, or the model's own."""
    return FIRST_STAGE in rep or model.embed(take(rep, slice(0, 1))) is not None


def _global(model: RetrievalModel, rep: Rep) -> Tensor:
    if FIRST_STAGE in rep:
        return rep[FIRST_STAGE]
    vector = model.embed(rep)
    if vector is None:
        raise ValueError(f"model {model.name!r} has no global vector (embed returns None): no first stage")
    return vector


@torch.no_grad()
def score_pairs(model: RetrievalModel, images: Rep, texts: Rep, image_index: Tensor, text_index: Tensor) -> Tensor:
    """``model.similarity`` of the pairs (image_index[p], text_index[p]), ``[P]``.

    Pairs are grouped by image: one ``similarity`` call per distinct image scores it against all
    its texts at once, so a pairwise model works on a 1 x n block (for JGCAR one matrix product
    for the affinities of all n texts) and no image representation is copied per pair.
    """
    order = image_index.argsort(stable=True)
    distinct, counts = image_index[order].unique_consecutive(return_counts=True)
    scores = torch.empty(len(image_index), device=image_index.device)
    for image, positions in zip(distinct.tolist(), order.split(counts.tolist())):
        scores[positions] = model.similarity(take(images, slice(image, image + 1)),
                                             take(texts, text_index[positions]))[0].to(scores.dtype)
    return scores


@torch.no_grad()
def rerank(model: RetrievalModel, images: Rep, texts: Rep, shortlist: Tensor, direction: Direction) -> Tensor:
    """Stage-2 scores ``[Q, K]`` of each query with the candidates of its ``shortlist [Q, K]``."""
    queries = torch.arange(len(shortlist), device=shortlist.device).repeat_interleave(shortlist.shape[1])
    candidates = shortlist.reshape(-1)
    image_index, text_index = (queries, candidates) if direction == "i2t" else (candidates, queries)
    return score_pairs(model, images, texts, image_index, text_index).view_as(shortlist)


@torch.no_grad()
def two_stage_search(model: RetrievalModel, images: Rep, texts: Rep, k: int, direction: Direction
                     ) -> TwoStageResult:
    """Shortlist the top ``k`` candidates per query by global cosine, rerank them by ``similarity``.

    ``images`` and ``texts`` are encoded representations (``model.encode_images/texts``), with
    another model's global vectors where stage 1 is that model's (:func:`with_first_stage`);
    ``direction`` "i2t" makes images the queries, "t2i" texts.
    """
    queries, candidates = (images, texts) if direction == "i2t" else (texts, images)
    first_stage = cosine_scores(_global(model, queries), _global(model, candidates))
    k = min(k, rep_len(candidates))
    shortlist = first_stage.topk(k, dim=1).indices
    scores = rerank(model, images, texts, shortlist, direction)
    order = scores.argsort(dim=1, descending=True, stable=True)
    return TwoStageResult(direction, shortlist.gather(1, order), scores.gather(1, order), first_stage)


def two_stage_scores(model: RetrievalModel, images: Rep, texts: Rep, k: int) -> tuple[Tensor, Tensor]:
    """Full ``[n_images, n_texts]`` matrices of the two directions: (image queries, text queries)."""
    return tuple(two_stage_search(model, images, texts, k, direction).score_matrix()
                 for direction in ("i2t", "t2i"))
