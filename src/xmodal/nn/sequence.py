"""Sequence encoders for word sequences: word ids (embedded here) or contextual token states.

:class:`NgramBiLSTM` is the text branch of JGCAR (Wang et al., MM 2018, section 2.1, eqs. 1-4),
which follows the phrase level of hierarchical co-attention (Lu et al., NIPS 2016): word
embeddings -> unigram, bigram and trigram convolutions with tanh -> max over the three at each
position -> bi-directional LSTM whose two directions are added.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xmodal.nn.pooling import length_mask


class NgramConv(nn.Module):
    """Phrase features (eqs. 2-3): n-gram convolutions with tanh, max over the window sizes.

    The window at position t covers words t .. t+c-1 (eq. 2), so the sequence is zero-padded by
    c-1 on the right: every window size gives an output at each of the T positions.
    """

    def __init__(self, in_dim: int, out_dim: int, windows: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        self.windows = windows
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, out_dim, window) for window in windows)

    def forward(self, words: Tensor, mask: Tensor) -> Tensor:
        """``words [B, T, D_in]``, ``mask [B, T]`` -> ``[B, T, D_out]`` (zero at padding)."""
        x = (words * mask.unsqueeze(-1)).transpose(1, 2)  # [B, D_in, T], padding words are zeros
        grams = [torch.tanh(conv(nn.functional.pad(x, (0, window - 1))))
                 for conv, window in zip(self.convs, self.windows)]
        phrases = torch.stack(grams).amax(0).transpose(1, 2)  # eq. 3: element-wise max at each t
        return phrases * mask.unsqueeze(-1)


class NgramBiLSTM(nn.Module):
    """Word vectors -> S ``[B, T, dim]``: :class:`NgramConv`, Bi-LSTM with directions added.

    The input is word vectors ``[B, T, word_dim]``: eq. 1's embeddings, or MiniLM token states in
    their place (:class:`xmodal.nn.word_input.WordInput` gives either). The LSTM runs on packed
    sequences, so the backward direction starts at each text's last real word and padding
    positions come out as zeros. ``dropout`` is applied to the word vectors and to the phrase
    features (the paper uses dropout 0.5 on each layer, section 3.1).
    """

    def __init__(self, word_dim: int, phrase_dim: int, dim: int, dropout: float = 0.0):
        super().__init__()
        self.phrases = NgramConv(word_dim, phrase_dim)
        self.lstm = nn.LSTM(phrase_dim, dim, batch_first=True, bidirectional=True)  # eq. 4
        self.dropout = nn.Dropout(dropout)
        self.dim = dim

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        """``vectors [B, T, word_dim]``, ``lengths [B]``."""
        mask = length_mask(lengths, vectors.shape[1])
        phrases = self.phrases(self.dropout(vectors), mask)
        packed = pack_padded_sequence(self.dropout(phrases), lengths.clamp_min(1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=vectors.shape[1])
        forward, backward = states.split(self.dim, dim=-1)
        return (forward + backward) * mask.unsqueeze(-1)  # eq. 4: the two directions added


class WordLSTM(nn.Module):
    """Words -> one vector ``[B, dim]``: the last hidden state of an LSTM over the word vectors.

    The text model of SCANet's LSTM baseline (Lu et al., Table 3); word vectors as
    :class:`NgramBiLSTM` reads them. Packed sequences, so each text's state is taken after its own
    last word.
    """

    def __init__(self, word_dim: int, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(word_dim, dim, batch_first=True)
        self.dim = dim

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(vectors, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return hidden[-1] * (lengths > 0).unsqueeze(-1)  # an empty text is a zero vector


class KimCNN(nn.Module):
    """Words -> one vector ``[B, len(windows) * filters]`` (Kim, EMNLP 2014): convolutions of several
    window sizes with ReLU, max over time, concatenated.

    The text model of SCANet's CNN baseline (Lu et al., Table 3, citing Kim). Windows run over the
    valid words only (padding is masked out of the max); a text shorter than a window is
    zero-padded on the right for it.
    """

    def __init__(self, word_dim: int, filters: int, windows: tuple[int, ...] = (3, 4, 5)):
        super().__init__()
        self.windows = windows
        self.convs = nn.ModuleList(nn.Conv1d(word_dim, filters, window) for window in windows)
        self.dim = filters * len(windows)

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        mask = length_mask(lengths, vectors.shape[1])
        x = (vectors * mask.unsqueeze(-1)).transpose(1, 2)  # [B, D, T]
        pooled = []
        for conv, window in zip(self.convs, self.windows):
            padded = nn.functional.pad(x, (0, max(0, window - x.shape[2])))
            features = torch.relu(conv(padded))  # [B, F, T - window + 1]
            # a window is valid when it starts at a position whose whole span is real words (or at 0)
            starts = torch.arange(features.shape[2], device=vectors.device)
            valid = (starts[None, :] + window <= lengths[:, None].clamp_min(window)).unsqueeze(1)
            pooled.append(features.masked_fill(~valid, 0.0).amax(2))
        return torch.cat(pooled, dim=1)


class AveragedBiRNN(nn.Module):
    """Bi-directional LSTM or GRU whose two directions are averaged (BSSAN section IV-B, merge mode
    "average"; SCAN section 3.4, a bi-directional GRU).

    ``vectors [B, T, in_dim]`` with ``lengths [B]`` -> ``[B, T, dim]``, zero at padding; runs on
    packed sequences, so the backward direction starts at each text's last real word.
    """

    def __init__(self, in_dim: int, dim: int, cell: type[nn.LSTM] | type[nn.GRU] = nn.LSTM):
        super().__init__()
        self.rnn = cell(in_dim, dim, batch_first=True, bidirectional=True)
        self.dim = dim

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(vectors, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=vectors.shape[1])
        forward, backward = states.split(self.dim, dim=-1)
        return (forward + backward) / 2 * length_mask(lengths, vectors.shape[1]).unsqueeze(-1)


class LastStateGRU(nn.Module):
    """A GRU's state after each sequence's last real step, ``[B, dim]`` (a light sentence vector)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.gru = nn.GRU(in_dim, dim, batch_first=True)

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(vectors, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        return self.gru(packed)[1][0]
