"""SCANet (Lu, Yu, Liu, Tan, Guo, Zhang: "Fine-grained correlation learning with stacked co-attention
networks for cross-modal information retrieval", KSEM 2018).

- Text model H_T (section 3.1, eqs. 1-2): a text is its counts on the dataset's word graph (the
  ``bow`` input kind, :mod:`xmodal.encoders.graph`; GloVe 50-d neighbours stand in for word2vec);
  two Chebyshev graph convolutions (K = 3, one scalar filter per order and layer, eq. 1,
  :mod:`xmodal.nn.graph_conv`) each + ReLU, then one FC layer to the common dimension N.
  ``text_model="lstm"`` / ``"cnn"`` swap it for an LSTM or a Kim CNN over word vectors (Table 3's
  first rows, :mod:`xmodal.nn.sequence`); those read the ``words`` (GloVe-initialised ids) or
  ``tokens`` (MiniLM states) input, so :meth:`SCANet.input_parts` narrows the accepted text kinds
  by ``text_model`` and the variants ``scanet-lstm`` / ``scanet-cnn`` get word input by themselves.
- Image model H_I (3.2, eq. 3): the image's global vector through one FC layer to N. The vector is
  first divided by its root mean square (``image_norm="rms"``, not in the paper): Wikipedia's SIFT
  histograms sum to 1, and at that scale the FC layer barely learned (best validation MAP after 4
  epochs of scanet/wikipedia-texts: 0.179 without, 0.223 with it).
- Stacked co-attention (3.3, eqs. 4-9), ``layers`` = k in {0, 1, 2, 3}:
  ``p = softmax(relu(W f + b))`` per side (eqs. 4-5, 7-8) and ``f~_T = p_I o f_T``,
  ``f~_I = p_T o f_I`` (eqs. 6, 9).
- Score (3.4): ``sigmoid(w . (f~_T^k o f~_I^k) + c)``, element-wise product, one FC layer,
  sigmoid; dropout (0.2 in the paper) on the FC layer's input in training.
- Loss (eq. 10, :mod:`xmodal.losses.histogram`): the global histogram loss over label-matching
  and non-matching image-text pairs; m = 0.6, lambda = 0.35.

Two readings of section 3.3, each tested (tests/test_scanet.py):

1. Scale. A softmax over N dimensions sums to 1, so ``p o f`` shrinks the features by about 1/N
   per layer (1/1024 per layer at N = 1024: after two layers the product fed to the score layer
   is ~1e-12 of the layer-0 one, and its gradients vanish with it). By default
   (``attention_scale="dimension"``) the weights are ``N * softmax(h)``: uniform attention is the
   identity, and attention only redistributes weight between dimensions. ``"none"`` is the
   literal formula. :meth:`explain` shows the distributions ``p`` themselves (summing to 1).
2. Stacking. Eq. 7 computes the text attention of layer k from ``f~_T^(k-1)`` but eq. 8 the image
   attention from ``f_I^(k-1)``, and eq. 9 updates ``f^(k-1)``; the text and Fig. 2 describe each
   layer taking the previous layer's outputs ("f~_T and f~_I are the inputs of the second
   co-attention layer"). We read every ``f^(k-1)`` as ``f~^(k-1)``, the outputs of layer k - 1,
   with ``f~^0 = f``: both sides are symmetric and layer k both attends from and reweights the
   attended features of layer k - 1.

Scoring a block (``similarity``): with k <= 1 the score is bilinear in per-item vectors,
``w . (p_I o f_I o p_T o f_T)`` = ``(w o p_I o f_I) . (p_T o f_T)``, one matrix product. With
k >= 2 the attention of layer 2 reads pair-dependent features, so the layer-2+ FC layers run on
``[I, J, N]`` pair tensors: batched matrix products over a block through
:func:`xmodal.nn.pairs.all_pairs`, never a loop over pairs. The layer-1 attention of each item
(eqs. 4-5) depends on that item alone and is kept in its representation.

``embed`` returns the layer-0 projections f_I, f_T (the common space before co-attention), for the
first stage of two-stage search; the training loss never compares them directly, so they
shortlist only as well as they happen to align.

Pairs in training (section 4.1 samples 40,000 matching and 40,000 non-matching pairs from the
training items, by label, once): here each batch's B images and B texts are encoded once, and
``pairs`` matching and ``pairs`` non-matching (image i, text j) pairs are drawn from its B x B
grid, uniformly without replacement (all of a kind when there are fewer). Matching means sharing
a category (or being the same item). A fresh draw every step sees more distinct pairs than one
fixed pool; the balance of the two kinds is the paper's.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.losses.histogram import MARGIN, WEIGHT, histogram_loss
from xmodal.models.base import Attention, AttentionMap, Batch, InputSpec, Params, Rep, RetrievalModel, Variant
from xmodal.models.registry import register
from xmodal.nn.graph_conv import GraphTextModel
from xmodal.nn.pairs import all_pairs
from xmodal.nn.sequence import KimCNN, WordLSTM
from xmodal.nn.word_input import WordInput

TextModel = Literal["gcn", "lstm", "cnn"]
_TEXT_KINDS: dict[str, tuple[str, ...]] = {"gcn": ("bow",), "lstm": ("words", "tokens"), "cnn": ("words", "tokens")}


class SCANetParams(Params):
    dim: int = Field(256, ge=1)  # N, the common space (section 4.2: 1,024 for Eng-Wiki, set by its -paper config)
    layers: int = Field(2, ge=0, le=3)  # k, stacked co-attention layers (Table 3: 0-3, 2 best)
    text_model: TextModel = "gcn"  # Table 3: GCN (SCANet), LSTM, CNN
    order: int = Field(3, ge=1)  # K of eq. 1
    graph_layers: int = Field(2, ge=1)  # graph convolutions of the text model (section 3.1: two)
    # The 1-d vertex signal: "counts" (the paper's "word frequency"), "log" = log(1 + count), or
    # "frequency" = count / the text's words on the graph. Long articles have counts in the hundreds.
    bow_scale: Literal["counts", "log", "frequency"] = "log"
    attention_scale: Literal["dimension", "none"] = "dimension"  # N * softmax, or the literal softmax
    # "rms": each image vector divided by its root mean square (entries of RMS 1, as ReLU CNN features
    # roughly have); Wikipedia's SIFT histograms sum to 1, entries ~0.008, too small for the FC to read.
    # "sqrt-rms": the signed square root first (the Hellinger map of a histogram, as RootSIFT does), then "rms".
    image_norm: Literal["rms", "sqrt-rms", "none"] = "rms"
    margin: float = Field(MARGIN, ge=0.0)  # m of eq. 10
    weight: float = Field(WEIGHT, ge=0.0)  # lambda of eq. 10
    pairs: int = Field(256, ge=1)  # matching and (as many) non-matching pairs drawn per batch
    dropout: float = Field(0.2, ge=0.0, lt=1.0)  # on the score layer's input (section 4.2)
    sequence_dim: int = Field(256, ge=1)  # LSTM hidden size / CNN filters per window (baselines)
    max_words: int = Field(300, ge=1)  # LSTM / CNN read a text's first max_words words
    finetune_words: bool = True  # train the GloVe-initialised word embeddings (LSTM / CNN)


class CoAttentionLayer(nn.Module):
    """One layer's two attention FC layers, W_T, b_T and W_I, b_I of eqs. 4-5 / 7-8 (N x N each)."""

    def __init__(self, dim: int):
        super().__init__()
        self.text = nn.Linear(dim, dim)
        self.image = nn.Linear(dim, dim)


