"""Evaluation protocols: encode a split once, score every image x text pair in blocks, measure.

The score matrix is built block by block (``image_block`` x ``text_block`` pairs per
``similarity`` call) on the model's device, so a pairwise attention model never needs all
pairs' intermediate tensors at once; the metrics then run on the same device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from xmodal.config import EvalConfig
from xmodal.device import available_bytes
from xmodal.errors import XmodalError
from xmodal.eval.attention import attention_report
from xmodal.eval.metrics import direction_metrics, evaluate_retrieval
from xmodal.eval.two_stage import has_first_stage, two_stage_scores, with_first_stage
from xmodal.models.base import Rep, RetrievalModel, concat_rows, rep_len, rep_to, take
from xmodal.nn.pairs import rows_per_chunk

logger = logging.getLogger(__name__)


class EvalSplit(Protocol):
    """What evaluation reads from a split (:class:`xmodal.features.inputs.SplitData` is one)."""

    n_items: int
    n_texts: int
    labels: Tensor | None

    def images(self, positions: np.ndarray) -> Rep: ...

    def texts(self, positions: np.ndarray) -> Rep: ...

    def ground_truth(self) -> Tensor: ...

    def text_labels(self) -> Tensor | None: ...

    @property
    def text_boxes(self) -> np.ndarray | None: ...


@dataclass
class GroundTruth:
    """What counts as relevant: the texts of each image, and labels when the data have them."""

    matches: Tensor  # [n_images, n_texts] bool
    image_labels: Tensor | None = None  # [n_images, n_classes] bool
    text_labels: Tensor | None = None  # [n_texts, n_classes] bool
    text_boxes: np.ndarray | None = None  # [n_texts, 4] the part of its image each text describes (NaN: unknown)

    @classmethod
    def of(cls, split: EvalSplit) -> "GroundTruth":
        return cls(split.ground_truth(), split.labels, split.text_labels(), getattr(split, "text_boxes", None))

    def text_items(self) -> np.ndarray:
        """For each text, its image (the first, when a text matches several)."""
        return self.matches.float().argmax(0).cpu().numpy()


@torch.no_grad()
def encode_split(model: RetrievalModel, split: EvalSplit, device: torch.device,
                 batch_size: int = 512) -> tuple[Rep, Rep]:
    """Image and text representations of every item/text of a split, on ``device``."""
    images = _encode(model.encode_images, split.images, split.n_items, device, batch_size, "images")
    texts = _encode(model.encode_texts, split.texts, split.n_texts, device, batch_size, "texts")
    return images, texts


def _encode(encoder: Callable[[Rep], Rep], reader: Callable[[np.ndarray], Rep], n: int, device: torch.device,
            batch_size: int, side: str) -> Rep:
    parts: list[Rep] = []
    for start in range(0, n, batch_size):
        parts.append(encoder(rep_to(reader(np.arange(start, min(start + batch_size, n))), device)))
        if start == 0:
            check_fits(parts[0], n, device, side)
    return concat_rows(parts)


def check_fits(first: Rep, n: int, device: torch.device, side: str) -> None:
    """Refuse, before the work, to encode a split whose representations cannot fit in memory: the
    first block's bytes per row times the split's rows, twice (the blocks and their concatenation)."""
    rows = rep_len(first)
    if not rows:
        return
    per_row = sum(value.element_size() * value.numel() for value in first.values()) / rows
    needed, free = 2 * per_row * n, available_bytes(device)
    if free is not None and needed > free:
        raise XmodalError(f"encoding the {n:,} {side} of this split keeps {per_row / 2**20:.2f} MiB per item: about "
                          f"{needed / 2**30:.1f} GiB with the concatenation, and {device} has {free / 2**30:.1f} GiB "
                          "free; evaluate a smaller split (the coco-1k protocol still encodes the whole split), a "
                          "model with smaller representations, or a machine with more memory")




@torch.no_grad()
def score_matrix(model: RetrievalModel, images: Rep, texts: Rep, image_block: int = 256,
                 text_block: int = 1024) -> Tensor:
    """``[n_images, n_texts]`` scores, at most ``image_block x text_block`` pairs per ``similarity``
    call, fewer when the model's per-pair cost (:meth:`RetrievalModel.pair_cost`) would exceed
    the pair budget of :mod:`xmodal.nn.pairs` several times over."""
    n_images, n_texts = rep_len(images), rep_len(texts)
    text_block = min(text_block, n_texts)
    image_block = min(image_block, max(1, 8 * rows_per_chunk(text_block, model.pair_cost())))
    device = next(iter(images.values())).device
    scores = torch.empty(n_images, n_texts, device=device)
    for i in range(0, n_images, image_block):
        image_part = take(images, slice(i, i + image_block))
        for j in range(0, n_texts, text_block):
            scores[i : i + image_block, j : j + text_block] = model.similarity(
                image_part, take(texts, slice(j, j + text_block))).float()
    return scores


def eval_settings(config: EvalConfig) -> dict:
    """The keyword arguments of :func:`evaluate_split` that a run's ``eval`` section sets."""
    return {"map_at": config.map_at, "image_block": config.image_block, "text_block": config.text_block,
            "shortlist": config.shortlist}


