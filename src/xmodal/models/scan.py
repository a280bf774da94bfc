"""SCAN (Lee, Chen, Hua, Hu, He, "Stacked Cross Attention for Image-Text Matching", ECCV 2018).

A baseline, not one of the five seed papers: the field's reference region-word attention, here so
the seed models' attention can be measured against it (the mosaic pointing game, issue 29).

- Image (section 3.4): each region (the EfficientNet-Lite0 grid, or the fixed-box ``objects``,
  standing in for the paper's 36 bottom-up-attention Faster R-CNN regions) through one linear
  layer to ``dim`` and l2-normalised.
- Text (section 3.4): word vectors (GloVe, fine-tuned, for the paper's learned 300-d embedding;
  or MiniLM token states) through a bi-directional GRU of width ``dim`` whose two directions are
  averaged, each word l2-normalised.
- Score (sections 3.1-3.2; :mod:`xmodal.nn.cross_attention`): text-image (``direction="t2i"``,
  "t-i" in the paper) lets each word attend over the regions and pools the words' relevances;
  image-text (``"i2t"``, "i-t") lets each region attend over the words and pools the regions'.
  Inverse temperature ``lambda_softmax`` (lambda_1), pooling ``aggregation`` AVG or LSE with
  ``lambda_lse`` (lambda_2).
- Loss (section 3.3): the hinge triplet loss with the hardest negative of the batch both ways
  (VSE++), margin 0.2, on the batch's full score matrix.

Presets (section 4, the paper's single models): ``scan-t2i`` (t-i AVG, lambda_1 = 9, the default)
and ``scan-i2t`` (i-t AVG, lambda_1 = 4). LSE pooling is ``aggregation: lse``.

Readings and choices:

- Step 1's clip is the authors' code's LeakyReLU with slope 0.1 (``leaky_slope``; 0 gives the
  paper's printed ``[s]_+``), and the l2 normalisation runs over the attending side, as their code
  does (``clipped_l2norm``).
- Texts are cut to ``max_words`` (SCAN does not cut; the cap bounds a pair's cost).
- Two-stage search needs a global vector the paper does not have: the light first-stage head of
  :class:`xmodal.nn.global_head.GlobalHead`, its own parameters only (term ``global``).
- ``explain`` returns the attention of the score's direction: ``word x region`` (t2i: each word's
  distribution over the regions, so the pointing game reads it) or ``region x word`` (i2t: each
  region's distribution over the words, which has no region map to point with).

Speed: the per-item parts (projection, GRU, and the attended side's Gram matrix) are computed once per
item in ``encode_*``; a pair costs one ``words x regions x dim`` contraction for the cosines and a
``words x regions x regions`` one (t2i) for the attended vectors' norms, chunked by
:func:`xmodal.nn.pairs.all_pairs`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from xmodal.losses.ranking import bidirectional_triplet
from xmodal.models.base import Attention, AttentionMap, Batch, InputSpec, Params, Rep, RetrievalModel, Variant, take
from xmodal.models.registry import register
from xmodal.nn.cross_attention import cross_attention, pool_relevance, relevance
from xmodal.nn.global_head import GlobalHead
from xmodal.nn.pairs import all_pairs
from xmodal.nn.pooling import length_mask
from xmodal.nn.sequence import AveragedBiRNN
from xmodal.nn.word_input import WordInput


class SCANParams(Params):
    direction: Literal["t2i", "i2t"] = "t2i"  # which side attends (sections 3.1-3.2)
    aggregation: Literal["avg", "lse"] = "avg"  # pooling of the relevances (eq. of section 3.1)
    lambda_softmax: float = Field(9.0, gt=0.0)  # lambda_1, the attention's inverse temperature
    lambda_lse: float = Field(6.0, gt=0.0)  # lambda_2 of LSE pooling
    leaky_slope: float = Field(0.1, ge=0.0)  # the clip of step 1 (0: the paper's [s]_+)
    dim: int = Field(1024, ge=1)  # the joint space (section 4.2)
    margin: float = Field(0.2, ge=0.0)  # alpha of the triplet loss (section 4.2)
    hardest_negative: bool = True  # VSE++'s hardest negative (False: summed over negatives)
    max_words: int = Field(40, ge=1)
    finetune_words: bool = True  # the paper learns its word embedding
    global_dim: int = Field(256, ge=1)  # the first-stage head (not in the paper)
    global_margin: float = Field(0.2, ge=0.0)
    global_weight: float = Field(1.0, ge=0.0)


@register
class SCAN(RetrievalModel):
    """Stacked cross attention of words over regions (t2i) or regions over words (i2t), VSE++ loss."""

    name = "scan"
    description = ("SCAN (baseline beside the seed papers, Lee et al. ECCV 2018): stacked cross attention "
                   "between regions and words, hardest-negative triplet loss")
    image_inputs = ("regions", "objects")
    text_inputs = ("words", "tokens")
    Params = SCANParams
    label = "SCAN t-i AVG"
    variants = {"t2i": Variant("SCAN t-i AVG", {"direction": "t2i", "aggregation": "avg", "lambda_softmax": 9.0}),
                "i2t": Variant("SCAN i-t AVG", {"direction": "i2t", "aggregation": "avg", "lambda_softmax": 4.0})}

    def __init__(self, spec: InputSpec, params: SCANParams):
        super().__init__(spec, params)
        self.words = WordInput(spec, "scan", params.finetune_words)
        self.image_projection = nn.Linear(spec.image_dim, params.dim)
        self.text_rnn = AveragedBiRNN(self.words.dim, params.dim, cell=nn.GRU)
        self.global_head = GlobalHead(spec.image_dim, self.words.dim, params.global_dim, params.global_margin)

    # -- per-item parts ----------------------------------------------------------------------------
    def encode_images(self, images: Rep) -> Rep:
        features = images[self.spec.image]
        regions = nn.functional.normalize(self.image_projection(features), dim=-1)
        rep = {"regions": regions, "embedding": self.global_head.images(features)}
        if self._attends_regions():  # the attended side's Gram matrix: only that side needs one
            rep["gram"] = regions @ regions.transpose(1, 2)
        return rep

    def encode_texts(self, texts: Rep) -> Rep:
        vectors, lengths = self.words(texts)
        limit = self.params.max_words
        vectors, lengths = vectors[:, :limit], lengths.clamp(1, limit)  # an empty text reads its padding
        mask = length_mask(lengths, vectors.shape[1])
        words = nn.functional.normalize(self.text_rnn(vectors, lengths), dim=-1) * mask.unsqueeze(-1)
        rep = {"words": words, "lengths": lengths, "embedding": self.global_head.texts(vectors, lengths)}
        if not self._attends_regions():
            rep["gram"] = words @ words.transpose(1, 2)
        return rep

    def _attends_regions(self) -> bool:
        """t2i: the words attend over the regions (the regions are the attended side); i2t: the reverse."""
        return self.params.direction == "t2i"

    def embed(self, rep: Rep) -> Tensor:
        return rep["embedding"]

    # -- scores --------------------------------------------------------------------------------------
    def block_scores(self, regions: Tensor, words: Tensor, lengths: Tensor, attended_gram: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """Scores ``[I, J]`` and alpha of every pair of regions ``[I, R, D]`` x words ``[J, L, D]``;
        alpha is ``[I, J, L, R]`` (t2i) or ``[I, J, R, L]`` (i2t). ``attended_gram`` is the attended
        side's Gram matrix: the images' ``[I, R, R]`` (t2i) or the texts' ``[J, L, L]`` (i2t)."""
        params = self.params
        (n_images, n_regions, _), (n_texts, width, _) = regions.shape, words.shape
        cosines = torch.einsum("ird,jld->ijlr", regions, words)  # one matrix product for the block
        word_mask = length_mask(lengths, width)  # [J, L]
        if self._attends_regions():  # each word attends over the regions (section 3.2)
            attending = word_mask.expand(n_images, n_texts, width)
            attended = torch.ones(n_images, n_texts, n_regions, dtype=torch.bool, device=regions.device)
            alpha = cross_attention(cosines, attending, attended, params.lambda_softmax, params.leaky_slope)
            flat = (n_images, n_texts * width, n_regions)  # every text's words against one image's regions
            relevances = relevance(alpha.reshape(flat), cosines.reshape(flat), attended_gram).view(attending.shape)
        else:  # each region attends over the words (section 3.1), laid out per text
            by_text = cosines.permute(1, 0, 3, 2)  # [J, I, R, L]
            attending = torch.ones(n_texts, n_images, n_regions, dtype=torch.bool, device=regions.device)
            attended = word_mask.unsqueeze(1).expand(n_texts, n_images, width)
            alpha = cross_attention(by_text, attending, attended, params.lambda_softmax, params.leaky_slope)
            flat = (n_texts, n_images * n_regions, width)  # every image's regions against one text's words
            relevances = relevance(alpha.reshape(flat), by_text.reshape(flat), attended_gram).view(attending.shape)
            alpha, attending, relevances = alpha.transpose(0, 1), attending.transpose(0, 1), relevances.transpose(0, 1)
        return pool_relevance(relevances, attending, params.aggregation, params.lambda_lse), alpha

    def pair_cost(self, words: int | None = None) -> int:
        """Floats per pair of the largest intermediates: the cosines, their clipped and normalised
        copies, alpha, and the norm's ``alpha G`` product."""
        words = words or self.params.max_words
        return 1 + 6 * words * self._regions()

    def _regions(self) -> int:
        part = self.spec.part("image", self.spec.image)
        return part.get("regions") or part.get("count") or 196

    @staticmethod
    def _cut(texts: Rep) -> Rep:
        """Texts cut to the block's longest text."""
        width = int(texts["lengths"].max())
        cut = texts | {"words": texts["words"][:, :width]}
        if "gram" in texts:
            cut["gram"] = texts["gram"][:, :width, :width]
        return cut

    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        texts = self._cut(texts)
        words, lengths = texts["words"], texts["lengths"]
        image_parts = (images["regions"], images["gram"]) if self._attends_regions() else (images["regions"],)

        def score(regions: Tensor, *region_gram: Tensor) -> tuple[Tensor]:
            gram = region_gram[0] if region_gram else texts["gram"]
            return (self.block_scores(regions, words, lengths, gram)[0],)

        return all_pairs(score, image_parts, len(lengths), self.pair_cost(int(lengths.max())))[0]

    def explain(self, images: Rep, texts: Rep) -> Attention:
        image, text = take(images, slice(0, 1)), self._cut(take(texts, slice(0, 1)))
        length = int(text["lengths"][0])
        gram = image["gram"] if self._attends_regions() else text["gram"]
        alpha = self.block_scores(image["regions"], text["words"], text["lengths"], gram)[1][0, 0]
        side = self.spec.grid_side  # None for objects: a set, not a grid
        grids = {"region": (side, side)} if side else {}
        if self._attends_regions():
            maps = {"word x region": AttentionMap(alpha[:length], ("word", "region"), grids)}
            note = "SCAN t-i: each word's attention over the regions (lambda_1 = %g)" % self.params.lambda_softmax
        else:
            maps = {"region x word": AttentionMap(alpha[:, :length], ("region", "word"), grids)}
            note = "SCAN i-t: each region's attention over the words (lambda_1 = %g)" % self.params.lambda_softmax
        return Attention(maps, note=note)

    # -- training ------------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """The hardest-negative triplet loss on the batch's score matrix (section 3.3), and the
        first-stage head's (``global``)."""
        images, texts = self.encode_images(batch.images), self.encode_texts(batch.texts)
        positives = batch.positives()
        scan = bidirectional_triplet(self.similarity(images, texts), positives, self.params.margin,
                                     hardest=self.params.hardest_negative)
        head = self.global_head.loss(images["embedding"], texts["embedding"], positives)
        return {"scan": scan, "global": head, "total": scan + self.params.global_weight * head}
