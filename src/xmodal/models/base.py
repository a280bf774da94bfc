"""The model contract every retrieval model follows (docs/DESIGN.md, "The model contract").

Evaluation, search and serving are written once against :class:`RetrievalModel`:

- ``encode_images`` / ``encode_texts`` turn model inputs of one side into representations that
  need nothing from the other side (so they can be computed once and cached);
- ``similarity`` scores a block of images against a block of texts, ``[n_img, n_txt]``, as
  batched tensor algebra: pairwise (attention) models compute each score from both sides;
- ``embed`` gives a global vector for a fast first stage (``None`` when there is none);
- ``loss`` returns named terms, ``"total"`` among them, for a batch of matching pairs;
- ``explain`` returns the attention weights behind one pair's score, for display.

Representations and inputs are plain ``dict[str, Tensor]`` whose first dimension is the item.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

Rep = dict[str, Tensor]

def take(rep: Rep, index: Tensor | slice) -> Rep:
    """The rows ``index`` of every tensor in a representation."""
    return {key: value[index] for key, value in rep.items()}


def current_names(state: dict[str, Tensor], renamed: dict[str, str]) -> dict[str, Tensor]:
    """A state dict whose keys under an old prefix of ``renamed`` are moved to the new prefix."""
    if not renamed:
        return state
    moved = {}
    for key, value in state.items():
        old = next((prefix for prefix in renamed if key.startswith(prefix)), None)
        moved[renamed[old] + key[len(old):] if old else key] = value
    return moved


def rep_len(rep: Rep) -> int:
    return len(next(iter(rep.values())))


def rep_to(rep: Rep, device: torch.device | str) -> Rep:
    return {key: value.to(device, non_blocking=True) for key, value in rep.items()}


def concat_rows(parts: list[Rep]) -> Rep:
    """Representations of consecutive blocks of items as one; ragged second dimensions (sequences of
    different lengths) are zero-padded to the longest."""
    return {key: _concat([part[key] for part in parts]) for key in parts[0]}


def _concat(tensors: list[Tensor]) -> Tensor:
    if tensors[0].dim() >= 2 and len({t.shape[1] for t in tensors}) > 1:
        width = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, [0, 0] * (t.dim() - 2) + [0, width - t.shape[1]]) for t in tensors]
    return torch.cat(tensors)


@dataclass(frozen=True)
class Variant:
    """A named preset of a model's parameters: one row of a paper's ablation table.

    ``label`` is the row as the paper names it (``GRL``, ``W2R only``); benchmark tables and the
    reproduction report take their row names from here. ``params`` overrides the model's defaults.
    """

    label: str
    params: dict[str, Any]


class Params(BaseModel):
    """Base of every model's hyper-parameters: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class InputSpec:
    """What the data provides to a model: which inputs, their sizes, and label count."""

    image: str
    text: str
    image_dim: int
    text_dim: int
    image_regions: int | None = None
    grid_side: int | None = None
    vocab_size: int | None = None
    word_vectors: Tensor | None = field(default=None, repr=False)  # [V, dim] GloVe init for "words"
    n_classes: int = 0
    # Every part's kind per side, in the model's order (``image`` / ``text`` above is the first),
    # and what each part's kind says about itself ("image.objects": {"dim": 1280, "count": 10}).
    image_parts: tuple[str, ...] = ()
    text_parts: tuple[str, ...] = ()
    parts: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def part(self, side: str, kind: str) -> dict[str, Any]:
        """The sizes a part's input kind declared (``{"dim": ...}`` and kind-specific ones)."""
        return self.parts[f"{side}.{kind}"]


@dataclass
class Batch:
    """Matching image-text pairs; ``items`` marks pairs that share an image (they are positives)."""

    images: Rep
    texts: Rep
    items: Tensor  # [B] item index of each pair
    labels: Tensor | None = None  # [B, C] multi-hot, float

    def to(self, device: torch.device | str) -> "Batch":
        labels = self.labels.to(device) if self.labels is not None else None
        return Batch(rep_to(self.images, device), rep_to(self.texts, device), self.items.to(device), labels)

    def positives(self) -> Tensor:
        """``[B, B]`` bool: image i matches text j (same item)."""
        return self.items[:, None] == self.items[None, :]

    def __len__(self) -> int:
        return len(self.items)


# What attention can range over; a page draws each by its name (docs/DESIGN.md, "explain").
ATTENTION_AXES = ("region", "word", "object", "chunk", "token", "dimension", "concept")


@dataclass
class AttentionMap:
    """One attention map: weights of any shape, each dimension named by an axis.

    Axes say what the positions are (``"region"``, ``"word"``, ``"object"``, ``"chunk"``), so a
    page can draw any model's attention without knowing the model: ``grids`` lays an axis out as
    a row-major ``(rows, cols)`` grid (image regions), ``labels`` names its positions (the token
    strings of a text, the objects of an image).
    """

    weights: Tensor
    axes: tuple[str, ...]
    grids: dict[str, tuple[int, int]] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.axes) - set(ATTENTION_AXES)
        if unknown:
            raise ValueError(f"attention axes {sorted(unknown)} are not among {ATTENTION_AXES}")
        if self.weights.dim() != len(self.axes):
            raise ValueError(f"attention of shape {tuple(self.weights.shape)} needs {self.weights.dim()} axes, "
                             f"got {self.axes}")
        for axis, (rows, cols) in self.grids.items():
            if self.size(axis) != rows * cols:
                raise ValueError(f"axis {axis!r} has {self.size(axis)} positions, not a {rows} x {cols} grid")
        for axis, names in self.labels.items():
            if self.size(axis) != len(names):
                raise ValueError(f"axis {axis!r} has {self.size(axis)} positions but {len(names)} labels")

    def size(self, axis: str) -> int:
        return self.weights.shape[self.axes.index(axis)]


