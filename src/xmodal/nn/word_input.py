"""A text's word vectors from either word-level input kind, in one place for every model.

Models that read a text word by word accept two input kinds (:mod:`xmodal.features.kinds`):

- ``words``: ids into the training split's vocabulary, embedded here by a table started from
  GloVe 6B 50-d (the papers' word2vec / learned embeddings), fine-tuned or frozen;
- ``tokens``: MiniLM-L6 token states, already vectors, passed through as they are.

:class:`WordInput` turns either into ``(vectors [B, T, D], lengths [B])``, so a model writes its
text path once, for both.
"""

from __future__ import annotations

from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.models.base import InputSpec, Rep

WORD_KINDS = ("words", "tokens")


def check_word_input(spec: InputSpec, model: str) -> None:
    """Refuse a text input that is not a word sequence, naming the model and what it reads."""
    if spec.text not in WORD_KINDS or (spec.text == "words" and spec.vocab_size is None):
        raise XmodalError(f"{model} reads word sequences: text input 'words' (with a vocabulary) or 'tokens', "
                          f"not {spec.text!r}")


class WordInput(nn.Module):
    """``words`` ids -> embedded vectors, or ``tokens`` states as they are; with their lengths.

    ``dim`` gives the embedding another width than the GloVe vectors' (then it starts random, as
    ACLN's learned embedding); ``finetune`` False freezes the table. ``tokens`` keep their width.
    """

    def __init__(self, spec: InputSpec, model: str, finetune: bool = True, dim: int | None = None):
        super().__init__()
        check_word_input(spec, model)
        self.embedding: nn.Embedding | None = None
        self.dim = spec.text_dim
        if spec.text == "words":
            self.dim = dim or spec.text_dim
            self.embedding = nn.Embedding(spec.vocab_size, self.dim, padding_idx=0)
            if spec.word_vectors is not None and self.dim == spec.word_vectors.shape[1]:
                self.embedding.weight.data.copy_(spec.word_vectors)
            self.embedding.weight.requires_grad_(finetune)

    def forward(self, texts: Rep) -> tuple[Tensor, Tensor]:
        """``(vectors [B, T, dim], lengths [B])``; padding rows are the embedding's zero row (``words``)
        or whatever the token states hold there (callers mask by length)."""
        if self.embedding is not None:
            return self.embedding(texts["ids"]), texts["lengths"]
        return texts["tokens"], texts["lengths"]
