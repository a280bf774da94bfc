"""Evaluation protocols: encode a split once, score every image x text pair in blocks, measure.

The score matrix is built block by block (``image_block`` x ``text_block`` pairs per
``similarity`` call) on the model's device, so a pairwise attention model never needs all
pairs' intermediate tensors at once; the metrics then run on the same device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from xmodal.config import EvalConfig
from xmodal.errors import XmodalError
from xmodal.eval.metrics import evaluate_retrieval
from xmodal.features.inputs import SplitData
from xmodal.models.base import Rep, RetrievalModel, rep_len, rep_to, take


@torch.no_grad()
def encode_split(model: RetrievalModel, split: SplitData, device: torch.device,
                 batch_size: int = 512) -> tuple[Rep, Rep]:
    """Image and text representations of every item/text of a split, on ``device``."""
    images = _encode(model.encode_images, split.images, split.n_items, device, batch_size)
    texts = _encode(model.encode_texts, split.texts, split.n_texts, device, batch_size)
    return images, texts


def _encode(encoder, reader, n: int, device: torch.device, batch_size: int) -> Rep:
    parts: list[Rep] = []
    for start in range(0, n, batch_size):
        parts.append(encoder(rep_to(reader(np.arange(start, min(start + batch_size, n))), device)))
    return {key: _concat([part[key] for part in parts]) for key in parts[0]}


def _concat(tensors: list[Tensor]) -> Tensor:
    """Concatenate along items, zero-padding ragged second dimensions (sequences of any length)."""
    if tensors[0].dim() >= 2 and len({t.shape[1] for t in tensors}) > 1:
        width = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, [0, 0] * (t.dim() - 2) + [0, width - t.shape[1]]) for t in tensors]
    return torch.cat(tensors)


@torch.no_grad()
def score_matrix(model: RetrievalModel, images: Rep, texts: Rep, image_block: int = 256,
                 text_block: int = 1024) -> Tensor:
    """``[n_images, n_texts]`` scores, computed ``image_block x text_block`` pairs at a time."""
    n_images, n_texts = rep_len(images), rep_len(texts)
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
def evaluate_split(model: RetrievalModel, split: SplitData, device: torch.device, *,
                   map_at: Sequence[int] = (50,), image_block: int = 256, text_block: int = 1024,
                   shortlist: int = 0) -> dict:
    """Every protocol the split supports: label MAP when labelled, instance recall always.

    ``shortlist`` K > 0 ranks by two-stage search (:mod:`xmodal.search.two_stage`): the top K
    candidates of each query by global cosine, reranked by ``similarity``; ranks beyond K follow
    the first stage. Returns ``{"i2t": {...}, "t2i": {...}, "rsum": ...}`` as
    :func:`evaluate_retrieval` does.
    """
    was_training = model.training
    model.eval()
    images, texts = encode_split(model, split, device)
    kwargs = {"image_labels": split.labels, "text_labels": split.text_labels(), "gt": split.ground_truth(),
              "map_ks": tuple(map_at)}
    if shortlist:
        from xmodal.search.two_stage import direction_metrics, two_stage_scores

        if model.embed(take(images, slice(0, 1))) is None:
            raise XmodalError(f"eval.shortlist={shortlist}: model {model.name!r} has no global vector for a first "
                              "stage; use eval.shortlist=0 (score every pair)")
        metrics = direction_metrics(*two_stage_scores(model, images, texts, shortlist), **kwargs)
    else:
        metrics = evaluate_retrieval(score_matrix(model, images, texts, image_block, text_block), **kwargs)
    model.train(was_training)
    return metrics


def headline(metrics: dict, metric: str) -> float:
    """The single number early stopping watches: rsum, or the mean of i2t and t2i MAP@all."""
    if metric == "rsum":
        return float(metrics["rsum"])
    return (metrics["i2t"]["map"] + metrics["t2i"]["map"]) / 2
