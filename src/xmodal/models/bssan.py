"""BSSAN (Huang, Zhang, Zhao, Li, TIP 2019): bi-directional spatial-semantic attention networks.

Inputs: image ``regions`` (the EfficientNet-Lite0 grid at 448 px, 14 x 14 x 1280, standing in for
VGG-19 conv5_4 at 224 px, 196 x 512) and ``objects`` (P = 10 fixed-box crops through
EfficientNet-Lite0 standing in for Faster R-CNN's top-10 proposals with 4096-d fc7 features, or
a dataset's own object features); texts ``words`` (GloVe 50-d; the paper: GloVe 300-d) or
``tokens`` (MiniLM token states), padded or cut to ``max_words`` = 30 (section V-B).

- W2R (IV-A): for each word t_k, ``alpha^k = softmax_j(tanh(t_k^T W r_j + b))`` over the D
  regions (eqs. 1-2), ``u_k = sum_j alpha^k_j r_j`` (eq. 3), an LSTM over ``c_k = [u_k; t_k]``
  and an MLP with batch norm and tanh on its state after the last word give Y (eqs. 5-6).
- O2W (IV-B): s_k from a Bi-LSTM over the words, directions averaged; for each object o_j,
  ``beta_j = softmax_k(tanh(o_j^T W' s_k + b'))`` over the words (eqs. 9-10: eq. 2's form with
  its own W', b'), ``u_j = sum_k beta_j^k s_k`` (eq. 11), an MLP on ``[o_j; u_j]`` per object
  (eq. 13) and the mean over objects gives Y' (eq. 14).
- Training (eqs. 7, 8, 17, 18): one sampled negative text per pair, attention uniform for the
  negative pair (eq. 8: ``1/D`` over regions, ``1/L`` over the text's words for O2W, "as eq. 8";
  the CPU configs use eq. 1 instead, ``negative_attention``, see below),
  loss ``L1 + lambda L2 + delta L_reg`` (:mod:`xmodal.losses.sampled_hinge`); test score
  ``MS = f_w2r + lambda f_o2w`` (eq. 19).

Variants (section V-A) are presets: ``bssan-w2r`` (W2R alone: L1 + delta L_reg, score f_w2r),
``bssan-o2w`` (O2W alone: L2 unweighted + delta L_reg, score f_o2w: lambda only weighs O2W beside
W2R), ``bssan-no_reg`` (both, no L_reg) and ``bssan-full`` (both with L_reg, the default).

Readings and choices where the paper is open (each tested in tests/test_bssan.py):

- Eq. 8 at test time: the pairs are unknown, so eq. 1's attention is used for every pair (the
  uniform branch exists only for sampled negatives in training). ``negative_attention="uniform"``
  (the default here and in the ``-paper`` configs) is eq. 8 as printed; ``"softmax"`` uses eq. 1
  for the negatives too, a deviation from the paper that the CPU configs (bssan/flickr8k,
  bssan/emoji) make. Measured reason (benchmarks/results/bssan.md): with uniform attention for the
  negatives only, a network can tell a negative from a positive by the attention's shape (flat or
  peaked) without matching anything; on Flickr8k L1 falls to 0.000 within 4 epochs and every variant
  ranks at chance on test, where every pair gets eq. 1's attention. With eq. 1 for every pair in
  training too, training and test score pairs the same way.
- Y is read off the LSTM state after each text's last real word (the paper zero-pads to 30 and
  does not say whether padding steps run); likewise the Bi-LSTM runs packed.
- Table I's O2W MLP "512-256-64-1": W2R's row starts with its input width (the 1024-d LSTM
  state), but O2W's input ``[o_j; u_j]`` is Q + 512 wide; read as input -> 256 -> 64 -> 1 (three
  linear layers as in W2R; the 512 is the Bi-LSTM's part of the input), ``o2w_mlp``.
- Batch norm follows each hidden linear layer, before tanh; positive and negative pairs of a
  batch go through the networks as one batch (separate batches would normalise away the very
  difference between their scores). At test time it uses its running statistics, so a score does
  not depend on the block it is computed in.
- The bias b of eqs. 2 and 10 is one scalar; the word vectors stay frozen (the paper uses
  pre-trained GloVe; ``finetune_words`` trains them); ``attention_scale`` multiplies the
  tanh-bounded logits (1: as printed, see :mod:`xmodal.nn.bilinear_attention`).
- The margin M is not given (``margin``, 0.5 here; the CPU configs use 2.0, chosen on validation
  among 0.1, 0.5 and 2.0: the MLP scores are unbounded, and a larger M keeps more pairs in the hinge).
- Two-stage search needs a global vector the paper does not have: a light head (mean of the
  regions through one linear layer; a GRU over the words) trained alongside with a hardest-negative
  triplet loss (VSE++) on the batch, its own parameters only (term ``global``); ``embed`` returns it
  (:class:`xmodal.nn.global_head.GlobalHead`, shared with SCAN).

Speed: every score runs an LSTM over one pair. Everything that depends on one side is computed
once per item in ``encode_*``: ``W r_j`` per image (E-wide: narrower than ``W^T t_k``'s M = 1280),
the LSTM input gates of the regions ``W_ih^u r_j`` (eq. 3 is linear in the regions, so
``W_ih^u u_k = sum_j alpha^k_j W_ih^u r_j``) and of the words ``W_ih^t t_k + b``, ``o_j^T W'``
and the first MLP layer's object half per image, the Bi-LSTM states and the first MLP layer's text
half per text. ``similarity`` then scores a block of pairs as einsums over broadcast pair
dimensions and one LSTM run over all the block's pairs (:func:`~xmodal.nn.bilinear_attention.lstm_last_states`),
through :func:`xmodal.nn.pairs.all_pairs`.

Model sizes: Table I (LSTM 1024, MLP 1024-512-128-1; Bi-LSTM 512, MLP 256-64) are the defaults
here and in configs/bssan/*-paper.yaml; the CPU configs use smaller ones (stated there).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.losses.sampled_hinge import bssan_objective, sample_negatives, squared_l2
from xmodal.models.base import Attention, AttentionMap, Batch, InputSpec, Params, Rep, RetrievalModel, Variant, take
from xmodal.models.registry import register
from xmodal.nn.bilinear_attention import BilinearAttention, lstm_last_states, score_mlp
from xmodal.nn.global_head import GlobalHead
from xmodal.nn.pairs import all_pairs
from xmodal.nn.pooling import length_mask
from xmodal.nn.sequence import AveragedBiRNN
from xmodal.nn.word_input import WordInput


class BSSANParams(Params):
    branches: Literal["both", "w2r", "o2w"] = "both"  # BSSAN / BSSAN_w2r / BSSAN_o2w (section V-A)
    regularize: bool = True  # delta L_reg of eq. 18 (False: BSSAN_no_reg)
    lam: float = Field(0.6, ge=0.0)  # lambda of eqs. 18-19 (section V-B)
    delta: float = Field(0.01, ge=0.0)  # delta of eq. 18
    margin: float = Field(0.5, ge=0.0)  # M of eqs. 7, 17 (not given)
    w2r_lstm: int = Field(1024, ge=1)  # Table I
    w2r_mlp: list[int] = Field(default_factory=lambda: [512, 128])  # hidden widths after the LSTM (Table I)
    o2w_lstm: int = Field(512, ge=1)  # Bi-LSTM width (Table I)
    o2w_mlp: list[int] = Field(default_factory=lambda: [256, 64])  # hidden widths on [o_j; u_j]
    max_words: int = Field(30, ge=1)  # texts cut to 30 words (section V-B)
    attention_scale: float = Field(1.0, gt=0.0)  # multiplies eqs. 2 / 10's tanh logits (1: as printed)
    bilinear_scale: float = Field(1.0, gt=0.0)  # multiplies t^T W r (o^T W' s) inside the tanh (1: as printed)
    negative_attention: Literal["uniform", "softmax"] = "uniform"  # eq. 8 (uniform) or eq. 1 for negatives
    input_norm: Literal["none", "l2"] = "none"  # l2: regions, objects, words at unit length (not in the paper)
    negatives: Literal["texts", "both"] = "texts"  # both: also a negative image per pair (not in the paper)
    global_dim: int = Field(256, ge=1)  # the first-stage head (not in the paper)
    global_margin: float = Field(0.2, ge=0.0)
    global_weight: float = Field(1.0, ge=0.0)
    finetune_words: bool = False


@register
class BSSAN(RetrievalModel):
    """W2R (bilinear word-to-region attention + LSTM + MLP) and O2W (object-to-word attention + MLP)."""

    name = "bssan"
    description = "BSSAN: word-to-regions LSTM and object-to-words attention scores per pair, sampled-negative hinge"
    image_parts = (("regions",), ("objects",))
    text_inputs = ("words", "tokens")
    Params = BSSANParams
    label = "BSSAN (full)"
    variants = {"w2r": Variant("W2R only", {"branches": "w2r"}),  # section V-A
                "o2w": Variant("O2W only", {"branches": "o2w"}),
                "no_reg": Variant("no regulariser", {"regularize": False}),
                "full": Variant("BSSAN (full)", {"branches": "both", "regularize": True})}
    renamed_states = {"global_image.": "global_head.image.", "global_gru.": "global_head.text.",
                      "o2w_text.lstm.": "o2w_text.rnn."}  # runs saved before the shared blocks (2026-12-06)

    def __init__(self, spec: InputSpec, params: BSSANParams):
        super().__init__(spec, params)
        self.words = WordInput(spec, "bssan", params.finetune_words)
        if "image.objects" not in spec.parts or "image.regions" not in spec.parts:
            raise XmodalError("bssan reads two image parts: data.image_input: [regions, objects]")
        region_dim = spec.part("image", "regions")["dim"]
        object_dim = spec.part("image", "objects")["dim"]
        word_dim = self.words.dim
        self.region_dim, self.object_dim = region_dim, object_dim
        self.use_w2r = params.branches in ("both", "w2r")
        self.use_o2w = params.branches in ("both", "o2w")
        if self.use_w2r:  # theta_w2r: W, b of eq. 2; the LSTM and MLP of eq. 5
            self.w2r_attention = BilinearAttention(word_dim, region_dim, params.attention_scale, params.bilinear_scale)
            self.w2r_lstm = nn.LSTM(region_dim + word_dim, params.w2r_lstm, batch_first=True)  # input [u_k; t_k]
            self.w2r_mlp = score_mlp(params.w2r_lstm, params.w2r_mlp)
        if self.use_o2w:  # theta_o2w: the Bi-LSTM, W', b' of eq. 10, the MLP of eq. 13
            self.o2w_text = AveragedBiRNN(word_dim, params.o2w_lstm)
            self.o2w_attention = BilinearAttention(object_dim, params.o2w_lstm, params.attention_scale,
                                                   params.bilinear_scale)
            self.o2w_mlp = score_mlp(object_dim + params.o2w_lstm, params.o2w_mlp)
        self.global_head = GlobalHead(region_dim, word_dim, params.global_dim, params.global_margin)

    # -- per-item parts --------------------------------------------------------------------------
    def _word_vectors(self, texts: Rep) -> tuple[Tensor, Tensor]:
        """t_k ``[B, L, E]`` cut to ``max_words`` (zero at padding) and lengths ``[B]``."""
        limit = self.params.max_words
        vectors, lengths = self.words(texts)
        vectors, lengths = self._scaled(vectors[:, :limit]), lengths.clamp(0, limit)
        return vectors * length_mask(lengths, vectors.shape[1]).unsqueeze(-1), lengths

    def _scaled(self, vectors: Tensor) -> Tensor:
        """The input vectors as the model reads them: as given, or at unit length (``input_norm``)."""
        return nn.functional.normalize(vectors, dim=-1) if self.params.input_norm == "l2" else vectors

    def encode_images(self, images: Rep, gates: bool = True) -> Rep:
        """Per-image parts; ``gates=False`` keeps the regions instead of ``W_ih^u r_j`` (training, where
        each image meets two texts, so projecting the attended u_k is cheaper than every region)."""
        regions, objects = self._scaled(images["regions"]), self._scaled(images["objects"])
        rep = {"embedding": self.global_head.images(regions)}
        if self.use_w2r:
            rep["region_keys"] = self.w2r_attention.keys(regions)  # W r_j, [B, D, E]
            if gates:
                rep["region_gates"] = regions @ self._input_weight().T  # W_ih^u r_j, [B, D, 4H]
            else:
                rep["regions"] = regions
        if self.use_o2w:
            first = self.o2w_mlp[0]
            rep |= {"object_queries": self.o2w_attention.queries(objects),  # o_j^T W', [B, P, B_lstm]
                    "object_first": objects @ first.weight[:, : self.object_dim].T + first.bias}  # [B, P, h1]
        return rep

    def _input_weight(self) -> Tensor:
        """W_ih^u: the u_k half of the W2R LSTM's input weights (its input is [u_k; t_k])."""
        return self.w2r_lstm.weight_ih_l0[:, : self.region_dim]

    def encode_texts(self, texts: Rep) -> Rep:
        words, lengths = self._word_vectors(texts)
        rep = {"embedding": self.global_head.texts(words, lengths), "lengths": lengths}
        if self.use_w2r:
            lstm = self.w2r_lstm
            w_input = lstm.weight_ih_l0[:, self.region_dim :]  # the t_k half of W_ih
            rep |= {"words": words, "word_gates": words @ w_input.T + lstm.bias_ih_l0 + lstm.bias_hh_l0}
        if self.use_o2w:
            states = self.o2w_text(words, lengths)  # s_k
            first = self.o2w_mlp[0]
            rep |= {"states": states, "state_first": states @ first.weight[:, self.object_dim :].T}
        return rep

    def embed(self, rep: Rep) -> Tensor:
        return rep["embedding"]

    # -- pair parts (any broadcast pair dimensions "...") ----------------------------------------
    def w2r_scores(self, region_keys: Tensor, region_gates: Tensor | None, words: Tensor, word_gates: Tensor,
                   lengths: Tensor, uniform: Tensor | None = None, regions: Tensor | None = None
                   ) -> tuple[Tensor, Tensor]:
        """Y (eqs. 1-6) and alpha ``[..., L, D]`` of the pairs the leading dimensions broadcast to.

        ``uniform [...]`` True: alpha = 1/D for that pair (eq. 8, sampled negatives in training).
        ``region_gates`` None: the ``regions`` themselves are attended (see :meth:`encode_images`).
        """
        alpha = self.w2r_attention.weights(self.w2r_attention.logits(words, region_keys))  # eqs. 1-2
        if uniform is not None:
            alpha = torch.where(uniform[..., None, None], torch.full_like(alpha, 1 / alpha.shape[-1]), alpha)
        if region_gates is not None:  # W_ih [u_k; t_k] + b with W_ih^u u_k = sum_j alpha_j^k W_ih^u r_j (eq. 3)
            gates = torch.einsum("...ld,...dg->...lg", alpha, region_gates) + word_gates
        else:  # u_k itself (eq. 3), then W_ih^u u_k
            gates = torch.einsum("...ld,...dm->...lm", alpha, regions) @ self._input_weight().T + word_gates
        pairs = gates.shape[:-2]
        flat = gates.reshape(-1, *gates.shape[-2:])
        last = lstm_last_states(flat, lengths.expand(pairs).reshape(-1), self.w2r_lstm)
        return self.w2r_mlp(last).view(pairs), alpha  # eq. 5

    def o2w_scores(self, object_queries: Tensor, object_first: Tensor, states: Tensor, state_first: Tensor,
                   lengths: Tensor, uniform: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Y' (eqs. 9-14) and beta ``[..., P, L]`` of the pairs the leading dimensions broadcast to."""
        mask = length_mask(lengths.reshape(-1), states.shape[-2]).view(*lengths.shape, states.shape[-2])
        beta = self.o2w_attention.weights(self.o2w_attention.logits(object_queries, states), mask)  # eqs. 9-10
        if uniform is not None:
            even = mask.float() / mask.sum(-1, keepdim=True).clamp_min(1)
            beta = torch.where(uniform[..., None, None], even.unsqueeze(-2).expand_as(beta), beta)
        # First layer of eq. 13 on c_j = [o_j; u_j] with u_j = sum_k beta_j^k s_k (eq. 11):
        # W1 c_j + b1 = (W1^o o_j + b1) + sum_k beta_j^k (W1^s s_k).
        first = object_first + torch.einsum("...pl,...lh->...ph", beta, state_first)
        per_object = self.o2w_mlp[1:](first.reshape(-1, first.shape[-1])).view(first.shape[:-1])  # y'_j, eq. 13
        return per_object.mean(-1), beta  # eq. 14

    # -- scores ------------------------------------------------------------------------------------
    def pair_cost(self, words: int | None = None) -> int:
        """Floats per pair of the largest intermediates: alpha and the gates (W2R), beta and MLP (O2W)."""
        words = words or self.params.max_words
        cost = 1
        if self.use_w2r:
            cost += 2 * words * self._regions() + 2 * words * 4 * self.params.w2r_lstm
        if self.use_o2w:
            cost += 2 * words * self._objects() + 2 * self._objects() * max(self.params.o2w_mlp or [1])
        return cost

    def _regions(self) -> int:
        return self.spec.part("image", "regions").get("regions") or 196

    def _objects(self) -> int:
        return self.spec.part("image", "objects").get("count") or 10

    @staticmethod
    def _cut(texts: Rep) -> Rep:
        """Texts cut to the block's longest text (every sequence tensor)."""
        width = max(1, int(texts["lengths"].max()))
        return {key: value[:, :width] if value.dim() >= 3 else value for key, value in texts.items()}

    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        """MS = f_w2r + lambda f_o2w (eq. 19) of every image x text pair, ``[I, J]``."""
        texts = self._cut(texts)
        keys = [key for key, used in (("region_keys", self.use_w2r), ("region_gates", self.use_w2r),
                                      ("object_queries", self.use_o2w), ("object_first", self.use_o2w)) if used]
        lengths = texts["lengths"]

        def score(*chunk: Tensor) -> tuple[Tensor]:
            image = dict(zip(keys, (tensor.unsqueeze(1) for tensor in chunk)))
            return (self._pair_scores(image, {key: value.unsqueeze(0) for key, value in texts.items()},
                                      lengths.unsqueeze(0)),)

        return all_pairs(score, tuple(images[key] for key in keys), len(lengths),
                         self.pair_cost(int(lengths.max())))[0]

    def _pair_scores(self, images: Rep, texts: Rep, lengths: Tensor, uniform: Tensor | None = None) -> Tensor:
        total = 0.0
        if self.use_w2r:
            total = total + self.w2r_scores(images["region_keys"], images["region_gates"], texts["words"],
                                            texts["word_gates"], lengths, uniform)[0]
        if self.use_o2w:
            o2w = self.o2w_scores(images["object_queries"], images["object_first"], texts["states"],
                                  texts["state_first"], lengths, uniform)[0]
            total = total + (self.params.lam * o2w if self.use_w2r else o2w)  # eq. 19 (o2w alone: f_o2w)
        return total

    def explain(self, images: Rep, texts: Rep) -> Attention:
        """alpha (word x region, eq. 1) and beta (object x word, eq. 9) of the first image with the first text."""
        image, text = take(images, slice(0, 1)), self._cut(take(texts, slice(0, 1)))
        length = int(text["lengths"][0])
        maps = {}
        if self.use_w2r:
            alpha = self.w2r_scores(image["region_keys"], image["region_gates"], text["words"], text["word_gates"],
                                    text["lengths"])[1]
            side = self.spec.part("image", "regions").get("grid_side")
            grids = {"region": (side, side)} if side else {}
            maps["word x region"] = AttentionMap(alpha[0, :length], ("word", "region"), grids)
        if self.use_o2w:
            beta = self.o2w_scores(image["object_queries"], image["object_first"], text["states"],
                                   text["state_first"], text["lengths"])[1]
            maps["object x word"] = AttentionMap(beta[0, :, :length], ("object", "word"))
        return Attention(maps, note="BSSAN: W2R attention of each word over the regions (eq. 1), "
                                    "O2W attention of each object over the words (eq. 9)")

    # -- training ----------------------------------------------------------------------------------
    def regularized_weights(self) -> list[Tensor]:
        """The weight matrices of theta_w2r and theta_o2w that L_reg covers (no biases, batch norm, words)."""
        modules = [m for m, used in ((getattr(self, "w2r_attention", None), self.use_w2r),
                                     (getattr(self, "w2r_lstm", None), self.use_w2r),
                                     (getattr(self, "w2r_mlp", None), self.use_w2r),
                                     (getattr(self, "o2w_text", None), self.use_o2w),
                                     (getattr(self, "o2w_attention", None), self.use_o2w),
                                     (getattr(self, "o2w_mlp", None), self.use_o2w)) if used]
        return [parameter for module in modules for name, parameter in module.named_parameters()
                if parameter.dim() >= 2 and "bias" not in name]

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Eq. 18 (terms L1, L2, reg, bssan) on (image, text) and (image, sampled negative text) pairs,
        with ``negatives="both"`` also (sampled negative image, text), plus the first-stage head's
        triplet loss (``global``)."""
        params = self.params
        mirror = params.negatives == "both"
        images, texts = self.encode_images(batch.images, gates=mirror), self.encode_texts(batch.texts)
        # Pairs [B, C]: column 0 (image i, text i), column 1 (image i, a sampled negative text), and
        # with negatives="both" column 2 (a sampled negative image, text i). Without column 2 the
        # image side broadcasts ([B, 1, ...]) instead of being copied per pair. Positives and
        # negatives go through the networks (and their batch norm) as one batch.
        rows = torch.arange(len(batch), device=batch.items.device)
        text_index = torch.stack([rows, sample_negatives(batch.items)] + ([rows] if mirror else []), dim=1)
        per_item = {key: value for key, value in images.items() if key != "embedding"}
        if mirror:
            image_index = torch.stack([rows, rows, sample_negatives(batch.items)], dim=1)
            pair_images = take(per_item, image_index)
        else:
            pair_images = {key: value.unsqueeze(1) for key, value in per_item.items()}
        negative = torch.ones_like(text_index, dtype=torch.bool)
        negative[:, 0] = False
        uniform = negative if params.negative_attention == "uniform" else None  # eq. 8 for the negatives
        pair_texts = take({k: v for k, v in self._cut(texts).items() if k != "embedding"}, text_index)
        lengths = pair_texts["lengths"]
        w2r = o2w = None
        if self.use_w2r:
            scores = self.w2r_scores(pair_images["region_keys"], pair_images.get("region_gates"), pair_texts["words"],
                                     pair_texts["word_gates"], lengths, uniform, regions=pair_images.get("regions"))[0]
            w2r = (scores[:, 0], scores[:, 1:])
        if self.use_o2w:
            scores = self.o2w_scores(pair_images["object_queries"], pair_images["object_first"],
                                     pair_texts["states"], pair_texts["state_first"], lengths, uniform)[0]
            o2w = (scores[:, 0], scores[:, 1:])
        o2w_lam = params.lam if self.use_w2r else 1.0  # BSSAN_o2w: its loss is L2 alone, unweighted
        regulariser = squared_l2(self.regularized_weights()) if params.regularize else None
        terms = bssan_objective(w2r, o2w, regulariser, params.margin, o2w_lam, params.delta)
        terms["global"] = self.global_head.loss(images["embedding"], texts["embedding"], batch.positives())
        terms["total"] = terms["bssan"] + params.global_weight * terms["global"]
        return terms
