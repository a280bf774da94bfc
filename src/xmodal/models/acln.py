"""ACLN (Huang, Ye, Peng, ICONIP 2017): attention-sharing correlation learning.

- Local features (section 3.1). Images: the EfficientNet-Lite0 grid (7 x 7 x 1280 at 224 px)
  stands in for AlexNet pool5 (6 x 6 x 256); each cell goes through FC1i with tanh (eq. 3) and
  FC2i with tanh. Texts: words through a learned embedding with tanh (eqs. 1-2; GloVe-initialised,
  or random as in the paper with ``word_init="random"``), or MiniLM token states through one FC
  with tanh (the ``tokens`` kind, in the place of eq. 1-2's embedding, as FC1i does for images);
  then FC1t with tanh. Eqs. 5-6 print the layer names swapped (W_fc2i on words, W_fc1t on image
  regions); here FC2i is an image layer and FC1t a text layer, as Fig. 1 and the prose name them.
  Every local feature ends ``d_a``-wide (``dim``, 512).
- Attention sharing (section 3.2, eqs. 7-9): :class:`~xmodal.nn.attention_pool.AttentionPool`,
  one vector ``W_a`` for both modalities (``attention="shared"``); Table 2's ablations are
  ``"separate"`` (one vector per modality) and ``"mean"`` (the "baseline": plain average).
- Correlation loss (eqs. 10-11): ``lambda (1 - cos)`` of the paired global features
  (:func:`~xmodal.losses.semantic.correlation_loss`: CosineEmbeddingCriterion, margin 0).
- Common representation (section 3.3, eqs. 12-13): per modality FC3 (tanh) and FC4 to the
  categories, softmax cross entropy. The paper names FC3i / FC4i for images and gives the image
  pair its own learning rate, so each modality has its own pair (``shared_classifier=True``
  shares them). The width of FC3 is not given (``hidden``, 256).
- Retrieval: cosine between the predicted probability vectors (section 3.3, "testing stage");
  ``retrieve_with="logits"`` uses the pre-softmax layer and ``"global"`` the attended global
  features (eq. 9), which keep instance-level detail that the category probabilities lose.
- Dropout 0.5 after each layer (section 4.1).
- Sharpness options (issue 29; not in the paper, each off by default): ``attention_logits="linear"``
  drops eq. 7's tanh, ``attention_temperature`` (fixed, or ``learn_temperature``) divides the
  logits before eq. 8's softmax, ``pool_dropout=False`` keeps dropout off the local features the
  attention pools (dropout there rewards spreading the weight). ACLN's attention is computed from
  one item alone, so on a mosaic it cannot depend on which tile the caption describes: its
  pointing accuracy is 1/tiles by construction, whatever its sharpness.
- Unlabelled data (not in the paper, which trains on categories): ``semantic=False`` drops eq. 12's
  label losses and the classifiers, and ``correlation="triplet"`` replaces eq. 11's ``1 - cos``
  (which has no negatives, so alone it lets every feature collapse onto one) with the
  bidirectional hardest-negative triplet of VSE++ on the attended global features, which then
  rank (``retrieve_with="global"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.losses.ranking import bidirectional_triplet
from xmodal.losses.semantic import correlation_loss, label_cross_entropy
from xmodal.models.base import Attention, AttentionMap, Batch, EmbeddingModel, InputSpec, Params, Rep, Variant
from xmodal.models.registry import register
from xmodal.nn.attention_pool import AttentionPool, uniform_weights, weighted_sum
from xmodal.nn.pooling import length_mask
from xmodal.nn.word_input import WordInput


class ACLNParams(Params):
    dim: int = Field(512, ge=1)  # d_a (section 4.1)
    attention: Literal["shared", "separate", "mean"] = "shared"  # Table 2: ACLN, separate, baseline
    hidden: int = Field(256, ge=1)  # width of FC3 (not given in the paper)
    shared_classifier: bool = False  # FC3 / FC4 shared by both modalities (the paper names FC3i, FC4i)
    retrieve_with: Literal["probabilities", "logits", "global"] = "probabilities"
    correlation_weight: float = Field(1.0, ge=0.0)  # lambda of eq. 11
    dropout: float = Field(0.5, ge=0.0, lt=1.0)  # "dropout with probability 0.5 on each layer"
    word_init: Literal["glove", "random"] = "glove"  # eq. 1's W_e: GloVe vectors, or random d_a-wide
    finetune_words: bool = True
    semantic: bool = True  # eq. 12's label losses; False for unlabelled data (not in the paper)
    correlation: Literal["cosine", "triplet"] = "cosine"  # eq. 11's 1 - cos, or VSE++'s triplet (not in the paper)
    margin: float = Field(0.2, gt=0.0)  # of the triplet
    hardest_negative: bool = True  # the triplet's VSE++ max violation; False sums over the batch's negatives
    # Issue 29's sharpness options (the paper: tanh, temperature 1 fixed, dropout before pooling):
    attention_logits: Literal["tanh", "linear"] = "tanh"  # eq. 7's tanh, or the plain W_a x
    attention_temperature: float = Field(1.0, gt=0.0)  # divides the logits before eq. 8's softmax
    learn_temperature: bool = False  # the temperature learned, started at attention_temperature
    pool_dropout: bool = True  # dropout on the local features the attention pools (False: none there)


def _layer(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """FC with tanh, then dropout: every layer of ACLN's local and common parts."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.Tanh(), nn.Dropout(dropout))


