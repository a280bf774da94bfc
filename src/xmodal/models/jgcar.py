"""JGCAR (Wang, Chen, Zhuo, Huang, Tian, MM 2018): joint global and co-attentive representation.

- Components (section 2.1): texts through :class:`~xmodal.nn.sequence.NgramBiLSTM` (eqs. 1-4) to
  ``S [T, d]``; image regions through one tanh perceptron (eq. 5) to ``V [N, d]``. The regions are
  the EfficientNet-Lite0 grid at 448 px (14 x 14 x 1280), standing in for the paper's VGG-16
  conv5 at 448 px (14 x 14 x 512); word vectors start from GloVe 50-d.
- Global representation (2.2): average pooling of V and S; J_G = J1 + J2 + J3 + J4 (eq. 10,
  all weights 1) with J1 the cross-modal triplet loss (eq. 6), J2/J3 intra-modal triplet losses
  with label-based positives and negatives (eqs. 7-8) and J4 the matrix-covariance
  de-correlation (eq. 9). Scores are cosines (the paper writes inner products of the pooled
  vectors; normalising fixes the margin's scale and makes the first search stage rank by what
  was trained). Since cosines leave the features' scale free, J4 is computed on unit-length
  region / word vectors by default (``decorrelation_on="unit"``): eq. 9 on the raw features
  (``"raw"``) fell by shrinking S five-fold in 3 epochs, which shrank the affinities of
  eq. 11 and left the co-attention exactly uniform, so the rerank reproduced the global cosine
  (``python -m benchmarks probe jgcar-attention``, benchmarks/results/jgcar.md).
- Co-attention (2.3): :class:`~xmodal.nn.coattention.CoAttention` (eqs. 11-15) trained with the
  bi-rank loss J_C (eq. 16, :mod:`xmodal.losses.birank`) on all B x B pairs of a batch.
- Joint objective (eq. 17): ``beta J_G + (1 - beta) J_C``.
- Sharpness options (issue 29; not in the paper, each off by default): ``attention_temperature``
  (fixed, or ``learn_temperature``) divides eq. 13's logits before the softmax (with no scale, a
  logit spread of 0.25-0.5 gives entropy 0.97-0.99), ``coattention_loss="neg_log_p"`` takes
  ``-log P`` for eq. 16's ``1 - P`` (whose gradient ``gamma P (1 - P)`` is weak while P is small),
  and ``dropout: 0`` takes dropout off the regions and words the co-attention pools.

Variants (Tables 1-3) are parameters: ``mode="global"`` is GRL (beta = 1; ``similarity`` is
then the global cosine, so evaluation measures GRL itself); ``mode="separate"`` is SGCAR, two
networks with disjoint parameters, one trained on J_G and one on J_C (their losses are summed,
which trains each on its own loss; they share the optimiser's clip norm and the early-stopping
epoch); ``use_intra=False`` is JGCAR-v1 (no J2, J3: labels unused), ``use_decorrelation=False``
JGCAR-v2 (no J4); ``dim`` is d.

Retrieval (2.4): ``embed`` is the global vector (first stage), ``similarity`` the co-attentive
score of every pair of a block (second stage); :mod:`xmodal.eval.two_stage` combines them.
The per-item parts of the co-attention (``V W_b^T``, ``V W_v^T``, the gates) are computed in
``encode_images``/``encode_texts`` and kept in the representation, so scoring a block only does
the pair part.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.losses.birank import bi_rank_loss, coattentive_scores
from xmodal.losses.decorrelation import decorrelation_loss
from xmodal.losses.intra_modal import intra_modal_triplet
from xmodal.losses.ranking import bidirectional_triplet
from xmodal.losses.triplet import bidirectional_mean_triplet
from xmodal.models.base import Attention, AttentionMap, Batch, InputSpec, Params, Rep, RetrievalModel, Variant, take
from xmodal.models.registry import register
from xmodal.nn.coattention import CoAttention, Side
from xmodal.nn.pooling import length_mask, masked_mean
from xmodal.nn.sequence import NgramBiLSTM
from xmodal.nn.word_input import WordInput


class JGCARParams(Params):
    dim: int = Field(256, ge=1)  # d (section 3.1; Tables 1-2 also use 8 and 16)
    mode: Literal["joint", "global", "separate"] = "joint"  # JGCAR, GRL (beta = 1), SGCAR
    beta: float = Field(0.5, ge=0.0, le=1.0)  # eq. 17, joint mode only
    margin: float = Field(0.2, ge=0.0)  # m of eqs. 6-8 (not given in the paper)
    hardest_negative: bool = False  # J1 on the hardest negative only (VSE++) instead of eq. 6's sum
    use_intra: bool = True  # J2 and J3 (False: JGCAR-v1)
    use_decorrelation: bool = True  # J4 (False: JGCAR-v2)
    # J4 on "unit"-length region/word vectors (scale-free) or on the "raw" features as eq. 9 writes it.
    # Raw J4 beside cosine scores shrinks S and V (xmodal.losses.decorrelation) and left the co-attention uniform.
    decorrelation_on: Literal["unit", "raw"] = "unit"
    gamma: float = Field(10.0, gt=0.0)  # scope of the bi-rank loss (eq. 16, section 3.1)
    m_prime: int = Field(30, ge=1)  # M', hardest negatives per set
    # J_C on the first this-many pairs of each (randomly ordered) batch, 0 = all B x B pairs as in the
    # paper: a compute knob, since J_C costs B^2 co-attentions per step while J_G stays cheap.
    coattention_batch: int = Field(0, ge=0)
    phrase_dim: int = Field(512, ge=1)  # n-gram convolution width ("hidden layers are 512-d")
    attention_dim: int = Field(512, ge=1)  # l of eq. 12
    # Multiplies A of eq. 11: 1 is the paper; 1/sqrt(d) keeps eq. 12's tanh out of saturation.
    affinity_scale: float = Field(1.0, gt=0.0)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)  # "dropout 0.5 on each layer" (section 3.1)
    # Issue 29's sharpness options (the paper: temperature 1 fixed, eq. 16's 1 - P; dropout: 0 above
    # takes dropout off the regions and words the co-attention pools):
    attention_temperature: float = Field(1.0, gt=0.0)  # divides eq. 13's logits before the softmax
    learn_temperature: bool = False  # the temperature learned, started at attention_temperature
    coattention_loss: Literal["one_minus_p", "neg_log_p"] = "one_minus_p"  # eq. 16's terms, or -log P
    finetune_words: bool = True  # train the GloVe-initialised word embeddings


class Encoders(nn.Module):
    """f_v and f_t of section 2.1: regions -> V ``[B, N, d]``, words -> S ``[B, T, d]``.

    Words are GloVe-initialised ids (the paper's eq. 1) or MiniLM token states (``tokens``), which
    replace eq. 1's embedding and feed the n-gram convolutions directly.
    """

    def __init__(self, spec: InputSpec, params: JGCARParams):
        super().__init__()
        self.image = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(spec.image_dim, params.dim), nn.Tanh())
        self.words = WordInput(spec, "jgcar", params.finetune_words)  # W_e of eq. 1, or MiniLM token states
        self.text = NgramBiLSTM(self.words.dim, params.phrase_dim, params.dim, params.dropout)

    def images(self, images: Rep) -> Tensor:
        return self.image(images["regions"])  # eq. 5

    def texts(self, texts: Rep) -> Tensor:
        return self.text(*self.words(texts))


# Issue 29's sharpness options as variant settings: logits x 10 at the start (a spread of 0.25-0.5
# becomes 2.5-5) with the temperature learned from there; -log P for eq. 16's 1 - P; no dropout on
# what the co-attention pools.
_TEMPERATURE = {"attention_temperature": 0.1, "learn_temperature": True}
_NEG_LOG_P = {"coattention_loss": "neg_log_p"}
_NO_DROPOUT = {"dropout": 0.0}


@register
class JGCAR(RetrievalModel):
    """Global (pooled, triplet + intra-modal + de-correlation) and co-attentive (bi-rank) learning."""

    name = "jgcar"
    description = "JGCAR: n-gram Bi-LSTM + region perceptron, global losses + co-attention bi-rank, two-stage search"
    image_inputs = ("regions",)
    text_inputs = ("words", "tokens")
    needs_labels = False  # only J2/J3 read labels; loss() says so when they are on and labels are missing
    Params = JGCARParams
    label = "JGCAR"
    variants = {"grl": Variant("GRL (global only)", {"mode": "global"}),  # Table 1
                "sgcar": Variant("SGCAR (separate networks)", {"mode": "separate"}),
                "v1": Variant("JGCAR-v1 (no J2, J3)", {"use_intra": False}),  # Table 2
                "v2": Variant("JGCAR-v2 (no J4)", {"use_decorrelation": False}),
                # issue 29's sharpness options (not in the paper), together and each alone
                "sharp": Variant("JGCAR sharp (learned temperature from 0.1, -log P, no dropout)",
                                 {**_TEMPERATURE, **_NEG_LOG_P, **_NO_DROPOUT}),
                "temperature": Variant("JGCAR + learned temperature from 0.1", _TEMPERATURE),
                "neg-log-p": Variant("JGCAR + -log P", _NEG_LOG_P),
                "no-dropout": Variant("JGCAR + no dropout", _NO_DROPOUT)}

    def __init__(self, spec: InputSpec, params: JGCARParams):
        super().__init__(spec, params)
        self.encoder = Encoders(spec, params)
        self.coattention: CoAttention | None = None
        self.global_encoder: Encoders | None = None
        if params.mode != "global":
            self.coattention = CoAttention(params.dim, params.attention_dim, spec.image_regions,
                                           affinity_scale=params.affinity_scale,
                                           temperature=params.attention_temperature,
                                           learn_temperature=params.learn_temperature)
        if params.mode == "separate":
            self.global_encoder = Encoders(spec, params)

    # -- representations ---------------------------------------------------------------------
    def encode_images(self, images: Rep) -> Rep:
        regions = self.encoder.images(images)
        pooled_from = self.global_encoder.images(images) if self.global_encoder is not None else regions
        rep = {"embedding": pooled_from.mean(1)}
        if self.coattention is not None:  # the per-image part of eqs. 11-13, computed once per image
            side = self.coattention.images(regions)
            rep |= {"regions": regions, "region_keys": side.keys, "region_projected": side.projected,
                    "region_gate": side.gate}
        return rep

    def encode_texts(self, texts: Rep) -> Rep:
        words = self.encoder.texts(texts)
        pooled_from = self.global_encoder.texts(texts) if self.global_encoder is not None else words
        mask = length_mask(texts["lengths"], words.shape[1])
        rep = {"embedding": masked_mean(pooled_from, mask)}
        if self.coattention is not None:
            side = self.coattention.texts(words, mask)
            rep |= {"words": words, "lengths": texts["lengths"], "word_projected": side.projected,
                    "word_gate": side.gate}
        return rep

    def embed(self, rep: Rep) -> Tensor:
        return rep["embedding"]

    def pair_cost(self) -> int:
        if self.coattention is None:
            return 1
        return self.coattention.pair_cost(words=32)  # a typical text; CoAttention bounds the actual lengths

    # -- scores --------------------------------------------------------------------------------
    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        """Co-attentive cosine (eq. 15) of every image x text pair; the global cosine for GRL."""
        if self.coattention is None:
            return _cosine_matrix(images["embedding"], texts["embedding"])
        return self.coattention.all_scores(*self._sides(images, texts))

    @staticmethod
    def _sides(images: Rep, texts: Rep) -> tuple[Side, Side]:
        """The co-attention inputs stored in encoded representations (texts cut to their longest)."""
        lengths = texts["lengths"]
        width = max(1, int(lengths.max()))
        mask = torch.arange(width, device=lengths.device) < lengths.unsqueeze(-1)
        words = (texts[key][..., :width, :] for key in ("words", "word_projected", "word_gate"))
        words, projected, gate = words
        return (Side(images["regions"], images["region_keys"], images["region_projected"], images["region_gate"]),
                Side(words, words, projected, gate, mask))

    def explain(self, images: Rep, texts: Rep) -> Attention | None:
        """Region and word attention (eq. 13) of the first image with the first text."""
        if self.coattention is None:
            return None
        one = {key: value[:1] for key, value in images.items()}, {key: value[:1] for key, value in texts.items()}
        attended = self.coattention.aligned(*self._sides(*one))
        length = int(texts["lengths"][0])
        side = self.spec.grid_side
        grids = {"region": (side, side)} if side else {}
        return Attention({"image": AttentionMap(attended.image_weights[0], ("region",), grids),
                          "text": AttentionMap(attended.text_weights[0, :length], ("word",))},
                         note="co-attention a^v over regions, a^s over words (JGCAR eq. 13)")

    # -- training ------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Named terms of eq. 17 (J1-J4, J_G, J_C) and "total"."""
        params = self.params
        global_network = self.global_encoder if self.global_encoder is not None else self.encoder
        regions, words = global_network.images(batch.images), global_network.texts(batch.texts)
        terms = self._global_terms(regions, words, batch)
        if self.coattention is not None:
            part = slice(0, params.coattention_batch or len(batch))
            if self.global_encoder is not None:  # SGCAR: the co-attentive network encodes only J_C's pairs
                regions = self.encoder.images(take(batch.images, part))
                words = self.encoder.texts(take(batch.texts, part))
            lengths = batch.texts["lengths"][part]
            sides = (self.coattention.images(regions[part]),
                     self.coattention.texts(words[part], length_mask(lengths, words.shape[1])))
            terms["J_C"] = bi_rank_loss(*coattentive_scores(*self.coattention.all_features(*sides)),
                                        batch.positives()[part, part], params.gamma, params.m_prime,
                                        params.coattention_loss)
        terms["total"] = {"joint": lambda: params.beta * terms["J_G"] + (1 - params.beta) * terms["J_C"],
                          "global": lambda: terms["J_G"],
                          "separate": lambda: terms["J_G"] + terms["J_C"]}[params.mode]()
        return terms

    def _global_terms(self, regions: Tensor, words: Tensor, batch: Batch) -> dict[str, Tensor]:
        """J1-J4 and their sum J_G (eq. 10) on one network's V and S."""
        params, lengths = self.params, batch.texts["lengths"]
        image, text = regions.mean(1), masked_mean(words, length_mask(lengths, words.shape[1]))  # section 2.2
        scores = _cosine_matrix(image, text)
        positives = batch.positives()
        if params.hardest_negative:
            terms = {"J1": bidirectional_triplet(scores, positives, params.margin, hardest=True)}
        else:
            terms = {"J1": bidirectional_mean_triplet(scores, positives, params.margin)}
        if params.use_intra:
            if batch.labels is None:
                raise XmodalError("jgcar's intra-modal losses J2, J3 need labels, and this dataset has none; "
                                  "set model.params.use_intra=false (JGCAR-v1)")
            terms["J2"] = intra_modal_triplet(image, batch.labels, batch.items, params.margin)
            terms["J3"] = intra_modal_triplet(text, batch.labels, batch.items, params.margin)
        if params.use_decorrelation:
            unit = params.decorrelation_on == "unit"
            terms["J4"] = (decorrelation_loss(regions, normalise=unit)
                           + decorrelation_loss(words, length_mask(lengths, words.shape[1]), normalise=unit))
        terms["J_G"] = torch.stack(list(terms.values())).sum()
        return terms


def _cosine_matrix(images: Tensor, texts: Tensor) -> Tensor:
    return nn.functional.normalize(images, dim=-1) @ nn.functional.normalize(texts, dim=-1).T