@torch.no_grad()
def evaluate_split(model: RetrievalModel, split: EvalSplit, device: torch.device, *, attention: bool = False,
                   protocol: str | None = None, first_stage: tuple[Tensor, Tensor] | None = None,
                   **settings) -> dict:
    """Encode a split's images and texts once, then :func:`evaluate_encoded` them (same keyword settings).

    ``attention`` adds the attention statistics and, where texts have boxes, the pointing game
    (:mod:`xmodal.eval.attention`): what ``xmodal eval`` reports, not every validation epoch.
    ``protocol`` names one of :data:`PROTOCOLS` (COCO's five folds of 1,000 images, ...); the
    result then says which (``"protocol"``). ``first_stage`` (image vectors, text vectors of the
    split's items, in its order) ranks stage 1 of a two-stage ``shortlist`` by another model's
    global vectors (:func:`xmodal.eval.two_stage.with_first_stage`).
    """
    was_training = model.training
    model.eval()
    try:
        images, texts = encode_split(model, split, device)
        ranked = (images, texts) if first_stage is None else (with_first_stage(images, first_stage[0]),
                                                                with_first_stage(texts, first_stage[1]))
        truth = GroundTruth.of(split)
        if protocol is None:
            metrics = evaluate_encoded(model, *ranked, truth, **settings)
        else:
            metrics = evaluate_protocol(model, *ranked, truth, protocol, **settings)
        if attention:
            metrics |= attention_report(model, images, texts, truth.text_items(), truth.text_boxes)
        return metrics
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_encoded(model: RetrievalModel, images: Rep, texts: Rep, truth: GroundTruth, *,
             map_at: Sequence[int] = (50,), image_block: int = 256, text_block: int = 1024,
             shortlist: int = 0) -> dict:
    """Every protocol the ground truth supports: label MAP when labelled, instance recall always.

    ``images`` and ``texts`` are encoded representations (``model.encode_images/texts``).
    ``shortlist`` K > 0 ranks by two-stage search (:mod:`xmodal.eval.two_stage`): the top K
    candidates of each query by global cosine, reranked by ``similarity``; ranks beyond K follow
    the first stage. Returns ``{"i2t": {...}, "t2i": {...}, "rsum": ...}`` as
    :func:`evaluate_retrieval` does.
    """
    kwargs = {"image_labels": truth.image_labels, "text_labels": truth.text_labels, "gt": truth.matches,
              "map_ks": tuple(map_at)}
    if shortlist:
        if not has_first_stage(model, images):
            raise XmodalError(f"eval.shortlist={shortlist}: model {model.name!r} has no global vector for a first "
                              "stage; use eval.shortlist=0 (score every pair)")
        return direction_metrics(*map(finite, two_stage_scores(model, images, texts, shortlist)), **kwargs)
    return evaluate_retrieval(finite(score_matrix(model, images, texts, image_block, text_block)), **kwargs)


# -- the field's named protocols ---------------------------------------------------------------
# The papers' COCO rows use SCAN's ``evalrank(fold5=True)``: the 5,000 test images in order are cut
# into 5 folds of 1,000, each ranked against its own 5,000 captions only, and every metric (R@K,
# median and mean rank, MAP) is the mean over the folds; rsum is the mean of the folds' rsums (the
# sum of the mean recalls: the same number). ``coco-5k`` ranks the whole 5K split at once and
# ``flickr30k-1k`` its 1K test split: both are the plain protocol, named so a table says which it
# is, with a warning when the split is not the size the name promises.