@dataclass
class Attention:
    """The attention behind one image-text score, as named maps (``"image"``, ``"word x region"``)."""

    maps: dict[str, AttentionMap]
    note: str = ""

    def label(self, axis: str, labels: list[str]) -> "Attention":
        """Name the positions of ``axis`` in every map that has it (e.g. a text's token strings)."""
        for attention_map in self.maps.values():
            if axis in attention_map.axes:
                attention_map.labels[axis] = list(labels)
                attention_map.__post_init__()
        return self


class RetrievalModel(nn.Module, ABC):
    """Base class: subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Input kinds (xmodal.features.kinds): for a model reading one part per side, the accepted
    # kinds, preferred first; a model reading several parts sets ``image_parts`` / ``text_parts``
    # instead, one tuple of alternatives per part (e.g. ((regions,), (objects,))).
    image_inputs: ClassVar[tuple[str, ...]] = ()
    text_inputs: ClassVar[tuple[str, ...]] = ()
    image_parts: ClassVar[tuple[tuple[str, ...], ...]] = ()
    text_parts: ClassVar[tuple[tuple[str, ...], ...]] = ()
    needs_labels: ClassVar[bool] = False
    trainable: ClassVar[bool] = True  # False: fitted in closed form by :meth:`fit`
    # Adversarial parts trained by their own optimiser on their own loss term: maps a term that
    # ``loss`` returns to the sub-module it trains (e.g. {"discriminator": "discriminator"}).
    # "total" then trains every other parameter; config ``optim.auxiliary.<term>`` sets the optimiser.
    auxiliary: ClassVar[dict[str, str]] = {}
    Params: ClassVar[type[Params]] = Params
    # The paper's name for the full model, as its tables print it (benchmark rows are labelled with it).
    label: ClassVar[str] = ""
    # Named presets of the paper's variants (timm-style): ``jgcar-grl`` is jgcar with these params.
    variants: ClassVar[dict[str, Variant]] = {}
    # Parts renamed since runs were saved: old key prefix -> new one, so those runs' weights still load
    # (BSSAN's first-stage head became the shared ``global_head``).
    renamed_states: ClassVar[dict[str, str]] = {}

    def __init__(self, spec: InputSpec, params: Params):
        super().__init__()
        self.spec = spec
        self.params = params

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, with the keys of parts renamed since (``renamed_states``) read
        under their current names."""
        return super().load_state_dict(current_names(state_dict, self.renamed_states), strict, assign)

    @classmethod
    def labels_needed(cls, params: Params) -> bool:
        """Whether the model with these parameters trains on labels (``needs_labels``, unless a setting
        turns the label loss off)."""
        return cls.needs_labels

    @classmethod
    def input_parts(cls, side: str, params: Params | None = None) -> tuple[tuple[str, ...], ...]:
        """The parts a model reads from ``side``, each a tuple of accepted kinds (preferred first).

        ``params`` (a model's parsed parameters, a variant's preset included) narrows the kinds
        for models whose settings read different inputs (SCANet's LSTM text model reads words,
        its graph convolution word counts); None gives every kind some setting accepts.
        """
        declared = cls.image_parts if side == "image" else cls.text_parts
        return declared or ((cls.image_inputs if side == "image" else cls.text_inputs),)

    @abstractmethod
    def encode_images(self, images: Rep) -> Rep:
        """Per-image representations (no text needed; cacheable)."""

    @abstractmethod
    def encode_texts(self, texts: Rep) -> Rep:
        """Per-text representations (no image needed; cacheable)."""

    @abstractmethod
    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        """``[n_images, n_texts]`` scores of two encoded blocks, higher is more similar."""

    def embed(self, rep: Rep) -> Tensor | None:
        """A global vector per item (``rep["embedding"]``) for a fast first stage; None if there is none."""
        return None

    def pair_cost(self) -> int:
        """Floats of intermediate ``similarity`` holds per image x text pair (1: a dot product).

        Pairwise models score blocks in chunks of this cost (:mod:`xmodal.nn.pairs`), and evaluation
        and search size their blocks with it.
        """
        return 1

    @abstractmethod
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Named loss terms of a batch of matching pairs, ``"total"`` among them."""

    def explain(self, images: Rep, texts: Rep) -> Attention | None:
        """The attention behind the first image's score with the first text (None: no attention)."""
        return None

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        # DistributedDataParallel synchronises gradients through forward(), so training calls this.
        return self.loss(batch)

    def fit(self, images: Rep, texts: Rep, items: Tensor, labels: Tensor | None) -> None:
        """Closed-form fitting on all training pairs (only for ``trainable = False`` models)."""
        raise NotImplementedError

    def fit_choices(self) -> list[dict[str, Any]]:
        """Parameter settings to :meth:`fit` and compare on the validation split (``[{}]``: just fit).

        The trainer fits once per setting, keeps the best by the run's validation metric, and
        records the setting kept in the run's config.
        """
        return [{}]


class EmbeddingModel(RetrievalModel):
    """A model whose score is the cosine of two global embeddings: one matrix product."""

    def embed(self, rep: Rep) -> Tensor:
        return rep["embedding"]

    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        image = nn.functional.normalize(self.embed(images), dim=-1)
        text = nn.functional.normalize(self.embed(texts), dim=-1)
        return image @ text.T
