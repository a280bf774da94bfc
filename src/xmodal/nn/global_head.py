"""A light global embedding trained beside a pairwise model, for its first stage of two-stage search.

Pairwise (attention) models score a pair from both items, so they have no vector to index.
:class:`GlobalHead` gives them one without touching their scores: the mean of the image's
regions through one linear layer, a GRU's last state over the text's word vectors, trained with
the hardest-negative triplet loss (VSE++) on the batch. Its inputs are detached, so its loss
trains its own parameters only and the model's own training is the paper's.
"""

from __future__ import annotations

from torch import Tensor, nn

from xmodal.losses.ranking import bidirectional_triplet
from xmodal.nn.sequence import LastStateGRU


class GlobalHead(nn.Module):
    def __init__(self, region_dim: int, word_dim: int, dim: int, margin: float = 0.2):
        super().__init__()
        self.image = nn.Linear(region_dim, dim)
        self.text = LastStateGRU(word_dim, dim)
        self.margin = margin

    def images(self, regions: Tensor) -> Tensor:
        """``regions [B, R, region_dim]`` -> ``[B, dim]``."""
        return self.image(regions.detach().mean(1))

    def texts(self, words: Tensor, lengths: Tensor) -> Tensor:
        """``words [B, L, word_dim]`` with ``lengths [B]`` -> ``[B, dim]``."""
        return self.text(words.detach(), lengths)

    def loss(self, images: Tensor, texts: Tensor, positives: Tensor) -> Tensor:
        """Hardest-negative triplet loss both ways on the cosines of a batch's embeddings."""
        cosines = nn.functional.normalize(images, dim=-1) @ nn.functional.normalize(texts, dim=-1).T
        return bidirectional_triplet(cosines, positives, self.margin, hardest=True)
