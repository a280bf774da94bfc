"""The floor every attention model must beat: linear CCA, and a VSE++-style dual encoder."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.losses.ranking import bidirectional_triplet
from xmodal.models.base import Batch, EmbeddingModel, InputSpec, Params, Rep
from xmodal.models.registry import register
from xmodal.nn.pooling import length_mask, masked_mean
from xmodal.nn.word_input import WORD_KINDS, WordInput


class CCAParams(Params):
    dim: int = 10  # number of canonical directions kept
    # Ridge added to each covariance, relative to its mean eigenvalue. None: the value of
    # ``regularization_grid`` that scores best on the validation split. The best value depends on
    # the features and the metric: on emoji's 1280-d / 384-d vectors validation MAP rises from 0.23
    # (1e-3) to 0.52 (1000) while validation rsum peaks at 1.0; on Wikipedia's 128-d / 10-d, 1.0.
    regularization: float | None = Field(None, gt=0)
    regularization_grid: list[float] = Field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0])


@register
class CCA(EmbeddingModel):
    """Linear CCA (Hotelling 1936) on global features; score = cosine in the canonical space.

    Fitted in closed form: whiten each side with its (ridge-regularised) covariance, take the SVD
    of the whitened cross-covariance, keep the top ``dim`` directions.
    """

    name = "cca"
    label = "cca"
    description = "linear CCA on global features (classic unsupervised baseline)"
    image_inputs = ("global",)
    text_inputs = ("global", "tfidf")
    trainable = False
    Params = CCAParams

    def __init__(self, spec: InputSpec, params: CCAParams):
        super().__init__(spec, params)
        dim = min(params.dim, spec.image_dim, spec.text_dim)
        self.register_buffer("image_mean", torch.zeros(spec.image_dim))
        self.register_buffer("text_mean", torch.zeros(spec.text_dim))
        self.register_buffer("image_projection", torch.zeros(spec.image_dim, dim))
        self.register_buffer("text_projection", torch.zeros(spec.text_dim, dim))

    def fit(self, images: Rep, texts: Rep, items: Tensor, labels: Tensor | None) -> None:
        x = images["features"].double()
        y = texts["features"].double()
        self.image_mean.copy_(x.mean(0))
        self.text_mean.copy_(y.mean(0))
        x, y = x - x.mean(0), y - y.mean(0)
        n = len(x) - 1
        if self.params.regularization is None:
            raise ValueError("CCA.fit needs params.regularization; the trainer sets it from fit_choices()")
        whiten_x = _inverse_sqrt(x.T @ x / n, self.params.regularization)
        whiten_y = _inverse_sqrt(y.T @ y / n, self.params.regularization)
        u, _, vh = torch.linalg.svd(whiten_x @ (x.T @ y / n) @ whiten_y)
        dim = self.image_projection.shape[1]
        self.image_projection.copy_((whiten_x @ u[:, :dim]).float())
        self.text_projection.copy_((whiten_y @ vh.T[:, :dim]).float())

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise TypeError("cca is fitted in closed form (fit), it has no training loss")

    def fit_choices(self) -> list[dict[str, Any]]:
        if self.params.regularization is not None:
            return [{}]
        return [{"regularization": value} for value in self.params.regularization_grid]

    def encode_images(self, images: Rep) -> Rep:
        return {"embedding": (images["features"] - self.image_mean) @ self.image_projection}

    def encode_texts(self, texts: Rep) -> Rep:
        return {"embedding": (texts["features"] - self.text_mean) @ self.text_projection}


def _inverse_sqrt(covariance: Tensor, regularization: float) -> Tensor:
    ridge = regularization * covariance.diagonal().mean()
    values, vectors = torch.linalg.eigh(covariance + ridge * torch.eye(len(covariance), dtype=covariance.dtype))
    return vectors @ torch.diag(values.clamp_min(1e-12).rsqrt()) @ vectors.T


class DualParams(Params):
    dim: int = 512
    hidden: int = 0  # 0: a linear projection per side; >0: one hidden layer of this size
    margin: float = 0.2
    hardest_negative: bool = True  # VSE++ max violation; False sums over negatives
    dropout: float = 0.0
    finetune_words: bool = True  # train the GloVe-initialised word embeddings


@register
class Dual(EmbeddingModel):
    """Dual encoder (VSE++, Faghri et al. 2018): pooled features -> projection -> cosine.

    Regions, words and tokens are mean-pooled over their valid positions first; the two
    projections are trained with the bidirectional triplet loss on hardest negatives.
    """

    name = "dual"
    label = "dual"
    description = "dual encoder: mean-pooled features, projections, hardest-negative triplet loss (VSE++)"
    image_inputs = ("global", "regions")
    text_inputs = ("global", "tfidf", "tokens", "words")
    Params = DualParams

    def __init__(self, spec: InputSpec, params: DualParams):
        super().__init__(spec, params)
        self.image_head = _projection(spec.image_dim, params)
        self.text_head = _projection(spec.text_dim, params)
        self.words = WordInput(spec, "dual", params.finetune_words) if spec.text in WORD_KINDS else None

    def encode_images(self, images: Rep) -> Rep:
        features = images["regions"].mean(1) if "regions" in images else images["features"]
        return {"embedding": self.image_head(features)}

    def encode_texts(self, texts: Rep) -> Rep:
        if "features" in texts:
            pooled = texts["features"]
        else:
            assert self.words is not None
            states, lengths = self.words(texts)
            pooled = masked_mean(states, length_mask(lengths, states.shape[1]))
        return {"embedding": self.text_head(pooled)}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        scores = self.similarity(self.encode_images(batch.images), self.encode_texts(batch.texts))
        triplet = bidirectional_triplet(scores, batch.positives(), self.params.margin, self.params.hardest_negative)
        return {"total": triplet, "triplet": triplet}


def _projection(in_dim: int, params: DualParams) -> nn.Module:
    layers: list[nn.Module] = [nn.Dropout(params.dropout)] if params.dropout else []
    if params.hidden:
        layers += [nn.Linear(in_dim, params.hidden), nn.ReLU(), nn.Linear(params.hidden, params.dim)]
    else:
        layers.append(nn.Linear(in_dim, params.dim))
    return nn.Sequential(*layers)
