"""GPLDAN (Chen, Zhang, Zhan: "Graph pattern loss based diversified attention network for
cross-modal retrieval"): unsupervised, labels are never read in training.

- Projector (section 2.1): a denoising mask zeroes a fraction of the input elements (training only);
  a modality-specific layer per side, then weight-shared layers to the common space R^L; each
  vector is reshaped into k chunks weighted by diversified attention (eqs. 1-3,
  :mod:`xmodal.nn.diversified_attention`).
- Graph pattern loss (section 2.2, eq. 9, :mod:`xmodal.losses.graph_pattern`) on the batch's
  image-text, image-image and text-text distances, with targets from the input features.
- Modality classifier (section 2.3, eqs. 10-11, :mod:`xmodal.losses.adversarial`): ``loss``
  returns "total" = L_gpl + lambda * flipped-label CE (trains everything but the discriminator)
  and "discriminator" = eq. 10 on detached features (trains only ``self.discriminator``).
- Score (end of 2.2): ``1 - l_p(v_i, t_j)``, the cosine of ``Co(v_i, t_j)`` and ``Co(t_j, v_i)``,
  for a whole block of pairs in a few einsums over k x k chunk products.

Table 3's variants are flags: ``use_udp``, ``use_mdp``, ``use_classifier``, ``use_attention``.
Without attention an item is its whole common-space vector and l_p the plain cosine distance.
With ``use_classifier`` off the discriminator still trains on its own term, as a probe of how
separable the modalities are, but sends nothing back to the projector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xmodal.losses.adversarial import discriminator_loss, flipped_modality_loss
from xmodal.losses.graph_pattern import UdpForm, cosine_distance_matrix, graph_pattern_loss, original_distance_target
from xmodal.models.base import Attention, AttentionMap, Batch, InputSpec, Params, Rep, RetrievalModel, Variant
from xmodal.models.registry import register
from xmodal.nn.diversified_attention import ChunkAttention, chunk_gram, pair_cosine, split_chunks
from xmodal.nn.pairs import all_pairs

_TABLE3_BASELINE = {"use_udp": False, "use_mdp": False, "use_classifier": False, "use_attention": False}


class GPLDANParams(Params):
    hidden: int = 512  # width of each modality-specific input layer
    shared_hidden: int = 0  # width of a shared hidden layer (0: one shared linear layer to R^L)
    dim: int = 256  # L, the common space; must be divisible by k
    k: int = 4  # representations per item (section 3.2)
    mask: float = 0.2  # denoising: fraction of input elements zeroed in training
    alpha: float = 1.0  # weight of L_udp (eq. 9); grid-searched per dataset
    beta: float = 0.1  # weight of L_mdp (eq. 9); grid-searched per dataset
    classifier_weight: float = 0.01  # lambda of eq. 11 (section 3.2)
    discriminator_hidden: int = 128
    udp_form: UdpForm = "abs"  # eq. 6 as |l_p - d| (see losses/graph_pattern.py); "signed" = as printed
    use_udp: bool = True  # Table 3 rows
    use_mdp: bool = True
    use_classifier: bool = True
    use_attention: bool = True


@register
class GPLDAN(RetrievalModel):
    """Graph pattern loss, diversified attention, modality classifier; unsupervised."""

    name = "gpldan"
    description = "GPLDAN: diversified attention over k chunks, graph pattern loss, modality classifier (unsupervised)"
    image_inputs = ("global",)
    text_inputs = ("global", "tfidf")  # tfidf: texts in any script (issue 32)
    needs_labels = False
    auxiliary = {"discriminator": "discriminator"}
    Params = GPLDANParams
    label = "GPLDAN"
    variants = {  # Table 3's rows, each adding to the one before; the last row is gpldan itself
        "pdl": Variant("L_pdl", _TABLE3_BASELINE),
        "mdp": Variant("+ L_mdp", _TABLE3_BASELINE | {"use_mdp": True}),
        "udp": Variant("+ L_udp", _TABLE3_BASELINE | {"use_udp": True}),
        "mdp-udp": Variant("+ L_mdp + L_udp", _TABLE3_BASELINE | {"use_udp": True, "use_mdp": True}),
        "mdp-udp-mc": Variant("+ L_mdp + L_udp + MC",
                              _TABLE3_BASELINE | {"use_udp": True, "use_mdp": True, "use_classifier": True}),
    }

    def __init__(self, spec: InputSpec, params: GPLDANParams):
        super().__init__(spec, params)
        if params.dim % params.k:
            raise ValueError(f"gpldan: dim={params.dim} must be divisible by k={params.k}")
        self.image_layer = nn.Sequential(nn.Linear(spec.image_dim, params.hidden), nn.ReLU())
        self.text_layer = nn.Sequential(nn.Linear(spec.text_dim, params.hidden), nn.ReLU())
        self.shared = _shared_layers(params)
        self.image_attention = self.text_attention = None
        if params.use_attention:
            self.image_attention = ChunkAttention(params.dim // params.k)
            self.text_attention = ChunkAttention(params.dim // params.k)
        self.discriminator = nn.Sequential(nn.Linear(params.dim, params.discriminator_hidden), nn.ReLU(),
                                           nn.Linear(params.discriminator_hidden, 1))

    # -- projector (section 2.1) -------------------------------------------------------------
    def _denoise(self, features: Tensor) -> Tensor:
        """Masking noise: each input element is zeroed with probability ``mask`` (training only)."""
        if not self.training or not self.params.mask:
            return features
        return features * (torch.rand_like(features) >= self.params.mask)

    def _represent(self, common: Tensor, attention: ChunkAttention | None) -> Rep:
        """The common-space vector; with attention also its chunk weights (eq. 1) and chunk Gram."""
        if attention is None:
            return {"embedding": common}
        chunks = split_chunks(common, self.params.k)
        return {"embedding": common, "attention": attention(chunks), "gram": chunk_gram(chunks)}

    def _project_images(self, features: Tensor) -> Tensor:
        return self.shared(self.image_layer(self._denoise(features)))

    def _project_texts(self, features: Tensor) -> Tensor:
        return self.shared(self.text_layer(self._denoise(features)))

    def encode_images(self, images: Rep) -> Rep:
        return self._represent(self._project_images(images["features"]), self.image_attention)

    def encode_texts(self, texts: Rep) -> Rep:
        return self._represent(self._project_texts(texts["features"]), self.text_attention)

    # -- scores ------------------------------------------------------------------------------
    def _cosine(self, x: Rep, y: Rep) -> Tensor:
        """``[I, J]`` = 1 - l_p: co-attention across modalities (eq. 3), self-attention within (eq. 2)."""
        if "attention" not in x:
            return 1 - cosine_distance_matrix(x["embedding"], y["embedding"])
        k = self.params.k
        y_chunks = split_chunks(y["embedding"], k)

        def block(x_embedding: Tensor, x_attention: Tensor, x_gram: Tensor) -> tuple[Tensor]:
            return (pair_cosine(split_chunks(x_embedding, k), x_attention, x_gram, y_chunks, y["attention"],
                                y["gram"]),)

        return all_pairs(block, (x["embedding"], x["attention"], x["gram"]), len(y_chunks), self.pair_cost())[0]

    def pair_cost(self) -> int:
        """The k x k chunk cross products of one pair (:func:`pair_cosine`)."""
        return self.params.k**2 if self.params.use_attention else 1

    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        return self._cosine(images, texts)

    def embed(self, rep: Rep) -> Tensor:
        """The common-space vector (all k chunks, unweighted): a first-stage shortlist key only."""
        return rep["embedding"]

    def explain(self, images: Rep, texts: Rep) -> Attention | None:
        if "attention" not in images:
            return None
        return Attention({"image": AttentionMap(images["attention"][0], ("chunk",)),
                          "text": AttentionMap(texts["attention"][0], ("chunk",))},
                         note=f"weights of the k={self.params.k} common-space chunks (eq. 1), not regions/tokens; "
                              "co-attention fuses both items' chunks with their sum")

    # -- training (sections 2.2-2.3) ---------------------------------------------------------
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """L_G (eq. 11) as "total", L_D (eq. 10) as "discriminator", and the parts for the log.

        Reads the features and the item pairing of ``batch``; never its labels.
        """
        p = self.params
        inputs_u, inputs_c = batch.images["features"], batch.texts["features"]
        v, t = self._project_images(inputs_u), self._project_texts(inputs_c)
        images, texts = self._represent(v, self.image_attention), self._represent(t, self.text_attention)
        unpaired = ~batch.positives()  # different objects (items), whatever their labels
        target = original_distance_target(inputs_u, inputs_c, unpaired)  # on the clean inputs
        terms = graph_pattern_loss(1 - self._cosine(images, texts), 1 - self._cosine(images, images),
                                   1 - self._cosine(texts, texts), target, unpaired,
                                   alpha=p.alpha if p.use_udp else 0.0, beta=p.beta if p.use_mdp else 0.0,
                                   form=p.udp_form)
        adversarial = flipped_modality_loss(self.discriminator, v, t)
        total = terms.pop("gpl") + (p.classifier_weight * adversarial if p.use_classifier else 0.0)
        return {"total": total, **terms, "adversarial": adversarial.detach(),
                "discriminator": discriminator_loss(self.discriminator, v, t)}


def _shared_layers(params: GPLDANParams) -> nn.Module:
    """Weight-shared layers from the modality-specific width to the common space R^L."""
    if not params.shared_hidden:
        return nn.Linear(params.hidden, params.dim)
    return nn.Sequential(nn.Linear(params.hidden, params.shared_hidden), nn.ReLU(),
                         nn.Linear(params.shared_hidden, params.dim))

