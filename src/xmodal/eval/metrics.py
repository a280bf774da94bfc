"""Retrieval metrics computed from an image-text score matrix, in both directions, in blocks.

Conventions
-----------
* ``scores`` has shape ``[n_images, n_texts]``; a higher score means more similar.
  Image-to-text (``i2t``): each image row is a query that ranks all texts.
  Text-to-image (``t2i``): each text column is a query that ranks all images; the functions
  below always rank the *columns* of their ``scores`` argument for each *row*, so ``t2i`` is
  computed on ``scores.T`` (with ``gt.T`` and the label sets swapped).
* Ties: candidates are ranked by a stable descending sort, so among equal scores the one with
  the lower candidate index ranks first. Results are therefore deterministic, also on CUDA.
* Label-based relevance: a query and a candidate are relevant to each other when they share at
  least one label. Labels are a multi-hot matrix ``[n, n_classes]`` (bool, or numeric where
  non-zero means "has the label") or a 1-D integer tensor of single labels.
* AP@all: mean, over the relevant candidates, of the precision at each one's rank.
* AP@k (the DSCMR/ACMR evaluation code's convention): sum over the top k of
  ``precision@i * rel_i``, divided by the number of relevant candidates *found in the top k*;
  0 when none is found there.
* Queries with no relevant candidate at all have an undefined AP: :func:`average_precision`
  returns NaN for them. By default (``empty="exclude"``) :func:`mean_average_precision`
  leaves them out of the mean (the count is logged at DEBUG level; if every query is left out
  the MAP is NaN), so a query that cannot succeed does not lower the score. The DSCMR/ACMR
  evaluation code (``fx_calc_map_label``) instead counts such a query as AP 0:
  ``empty="zero"`` reproduces that, and gives a lower MAP whenever such queries exist. On
  single-label benchmarks whose test split holds every class (Wikipedia) there are none, so
  the two agree.
* Instance recall uses ``gt``, a boolean ``[n_images, n_texts]`` matrix of matching pairs.
  A query's rank is the 1-based rank of its best-ranked ground-truth match. ``r@k`` is the
  percentage (0-100) of queries with rank <= k and ``meanr`` the mean rank. ``medr`` follows
  the SCAN / VSE++ evaluation code, ``floor(median(0-based ranks)) + 1``: always an integer
  (for an even number of queries numpy's median of the middle pair is rounded down), so the
  1-based ranks ``[1, 2]`` give medr 1, not 1.5. ``rsum`` is the sum of r@1, r@5 and r@10 in
  both directions. Every query must have at least one match.
* Memory: queries are processed ``block_size`` at a time, so peak extra memory is
  O(block_size x n_candidates), never O(n_queries x n_candidates x anything). Computation runs
  on the device of ``scores``; other tensors are moved there one block at a time. Numpy arrays
  are accepted wherever a tensor is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

ArrayLike = Tensor | np.ndarray

DEFAULT_BLOCK_SIZE = 1024
RSUM_KS = (1, 5, 10)
EMPTY_QUERY_RULES = ("exclude", "zero")


# ----------------------------------------------------------------------------- validation


def _as_scores(scores: ArrayLike) -> Tensor:
    """Return ``scores`` as a non-empty 2-D floating tensor without NaNs."""
    scores = torch.as_tensor(scores)
    if scores.dim() != 2:
        raise ValueError(
            f"scores: expected a 2-D matrix [n_queries, n_candidates], "
            f"got shape {tuple(scores.shape)}"
        )
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores: expected a non-empty matrix, got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if torch.isnan(scores).any():
        raise ValueError("scores: contains NaN; rankings would be undefined")
    return scores


def _as_mask(mask: ArrayLike, name: str, shape: torch.Size) -> Tensor:
    """Return ``mask`` as a bool tensor (non-zero = True) after checking it has ``shape``."""
    mask = torch.as_tensor(mask)
    if mask.shape != shape:
        raise ValueError(
            f"{name}: expected shape {tuple(shape)} (same as scores), got {tuple(mask.shape)}"
        )
    return mask if mask.dtype == torch.bool else mask != 0


def _check_rows(values: ArrayLike | Sequence, name: str, n_rows: int, item: str) -> None:
    """Raise unless ``values`` has one row per ``item``."""
    if len(values) != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per {item}), got {len(values)}")


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _blocks(n: int, block_size: int) -> Iterator[slice]:
    """Yield consecutive slices of at most ``block_size`` query rows."""
    _check_positive_int(block_size, "block_size")
    for start in range(0, n, block_size):
        yield slice(start, min(start + block_size, n))


# ----------------------------------------------------------------------------- labels


def labels_to_multihot(labels: Sequence[Sequence[int]] | Sequence[int] | ArrayLike,
                       n_classes: int) -> Tensor:
    """Turn labels into a bool multi-hot matrix ``[n, n_classes]``.

    Accepts a 1-D integer tensor/array or list of single labels, a list of label lists (an
    empty list means "no label"), or an existing 2-D multi-hot matrix (non-zero = has label).
    """
    _check_positive_int(n_classes, "n_classes")
    if isinstance(labels, (Tensor, np.ndarray)):
        tensor = torch.as_tensor(labels)
        if tensor.dim() == 2:
            if tensor.shape[1] != n_classes:
                raise ValueError(
                    f"labels: expected a multi-hot matrix with {n_classes} columns, "
                    f"got shape {tuple(tensor.shape)}"
                )
            return tensor if tensor.dtype == torch.bool else tensor != 0
        if tensor.dim() != 1:
            raise ValueError(
                f"labels: expected 1-D single labels or a 2-D multi-hot matrix, "
                f"got shape {tuple(tensor.shape)}"
            )
        return _single_to_multihot(tensor, n_classes)
    items = list(labels)
    if all(isinstance(item, (int, np.integer)) for item in items):
        return _single_to_multihot(torch.as_tensor(items, dtype=torch.long), n_classes)
    rows = torch.tensor([i for i, item in enumerate(items) for _ in item], dtype=torch.long)
    cols = torch.tensor([int(label) for item in items for label in item], dtype=torch.long)
    _check_label_range(cols, n_classes)
    multihot = torch.zeros(len(items), n_classes, dtype=torch.bool)
    multihot[rows, cols] = True
    return multihot


def _single_to_multihot(labels: Tensor, n_classes: int) -> Tensor:
    """One-hot encode a 1-D integer label tensor."""
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected integer single labels, got dtype {labels.dtype}")
    _check_label_range(labels, n_classes)
    return torch.nn.functional.one_hot(labels.long(), n_classes).bool()


def _check_label_range(labels: Tensor, n_classes: int) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels: expected values in [0, {n_classes}), "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )


def _label_width(labels: ArrayLike | Sequence) -> int:
    """Number of classes implied by labels: matrix width, or largest label + 1."""
    if isinstance(labels, (Tensor, np.ndarray)):
        tensor = torch.as_tensor(labels)
        if tensor.dim() == 2:
            return tensor.shape[1]
        return int(tensor.max()) + 1 if tensor.numel() and tensor.dim() == 1 else 1
    items = list(labels)
    flat = [int(x) for item in items
            for x in ([item] if isinstance(item, (int, np.integer)) else item)]
    return max(flat, default=0) + 1


def _as_labels(labels: ArrayLike | Sequence, name: str, n_rows: int, n_classes: int) -> Tensor:
    """Return labels as a 1-D long tensor (single labels) or a 2-D bool multi-hot matrix.

    Python lists of label lists are encoded with ``n_classes`` columns.
    """
    if not isinstance(labels, (Tensor, np.ndarray)):
        items = list(labels)
        if all(isinstance(item, (int, np.integer)) for item in items):
            labels = torch.as_tensor(items, dtype=torch.long)
        else:
            labels = labels_to_multihot(items, n_classes)
    labels = torch.as_tensor(labels)
    if labels.dim() not in (1, 2):
        raise ValueError(
            f"{name}: expected 1-D single labels or a 2-D multi-hot matrix, "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per item), got {labels.shape[0]}")
    if labels.dim() == 1:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{name}: 1-D labels must be integers, got dtype {labels.dtype}")
        return labels.long()
    return labels if labels.dtype == torch.bool else labels != 0


def _align_labels(query: Tensor, candidate: Tensor) -> tuple[Tensor, Tensor]:
    """Make both label sets the same kind: both 1-D, or both multi-hot with equal width."""
    if query.dim() == 1 and candidate.dim() == 1:
        return query, candidate
    if query.dim() == 2 and candidate.dim() == 2:
        if query.shape[1] != candidate.shape[1]:
            raise ValueError(
                f"candidate_labels: expected {query.shape[1]} classes like query_labels, "
                f"got {candidate.shape[1]}"
            )
        return query, candidate
    n_classes = query.shape[1] if query.dim() == 2 else candidate.shape[1]
    return labels_to_multihot(query, n_classes), labels_to_multihot(candidate, n_classes)


def _label_relevance(query: Tensor, candidate: Tensor) -> Tensor:
    """Bool ``[n_query, n_candidate]``: True where the two items share at least one label."""
    if query.dim() == 1:
        return query[:, None] == candidate[None, :]
    return (query.float() @ candidate.float().T) > 0


# ----------------------------------------------------------------------------- ranking core


def _ranked_mask(scores: Tensor, mask: Tensor) -> Tensor:
    """Reorder each row of ``mask`` by descending score (ties: lower index first)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return torch.gather(mask, 1, order)