@register
class SCANet(RetrievalModel):
    """GCN text model, FC image model, stacked co-attention, sigmoid score, histogram loss."""

    name = "scanet"
    description = "SCANet: graph-convolution text model, stacked co-attention, sigmoid pair score, global loss"
    image_inputs = ("global",)
    text_inputs = ("bow", "words", "tokens")  # bow for the GCN; words / tokens for the LSTM and CNN variants
    needs_labels = True
    Params = SCANetParams
    label = "SCANet (GCN, k = 2)"
    variants = {  # Table 3: co-attention layers 0-3 (2 is scanet itself), LSTM and CNN text models
        "k0": Variant("SCANet k = 0", {"layers": 0}), "k1": Variant("SCANet k = 1", {"layers": 1}),
        "k2": Variant("SCANet (GCN, k = 2)", {"layers": 2}), "k3": Variant("SCANet k = 3", {"layers": 3}),
        "lstm": Variant("LSTM text model, k = 2", {"text_model": "lstm"}),
        "cnn": Variant("CNN text model, k = 2", {"text_model": "cnn"}),
    }

    @classmethod
    def input_parts(cls, side: str, params: Params | None = None) -> tuple[tuple[str, ...], ...]:
        if side == "text" and isinstance(params, SCANetParams):
            return (_TEXT_KINDS[params.text_model],)
        return super().input_parts(side, params)

    def __init__(self, spec: InputSpec, params: SCANetParams):
        super().__init__(spec, params)
        if spec.text not in _TEXT_KINDS[params.text_model]:
            raise XmodalError(f"scanet text_model={params.text_model!r} reads text input "
                              f"{' or '.join(_TEXT_KINDS[params.text_model])}, not {spec.text!r} "
                              f"(set data.text_input)")
        self.graph: GraphTextModel | None = None
        self.sequence: nn.Module | None = None
        self.words: WordInput | None = None
        if params.text_model == "gcn":
            graph = spec.part("text", "bow")
            self.graph = GraphTextModel(graph["laplacian"], graph["lambda_max"], params.graph_layers, params.order)
            self.vertices: list[str] = list(graph["vertices"])
            text_width = spec.text_dim  # the GCN keeps one feature per vertex (section 4.1)
        else:
            self.words = WordInput(spec, f"scanet text_model={params.text_model!r}", params.finetune_words)
            if params.text_model == "lstm":
                self.sequence = WordLSTM(self.words.dim, params.sequence_dim)
            else:
                self.sequence = KimCNN(self.words.dim, params.sequence_dim)
            text_width = self.sequence.dim
        self.text_fc = nn.Linear(text_width, params.dim)  # the last layer of H_T (eq. 2)
        self.image_fc = nn.Linear(spec.image_dim, params.dim)  # H_I (eq. 3)
        self.coattention = nn.ModuleList(CoAttentionLayer(params.dim) for _ in range(params.layers))
        self.score = nn.Linear(params.dim, 1)  # section 3.4
        self.dropout = nn.Dropout(params.dropout)

    # -- the two paths (eqs. 1-3) ------------------------------------------------------------
    def _vertex_signal(self, counts: Tensor) -> Tensor:
        scale = self.params.bow_scale
        if scale == "log":
            return torch.log1p(counts)
        if scale == "frequency":
            return counts / counts.sum(1, keepdim=True).clamp_min(1.0)
        return counts

    def text_features(self, texts: Rep) -> Tensor:
        """f_T (eq. 2), ``[B, N]``."""
        if self.graph is not None:
            return self.text_fc(self.graph(self._vertex_signal(texts["bow"])))
        limit = self.params.max_words
        assert self.words is not None and self.sequence is not None
        vectors, lengths = self.words(texts)
        return self.text_fc(self.sequence(vectors[:, :limit], lengths.clamp_max(limit)))

    def image_features(self, images: Rep) -> Tensor:
        """f_I (eq. 3), ``[B, N]``."""
        features = images["features"]
        if self.params.image_norm == "sqrt-rms":
            features = features.sign() * features.abs().sqrt()
        if self.params.image_norm in ("rms", "sqrt-rms"):
            features = features * features.pow(2).mean(-1, keepdim=True).clamp_min(1e-12).rsqrt()
        return self.image_fc(features)

    def _attention(self, layer: nn.Linear, features: Tensor) -> Tensor:
        """``p = softmax(relu(W f + b))`` (eqs. 4-5, 7-8), scaled by N unless ``attention_scale="none"``."""
        p = torch.softmax(torch.relu(layer(features)), dim=-1)
        return p * p.shape[-1] if self.params.attention_scale == "dimension" else p

    def encode_images(self, images: Rep) -> Rep:
        features = self.image_features(images)
        rep = {"embedding": features}
        if self.coattention:  # p_I of the first layer (eq. 5) reads the image alone
            rep["attention"] = self._attention(self.coattention[0].image, features)
        return rep

    def encode_texts(self, texts: Rep) -> Rep:
        features = self.text_features(texts)
        rep = {"embedding": features}
        if self.graph is not None:  # the counts, so explain can name the text's words
            rep["bow"] = texts["bow"]
        if self.coattention:  # p_T of the first layer (eq. 4) reads the text alone
            rep["attention"] = self._attention(self.coattention[0].text, features)
        return rep

    def embed(self, rep: Rep) -> Tensor:
        return rep["embedding"]

    # -- co-attention and score (eqs. 6-9, section 3.4) ----------------------------------------
    def attend(self, image: Tensor, image_attention: Tensor | None, text: Tensor, text_attention: Tensor | None,
               ) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
        """``(f~_I^k, f~_T^k, [(a_I^l, a_T^l) per layer])`` for pairs given as broadcastable ``[..., N]``.

        Layer 1 uses the items' own attention (eqs. 4-6); layer l >= 2 attends from the previous
        layer's outputs and reweights them (eqs. 7-9, read with f~^(l-1) on both sides).
        """
        weights: list[tuple[Tensor, Tensor]] = []
        if not self.coattention:
            return image, text, weights
        shape = torch.broadcast_shapes(image.shape, text.shape)  # the pairs' shape (views, no copies)
        image_attention, text_attention = image_attention.expand(shape), text_attention.expand(shape)
        weights.append((image_attention, text_attention))
        attended_text, attended_image = image_attention * text, text_attention * image  # eq. 6
        for layer in self.coattention[1:]:
            text_attention = self._attention(layer.text, attended_text)  # eq. 7
            image_attention = self._attention(layer.image, attended_image)  # eq. 8
            weights.append((image_attention, text_attention))
            attended_text, attended_image = image_attention * attended_text, text_attention * attended_image  # eq. 9
        return attended_image, attended_text, weights

    def pair_scores(self, images: Rep, texts: Rep) -> Tensor:
        """Scores of pairs given as broadcastable representations: ``[P, N]`` each, or ``[I, 1, N]`` x ``[1, J, N]``."""
        image, text, _ = self.attend(images["embedding"], images.get("attention"), texts["embedding"],
                                     texts.get("attention"))
        return torch.sigmoid(self.score(self.dropout(image * text)).squeeze(-1))

    def pair_cost(self) -> int:
        """Floats per pair of a k >= 2 block: the two attended vectors, two pre-softmax and two attention vectors."""
        return 1 if self.params.layers <= 1 else 6 * self.params.dim

    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        """``[I, J]`` scores of every image x text pair of two blocks (section 3.4), without dropout."""
        if self.params.layers <= 1:  # bilinear: (w o p_I o f_I) . (p_T o f_T) + c, a matrix product per chunk
            image, text = images["embedding"], texts["embedding"]
            if self.params.layers == 1:
                image, text = image * images["attention"], text * texts["attention"]

            def bilinear(image_chunk: Tensor) -> tuple[Tensor]:
                return (torch.sigmoid((image_chunk * self.score.weight[0]) @ text.T + self.score.bias),)

            return all_pairs(bilinear, (image,), len(text), self.pair_cost())[0]
        text_rep = {"embedding": texts["embedding"][None], "attention": texts["attention"][None]}

        def block(embedding: Tensor, attention: Tensor) -> tuple[Tensor]:
            image_rep = {"embedding": embedding[:, None], "attention": attention[:, None]}
            with _no_dropout(self.dropout):
                return (self.pair_scores(image_rep, text_rep),)

        return all_pairs(block, (images["embedding"], images["attention"]), len(texts["embedding"]),
                         self.pair_cost())[0]

    # -- training (eq. 10) ---------------------------------------------------------------------
    def sample_pairs(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """``(image index, text index, matching)`` of the pairs drawn from a batch's B x B grid."""
        if batch.labels is None:
            raise XmodalError("scanet trains on label-matched pairs (eq. 10), but the batch has no labels")
        matching = (batch.labels @ batch.labels.T > 0) | batch.positives()
        chosen = []
        for mask in (matching, ~matching):
            found = mask.flatten().nonzero().squeeze(1)
            if len(found) > self.params.pairs:
                found = found[torch.randperm(len(found), device=found.device)[: self.params.pairs]]
            chosen.append(found)
        flat = torch.cat(chosen)
        width = matching.shape[1]
        is_match = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
        is_match[: len(chosen[0])] = True
        return flat // width, flat % width, is_match

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        images, texts = self.encode_images(batch.images), self.encode_texts(batch.texts)
        image_index, text_index, matching = self.sample_pairs(batch)
        scores = self.pair_scores({key: value[image_index] for key, value in images.items()},
                                  {key: value[text_index] for key, value in texts.items()})
        terms = histogram_loss(scores[matching], scores[~matching], self.params.margin, self.params.weight)
        return {**terms, "pairs": torch.tensor(float(len(scores)))}

    # -- attention for display -----------------------------------------------------------------
    def explain(self, images: Rep, texts: Rep) -> Attention | None:
        """p_I and p_T of every layer for the first image and text (over the N common dimensions),
        and, with the graph text model, p_T of each layer carried back to the text's own words."""
        if not self.coattention:
            return None
        first_image = {key: value[:1] for key, value in images.items()}
        first_text = {key: value[:1] for key, value in texts.items()}
        _, _, weights = self.attend(first_image["embedding"], first_image["attention"], first_text["embedding"],
                                    first_text["attention"])
        scale = self.params.dim if self.params.attention_scale == "dimension" else 1
        maps: dict[str, AttentionMap] = {}
        for layer, (image_attention, text_attention) in enumerate(weights, start=1):
            maps[f"image p_I^{layer}"] = AttentionMap(image_attention[0] / scale, ("dimension",))
            maps[f"text p_T^{layer}"] = AttentionMap(text_attention[0] / scale, ("dimension",))
        note = "p over the common-space dimensions, per co-attention layer"
        if self.graph is not None and "bow" in texts:
            words = texts["bow"][0].nonzero().squeeze(1)
            if len(words):
                labels = [self.vertices[int(v)] for v in words]
                signal = self.graph(self._vertex_signal(texts["bow"][:1]))[0]  # GCN output per vertex
                for layer, (_, text_attention) in enumerate(weights, start=1):
                    weight = self.word_relevance(signal, text_attention[0] / scale, words)
                    maps[f"text words p_T^{layer}"] = AttentionMap(weight, ("word",), labels={"word": labels})
                note += "; word maps: p_T carried back to the text's words through the text FC layer"
        return Attention(maps, note=note)

    def word_relevance(self, signal: Tensor, attention: Tensor, words: Tensor) -> Tensor:
        """Each of ``words``' share of the attended text feature: ``g_v sum_n p_n |W_fc[n, v]|``, normalised
        over ``words`` (the vertices the text contains).

        ``g`` is the GCN output (one non-negative value per vertex), ``p`` a text attention
        distribution over the N common dimensions and ``W_fc`` the text FC layer: how much of the
        attention-weighted mass of f_T comes from vertex v.
        """
        relevance = (signal * (attention @ self.text_fc.weight.abs()))[words]
        return relevance / relevance.sum().clamp_min(1e-12)


class _no_dropout:
    """Turns a dropout module off inside a block (``similarity`` scores without dropout, even in training)."""

    def __init__(self, dropout: nn.Dropout):
        self.dropout, self.was_training = dropout, dropout.training

    def __enter__(self) -> None:
        self.dropout.training = False

    def __exit__(self, *exc) -> None:
        self.dropout.training = self.was_training
