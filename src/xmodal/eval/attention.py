"""How a model's attention behaves on a split: how far from uniform each map is, and whether it
points at what a text describes.

A model's ``explain`` gives named maps (:class:`~xmodal.models.base.AttentionMap`) whose last
axis is a distribution (its weights sum to 1) and whose leading axes, if any, are the positions
that attend (BSSAN's ``word x region``: one distribution over the regions per word).

- :func:`attention_statistics`: for each map, over matching pairs (each text with its own image,
  evenly sampled): the normalised entropy ``H / log n`` (1 is uniform attention), averaged over
  pairs and leading positions, and the mean largest weight beside the uniform weight ``1 / n``.
  Distributions over one position say nothing and are left out.
- :func:`pointing_game` (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
  2016: a hit when the map's largest value falls inside the annotated object): for every text
  whose box is known (a mosaic's tile) paired with its own image, each map over a grid of image
  regions. A map with leading axes is first averaged over them (BSSAN's W2R: the mean of the
  words' distributions over the regions). A hit when the largest cell's centre lies in the box;
  the mass is the weight of the cells whose centres lie in it. Chance is the box's share of the
  cells for both (a uniform map, or a random cell).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from xmodal.models.base import Attention, AttentionMap, Rep, RetrievalModel, take

MAX_PAIRS = 200  # matching pairs the attention statistics are taken over


@torch.no_grad()
def explanations(model: RetrievalModel, images: Rep, texts: Rep, pairs: list[tuple[int, int]]
                 ) -> Iterator[tuple[tuple[int, int], Attention]]:
    """``model.explain`` of each (image, text) pair that it explains."""
    for image, text in pairs:
        attention = model.explain(take(images, slice(image, image + 1)), take(texts, slice(text, text + 1)))
        if attention is not None:
            yield (image, text), attention


def sampled_pairs(text_items: np.ndarray, limit: int = MAX_PAIRS) -> list[tuple[int, int]]:
    """Up to ``limit`` matching pairs (image of the text, text), texts evenly spaced over the split."""
    texts = np.unique(np.linspace(0, len(text_items) - 1, min(limit, len(text_items))).round().astype(int))
    return [(int(text_items[text]), int(text)) for text in texts]


def _distributions(attention_map: AttentionMap) -> Tensor:
    """``[positions, n]``: the map's distributions over its last axis."""
    weights = attention_map.weights.detach().float()
    return weights.reshape(-1, weights.shape[-1])


def attention_statistics(attentions: list[Attention]) -> dict[str, dict[str, float]]:
    """Per map name: normalised entropy, mean largest weight, the uniform weight and the pairs counted."""
    sums: dict[str, list[float]] = {}
    for attention in attentions:
        for name, attention_map in attention.maps.items():
            rows = _distributions(attention_map)
            n = rows.shape[1]
            if n < 2:
                continue
            probabilities = rows.clamp_min(0) / rows.sum(1, keepdim=True).clamp_min(1e-12)
            entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(1) / math.log(n)
            entry = sums.setdefault(name, [0.0, 0.0, 0.0, 0])
            entry[0] += float(entropy.mean())
            entry[1] += float(probabilities.amax(1).mean())
            entry[2] += 1.0 / n
            entry[3] += 1
    return {name: {"entropy": total_entropy / pairs, "max_weight": total_max / pairs,
                   "uniform_weight": total_uniform / pairs, "pairs": pairs}
            for name, (total_entropy, total_max, total_uniform, pairs) in sums.items()}


def region_distribution(attention_map: AttentionMap) -> Tensor | None:
    """The map's distribution over a grid of regions ``[cells]`` (leading axes averaged), or None."""
    if attention_map.axes[-1] != "region" or "region" not in attention_map.grids:
        return None
    return _distributions(attention_map).mean(0)


def cell_centres(rows: int, cols: int) -> Tensor:
    """``[rows * cols, 2]`` (x, y) centres of a row-major grid's cells, as fractions of the image."""
    y, x = torch.meshgrid((torch.arange(rows) + 0.5) / rows, (torch.arange(cols) + 0.5) / cols, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def inside(centres: Tensor, box: tuple[float, float, float, float]) -> Tensor:
    left, top, right, bottom = box
    return (centres[:, 0] >= left) & (centres[:, 0] < right) & (centres[:, 1] >= top) & (centres[:, 1] < bottom)


def point(distribution: Tensor, grid: tuple[int, int], box: tuple[float, float, float, float]
          ) -> tuple[bool, float, float]:
    """(hit, mass in the box, the box's share of the cells) of one region distribution."""
    cells = inside(cell_centres(*grid), box)
    return bool(cells[int(distribution.argmax())]), float(distribution[cells].sum()), float(cells.float().mean())


def pointing_game(explained: list[tuple[tuple[int, int], Attention]], text_boxes: np.ndarray
                  ) -> dict[str, dict[str, float]]:
    """Per region map: pointing accuracy, mean mass on the box, their chance values, the pairs scored."""
    totals: dict[str, list[float]] = {}
    combined: dict[str, str] = {}
    for (_, text), attention in explained:
        box = text_boxes[text]
        if np.isnan(box).any():
            continue
        for name, attention_map in attention.maps.items():
            distribution = region_distribution(attention_map)
            if distribution is None:
                continue
            hit, mass, share = point(distribution, attention_map.grids["region"], tuple(box))
            leading = attention_map.axes[:-1]
            combined[name] = f"the mean over its {' x '.join(leading)} positions" if leading else "the map itself"
            entry = totals.setdefault(name, [0.0, 0.0, 0.0, 0])
            entry[0] += hit
            entry[1] += mass
            entry[2] += share
            entry[3] += 1
    return {name: {"accuracy": hits / pairs, "mass": mass / pairs, "chance": share / pairs, "pairs": pairs,
                   "combined": combined[name]} for name, (hits, mass, share, pairs) in totals.items()}


def attention_report(model: RetrievalModel, images: Rep, texts: Rep, text_items: np.ndarray,
                     text_boxes: np.ndarray | None = None, max_pairs: int = MAX_PAIRS) -> dict:
    """``{"attention": {map: stats}, "pointing": {map: stats}}`` of a split's encoded items; keys only
    for what the model explains (an embedding model without attention gives ``{}``)."""
    report: dict = {}
    sampled = list(explanations(model, images, texts, sampled_pairs(text_items, max_pairs)))
    statistics = attention_statistics([attention for _, attention in sampled])
    if statistics:
        report["attention"] = statistics
    if text_boxes is not None and sampled:
        boxed = [(int(text_items[text]), text) for text in range(len(text_items))
                 if not np.isnan(text_boxes[text]).any()]
        pointing = pointing_game(list(explanations(model, images, texts, boxed)), text_boxes)
        if pointing:
            report["pointing"] = pointing
    return report