def _ap_block(scores: Tensor, relevant: Tensor, ks: Sequence[int | None]) -> Tensor:
    """AP (float64 ``[len(ks), block]``) for each cut-off in ``ks`` from a single sort.

    The denominator is the number of relevant candidates within the ranked list considered:
    all of them for AP@all (``None``), those found in the top k for AP@k (DSCMR convention).
    Queries with no relevant candidate at all get NaN.
    """
    hits = _ranked_mask(scores, relevant).to(torch.float64)
    positions = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)
    weighted_precision = hits.cumsum(dim=1) / positions * hits
    has_relevant = relevant.any(dim=1)
    rows = []
    for k in ks:
        found = hits[:, :k].sum(dim=1)
        ap = weighted_precision[:, :k].sum(dim=1) / found.clamp(min=1.0)
        rows.append(torch.where(has_relevant, ap, torch.full_like(ap, float("nan"))))
    return torch.stack(rows)


def _first_match_block(scores: Tensor, gt: Tensor) -> Tensor:
    """1-based rank of each row's best-ranked ground-truth match in one block."""
    ranked = _ranked_mask(scores, gt)
    return ranked.to(torch.int8).argmax(dim=1) + 1


# ----------------------------------------------------------------------------- public API


def average_precision(scores: ArrayLike, relevant: ArrayLike, k: int | None = None,
                      block_size: int = DEFAULT_BLOCK_SIZE) -> Tensor:
    """Per-query AP@all (``k=None``) or AP@k for each row of ``scores``.

    ``relevant`` is a bool ``[n_queries, n_candidates]`` matrix. Returns a float64 tensor
    ``[n_queries]`` on the device of ``scores``, NaN for queries with no relevant candidate.
    """
    scores = _as_scores(scores)
    relevant = _as_mask(relevant, "relevant", scores.shape)
    ks = _check_map_ks([k])
    parts = [
        _ap_block(scores[rows], relevant[rows].to(scores.device), ks)[0]
        for rows in _blocks(scores.shape[0], block_size)
    ]
    return torch.cat(parts)