class WordFeatures(nn.Module):
    """Text local features ``[B, T, d]`` before FC1t: tanh(W_e w) (eqs. 1-2), or tanh(FC(token states))."""

    def __init__(self, spec: InputSpec, params: ACLNParams):
        super().__init__()
        # eq. 1's embedding starts from GloVe ("glove") or random at d_a ("random", the paper's reading)
        self.words = WordInput(spec, "acln", params.finetune_words,
                               dim=None if params.word_init == "glove" else params.dim)
        self.tokens: nn.Sequential | None = None
        if spec.text == "words":
            self.dim = self.words.dim
            self.dropout = nn.Dropout(params.dropout)
        else:
            self.tokens = _layer(spec.text_dim, params.dim, params.dropout)
            self.dim = params.dim

    def forward(self, texts: Rep) -> Tensor:
        vectors, _ = self.words(texts)
        if self.tokens is None:
            return self.dropout(torch.tanh(vectors))  # eqs. 1-2
        return self.tokens(vectors)


# Issue 29's sharpness options as variant settings: unbounded logits with their temperature learned;
# no dropout on what the attention pools.
_TEMPERATURE = {"attention_logits": "linear", "learn_temperature": True}
_NO_POOL_DROPOUT = {"pool_dropout": False}


@register
class ACLN(EmbeddingModel):
    """Local features -> (shared) attention pooling -> two FC layers and softmax per modality."""

    name = "acln"
    description = "ACLN: region and word features, one attention vector shared by both, correlation + label loss"
    image_inputs = ("regions",)
    text_inputs = ("words", "tokens")
    needs_labels = True
    Params = ACLNParams
    label = "ACLN (shared attention)"
    variants = {"baseline": Variant("ACLN baseline (mean, no attention)", {"attention": "mean"}),  # Table 2
                "separate": Variant("ACLN separate attention", {"attention": "separate"}),
                "shared": Variant("ACLN (shared attention)", {"attention": "shared"}),
                # issue 29's sharpness options (not in the paper), together and each alone
                "sharp": Variant("ACLN sharp (linear logits, learned temperature, no pool dropout)",
                                 {"attention": "shared", **_TEMPERATURE, **_NO_POOL_DROPOUT}),
                "temperature": Variant("ACLN + linear logits, learned temperature",
                                       {"attention": "shared", **_TEMPERATURE}),
                "no-pool-dropout": Variant("ACLN + no pool dropout", {"attention": "shared", **_NO_POOL_DROPOUT})}

    @classmethod
    def labels_needed(cls, params: ACLNParams) -> bool:
        return params.semantic

    def __init__(self, spec: InputSpec, params: ACLNParams):
        super().__init__(spec, params)
        if params.semantic and spec.n_classes < 1:
            raise XmodalError("acln trains on category labels (eq. 12), and this data has none; for unlabelled "
                              "data set model.params.semantic=false, correlation=triplet, retrieve_with=global")
        if not params.semantic and (params.retrieve_with != "global" or params.correlation != "triplet"):
            raise XmodalError("acln with semantic=false has no classifier and no label to pull pairs apart: set "
                              "model.params.retrieve_with=global and correlation=triplet")
        pooled_dropout = params.dropout if params.pool_dropout else 0.0  # on the features eqs. 7-9 pool
        self.image_local = nn.Sequential(_layer(spec.image_dim, params.dim, params.dropout),  # FC1i, eq. 3
                                         _layer(params.dim, params.dim, pooled_dropout))  # FC2i
        self.word_features = WordFeatures(spec, params)
        self.text_local = _layer(self.word_features.dim, params.dim, pooled_dropout)  # FC1t
        self.attention: AttentionPool | None = None
        self.image_attention: AttentionPool | None = None
        self.text_attention: AttentionPool | None = None
        if params.attention == "shared":
            self.attention = self._attention_pool()
        elif params.attention == "separate":
            self.image_attention = self._attention_pool()
            self.text_attention = self._attention_pool()
        self.image_head: nn.Module | None = None
        self.text_head: nn.Module | None = None
        if params.semantic:
            self.image_head = self._classifier(spec.n_classes)  # FC3i, FC4i
            self.text_head = self.image_head if params.shared_classifier else self._classifier(spec.n_classes)

    def _attention_pool(self) -> AttentionPool:
        params = self.params
        return AttentionPool(params.dim, params.attention_logits, params.attention_temperature,
                             params.learn_temperature)

    def _classifier(self, n_classes: int) -> nn.Sequential:
        return nn.Sequential(_layer(self.params.dim, self.params.hidden, self.params.dropout),
                             nn.Linear(self.params.hidden, n_classes))

    def _pool(self, side: str, local: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Eqs. 7-9 with this variant's attention vector; the plain mean for the baseline."""
        attention = self.attention or (self.image_attention if side == "image" else self.text_attention)
        weights = uniform_weights(local, mask) if attention is None else attention.weights(local, mask)
        return weighted_sum(weights, local), weights

    def _rep(self, pooled: Tensor, head: nn.Module | None, weights: Tensor) -> Rep:
        rep = {"global": pooled, "attention": weights, "embedding": pooled}
        if head is not None:
            logits = head(pooled)
            rep["logits"] = logits
            rep["embedding"] = {"probabilities": lambda: torch.softmax(logits, -1), "logits": lambda: logits,
                                "global": lambda: pooled}[self.params.retrieve_with]()
        return rep

    def encode_images(self, images: Rep) -> Rep:
        pooled, weights = self._pool("image", self.image_local(images["regions"]), None)
        return self._rep(pooled, self.image_head, weights)

    def encode_texts(self, texts: Rep) -> Rep:
        local = self.text_local(self.word_features(texts))
        pooled, weights = self._pool("text", local, length_mask(texts["lengths"], local.shape[1]))
        return self._rep(pooled, self.text_head, weights) | {"lengths": texts["lengths"]}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Eq. 11 (correlation) + eq. 12 (semantic: both modalities' softmax losses)."""
        params = self.params
        if params.semantic and batch.labels is None:
            raise XmodalError("acln trains on category labels (eq. 12), and this batch has none")
        images, texts = self.encode_images(batch.images), self.encode_texts(batch.texts)
        if params.correlation == "triplet":
            scores = nn.functional.normalize(images["global"], dim=-1) @ nn.functional.normalize(texts["global"],
                                                                                                 dim=-1).T
            correlation = bidirectional_triplet(scores, batch.positives(), params.margin, params.hardest_negative)
        else:
            correlation = correlation_loss(images["global"], texts["global"])
        terms = {"correlation": params.correlation_weight * correlation}
        if params.semantic:
            terms["semantic"] = (label_cross_entropy(images["logits"], batch.labels)
                                 + label_cross_entropy(texts["logits"], batch.labels))
        return {"total": sum(terms.values()), **terms}

    def explain(self, images: Rep, texts: Rep) -> Attention | None:
        """The attention (eq. 8) of the first image over its regions and of the first text over its words."""
        if self.params.attention == "mean":
            return None
        side = self.spec.grid_side
        grids = {"region": (side, side)} if side else {}
        length = int(texts["lengths"][0])
        shared = "one attention vector shared by both" if self.attention is not None else "one vector per modality"
        return Attention({"image": AttentionMap(images["attention"][0], ("region",), grids),
                          "text": AttentionMap(texts["attention"][0, :length], ("word",))},
                         note=f"ACLN attention (eq. 8) over regions and over words, {shared}")