FOLD_IMAGES = 1000
# name -> (images per fold, or 0: the whole split at once; the split size the name promises)
PROTOCOLS: dict[str, tuple[int, int | None]] = {"plain": (0, None), "coco-1k": (FOLD_IMAGES, 5000),
                                                 "coco-5k": (0, 5000), "flickr30k-1k": (0, 1000)}


def check_protocol(protocol: str) -> tuple[int, int | None]:
    """``PROTOCOLS[protocol]``, or a one-line error naming the protocols there are."""
    if protocol not in PROTOCOLS:
        raise XmodalError(f"--protocol {protocol}: choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def fold_truth(truth: GroundTruth, images: np.ndarray, texts: np.ndarray) -> GroundTruth:
    """The ground truth of some images and texts of a split."""
    return replace(truth, matches=truth.matches[images][:, texts],
                   image_labels=None if truth.image_labels is None else truth.image_labels[images],
                   text_labels=None if truth.text_labels is None else truth.text_labels[texts],
                   text_boxes=None if truth.text_boxes is None else truth.text_boxes[texts])


def folds(truth: GroundTruth, fold_images: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image rows, text rows) per fold: consecutive blocks of ``fold_images`` images with their texts."""
    n_images = truth.matches.shape[0]
    if n_images < fold_images or n_images % fold_images:
        raise XmodalError(f"the folds of {fold_images:,} images need a split of a multiple of {fold_images:,} images; "
                          f"this one has {n_images:,} (COCO's 5K test split gives 5 folds)")
    owner = truth.text_items()
    return [(np.arange(start, start + fold_images),
             np.flatnonzero((owner >= start) & (owner < start + fold_images)))
            for start in range(0, n_images, fold_images)]


def averaged(results: list[dict]) -> dict:
    """The mean of every number the folds' metrics share, nested as they are."""
    first = results[0]
    out: dict = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = averaged([result[key] for result in results])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(np.mean([result[key] for result in results]))
    return out


def evaluate_protocol(model: RetrievalModel, images: Rep, texts: Rep, truth: GroundTruth, protocol: str,
                      **settings) -> dict:
    """:func:`~xmodal.eval.protocol.evaluate_encoded` under a named protocol, with ``protocol`` (and
    the folds) in the result."""
    fold_images, promised = check_protocol(protocol)
    n_images = truth.matches.shape[0]
    described: dict = {"name": protocol}
    if promised is not None and n_images != promised:
        described["warning"] = f"{protocol} is defined on {promised:,} test images; this split has {n_images:,}"
        logger.warning(described["warning"])
    if not fold_images:
        return evaluate_encoded(model, images, texts, truth, **settings) | {"protocol": described}
    metrics = evaluate_folds(model, images, texts, truth, fold_images, **settings)
    return metrics | {"protocol": described | {"folds": n_images // fold_images, "fold_images": fold_images}}


def evaluate_folds(model: RetrievalModel, images: Rep, texts: Rep, truth: GroundTruth, fold_images: int,
                   **settings) -> dict:
    """Each fold of ``fold_images`` consecutive images ranked against its own texts; the folds' mean."""
    results = [evaluate_encoded(model, take(images, torch.from_numpy(rows)), take(texts, torch.from_numpy(text_rows)),
                                fold_truth(truth, rows, text_rows), **settings)
               for rows, text_rows in folds(truth, fold_images)]
    return averaged(results)


def finite(scores: Tensor) -> Tensor:
    """The scores, when every one is a number: NaN or infinite scores mean damaged or diverged weights."""
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).sum())
        raise XmodalError(f"{bad:,} of the model's {scores.numel():,} scores are not finite (NaN or infinite): its "
                          "weights are damaged or training diverged; check the checkpoint (xmodal eval --checkpoint "
                          "last), or train again")
    return scores


def headline(metrics: dict, metric: str) -> float:
    """The single number early stopping watches: rsum, or the mean of i2t and t2i MAP@all."""
    if metric == "rsum":
        return float(metrics["rsum"])
    return (metrics["i2t"]["map"] + metrics["t2i"]["map"]) / 2
