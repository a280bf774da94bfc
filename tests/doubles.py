"""Test doubles shared by the evaluation tests: models that score the vectors they are given."""

from __future__ import annotations

import torch
from torch import Tensor

from xmodal.models.base import EmbeddingModel, Rep, RetrievalModel


class PassThrough(RetrievalModel):
    """Encodes nothing: a representation is what the test gives; never trained."""

    description = "test double"
    image_inputs = text_inputs = ("global",)

    def __init__(self):
        torch.nn.Module.__init__(self)

    def encode_images(self, images: Rep) -> Rep:
        return images

    def encode_texts(self, texts: Rep) -> Rep:
        return texts

    def loss(self, batch) -> dict[str, Tensor]:
        raise NotImplementedError("a scoring test double: never trained")


class Cosine(PassThrough, EmbeddingModel):
    """The given ``embedding`` vectors, ranked by cosine."""

    name = "cosine"