def mean_average_precision(scores: ArrayLike, query_labels: ArrayLike | Sequence,
                           candidate_labels: ArrayLike | Sequence, k: int | None = None,
                           block_size: int = DEFAULT_BLOCK_SIZE, empty: str = "exclude") -> float:
    """MAP (``k=None``) or MAP@k with label relevance (share >= 1 label).

    A query with no relevant candidate is left out of the mean (``empty="exclude"``, NaN if
    none is left) or counted as AP 0 as the DSCMR code does (``empty="zero"``).
    The relevance matrix is built one block at a time, never in full.
    """
    return _label_maps(scores, query_labels, candidate_labels, [k], block_size, empty)[0]


def _check_map_ks(ks: Sequence[int | None]) -> list[int | None]:
    for k in ks:
        if k is not None:
            _check_positive_int(k, "k")
    return list(ks)


def _check_empty_rule(empty: str) -> None:
    if empty not in EMPTY_QUERY_RULES:
        raise ValueError(f"empty: expected one of {EMPTY_QUERY_RULES}, got {empty!r}")


def _label_maps(scores: ArrayLike, query_labels: ArrayLike | Sequence,
                candidate_labels: ArrayLike | Sequence, ks: Sequence[int | None],
                block_size: int, empty: str = "exclude") -> list[float]:
    """MAP for each cut-off in ``ks`` (``None`` = all), sorting each block only once."""
    scores = _as_scores(scores)
    ks = _check_map_ks(ks)
    _check_empty_rule(empty)
    n_classes = max(_label_width(query_labels), _label_width(candidate_labels))
    query = _as_labels(query_labels, "query_labels", scores.shape[0], n_classes)
    candidate = _as_labels(candidate_labels, "candidate_labels", scores.shape[1], n_classes)
    query, candidate = _align_labels(query, candidate)
    candidate = candidate.to(scores.device)
    parts = [
        _ap_block(scores[rows], _label_relevance(query[rows].to(scores.device), candidate), ks)
        for rows in _blocks(scores.shape[0], block_size)
    ]
    ap = torch.cat(parts, dim=1)
    if empty == "zero":
        return [float(value) for value in torch.nan_to_num(ap, nan=0.0).mean(dim=1)]
    defined = ~torch.isnan(ap[0])
    n_excluded = int((~defined).sum())
    if n_excluded:
        logger.debug("MAP: excluded %d of %d queries with no relevant candidate",
                     n_excluded, defined.numel())
    if not defined.any():
        return [float("nan")] * len(ks)
    return [float(value) for value in ap[:, defined].mean(dim=1)]


def first_match_ranks(scores: ArrayLike, gt: ArrayLike,
                      block_size: int = DEFAULT_BLOCK_SIZE) -> Tensor:
    """1-based rank (int64 ``[n_queries]``) of each query row's best-ranked ``gt`` match.

    Raises ValueError if some query has no ground-truth match, since its rank is undefined.
    """
    scores = _as_scores(scores)
    gt = _as_mask(gt, "gt", scores.shape)
    missing = ~gt.any(dim=1)
    if missing.any():
        first = missing.nonzero()[:, 0][:5].tolist()
        raise ValueError(
            f"gt: {int(missing.sum())} query row(s) have no ground-truth match "
            f"(first: {first}); every query needs at least one"
        )
    parts = [
        _first_match_block(scores[rows], gt[rows].to(scores.device))
        for rows in _blocks(scores.shape[0], block_size)
    ]
    return torch.cat(parts)


def recall_at_k(scores: ArrayLike, gt: ArrayLike, ks: Sequence[int] = RSUM_KS,
                block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Instance recall: ``'r@k'`` in percent for each k, plus ``'medr'`` and ``'meanr'``."""
    for k in ks:
        _check_positive_int(k, "ks")
    ranks = first_match_ranks(scores, gt, block_size=block_size)
    result = {f"r@{k}": 100.0 * float((ranks <= k).double().mean()) for k in ks}
    result["medr"] = median_rank(ranks)
    result["meanr"] = float(ranks.double().mean())
    return result


def median_rank(ranks: ArrayLike) -> float:
    """SCAN / VSE++ median rank of 1-based ``ranks``: ``floor(median(ranks - 1)) + 1``.

    Their code ranks from 0 and rounds the median down, so the result is a whole rank (an even
    count never gives x.5), which keeps our medr comparable with the papers' tables.
    """
    zero_based = torch.as_tensor(ranks).cpu().numpy() - 1
    return float(np.floor(np.median(zero_based)) + 1)


def _direction_metrics(scores: Tensor, query_labels: ArrayLike | Sequence | None,
                       candidate_labels: ArrayLike | Sequence | None, gt: Tensor | None,
                       map_ks: Sequence[int], block_size: int, empty: str = "exclude") -> dict[str, float]:
    """All applicable metrics for one direction (queries are the rows of ``scores``)."""
    result: dict[str, float] = {}
    if query_labels is not None and candidate_labels is not None:
        ks = [None, *map_ks]
        maps = _label_maps(scores, query_labels, candidate_labels, ks, block_size, empty)
        result.update({"map" if k is None else f"map@{k}": value for k, value in zip(ks, maps)})
    if gt is not None:
        result.update(recall_at_k(scores, gt, ks=RSUM_KS, block_size=block_size))
    return result


def evaluate_retrieval(scores: ArrayLike, *, image_labels: ArrayLike | Sequence | None = None,
                       text_labels: ArrayLike | Sequence | None = None,
                       gt: ArrayLike | None = None, map_ks: Sequence[int] = (50,),
                       block_size: int = DEFAULT_BLOCK_SIZE, map_empty: str = "exclude") -> dict:
    """Evaluate both directions from one ``[n_images, n_texts]`` score matrix.

    Returns ``{"i2t": {...}, "t2i": {...}}`` with MAP keys (``map``, ``map@k``) when labels are
    given, recall keys (``r@1/5/10``, ``medr``, ``meanr``) and a top-level ``rsum`` when ``gt``
    is given. All values are plain Python floats. ``t2i`` is computed on ``scores.T``, ``gt.T``
    and the swapped label sets. ``map_empty`` is :func:`mean_average_precision`'s ``empty``
    rule for queries without a relevant candidate. Raises ValueError when neither labels nor
    ``gt`` are given.
    """
    scores = _as_scores(scores)
    if (image_labels is None) != (text_labels is None):
        raise ValueError("image_labels and text_labels: give both or neither")
    if image_labels is None and gt is None:
        raise ValueError("evaluate_retrieval: give image_labels and text_labels, or gt, or both")
    if image_labels is not None:
        _check_rows(image_labels, "image_labels", scores.shape[0], "image")
        _check_rows(text_labels, "text_labels", scores.shape[1], "text")
    if gt is not None:
        gt = _as_mask(gt, "gt", scores.shape)
    i2t = _direction_metrics(scores, image_labels, text_labels, gt, map_ks, block_size, map_empty)
    t2i = _direction_metrics(scores.T, text_labels, image_labels,
                             None if gt is None else gt.T, map_ks, block_size, map_empty)
    result: dict = {"i2t": i2t, "t2i": t2i}
    if gt is not None:
        result["rsum"] = sum(d[f"r@{k}"] for d in (i2t, t2i) for k in RSUM_KS)
    return result


def direction_metrics(i2t_scores: Tensor, t2i_scores: Tensor, gt: Tensor, *, image_labels: Tensor | None = None,
                      text_labels: Tensor | None = None, map_ks: Sequence[int] = (50,),
                      recall_ks: Sequence[int] = ()) -> dict:
    """Metrics as :func:`evaluate_retrieval` returns them, i2t read from one matrix and t2i from
    another (they differ for two-stage search), plus ``r@k`` for each extra ``recall_ks``."""
    kwargs = {"image_labels": image_labels, "text_labels": text_labels, "gt": gt, "map_ks": map_ks}
    result = {"i2t": evaluate_retrieval(i2t_scores, **kwargs)["i2t"],
              "t2i": evaluate_retrieval(t2i_scores, **kwargs)["t2i"]}
    for direction, scores, truth in (("i2t", i2t_scores, gt), ("t2i", t2i_scores.T, gt.T)):
        recalls = recall_at_k(scores, truth, ks=tuple(recall_ks)) if recall_ks else {}
        result[direction].update({key: value for key, value in recalls.items() if key.startswith("r@")})
    result["rsum"] = sum(result[d][f"r@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return result
