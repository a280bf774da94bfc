"""How much of a collection's text each frozen text encoder knows, before training on it (a trained
run's check of one search query is :mod:`xmodal.search.query_check`).

GloVe covers a word token only if it has a vector (unknown words become ``<unk>``); MiniLM
splits any word into word pieces, but a character outside its vocabulary becomes ``[UNK]`` and
a text longer than ``max_text_tokens`` is cut. Both are English vocabularies: a collection in
another language (Chinese, say) is mostly unknown to them, which a user should hear before
training, with the input kind that needs no such vocabulary (``tfidf``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from xmodal.data.records import Dataset, all_texts
from xmodal.encoders.glove import glove_index
from xmodal.encoders.minilm import DEFAULT_MAX_TOKENS, load_tokenizer
from xmodal.encoders.tokenize import tokenize

logger = logging.getLogger(__name__)

LOW_SHARE = 0.8  # below this share of known tokens, warn
VOCABULARY_FREE_KINDS = ("tfidf",)  # text input kinds that do not depend on an English vocabulary


@dataclass(frozen=True)
class Coverage:
    encoder: str  # "glove" or "minilm"
    unit: str  # what is counted: "word tokens", "word pieces"
    known: int
    total: int
    texts: int
    truncated: int = 0  # texts cut by the length limit
    limit: int | None = None  # the length limit (tokens, special tokens included), if any

    @property
    def share(self) -> float:
        return self.known / self.total if self.total else 1.0


def glove_coverage(texts: Sequence[str]) -> Coverage:
    """The share of word tokens (:func:`~xmodal.encoders.tokenize.tokenize`) that have a GloVe vector."""
    index = glove_index()
    tokens = [token for text in texts for token in tokenize(text)]
    return Coverage("glove", "word tokens", sum(token in index for token in tokens), len(tokens), len(texts))


def minilm_coverage(texts: Sequence[str], max_tokens: int, tokenizer=None) -> Coverage:
    """The share of MiniLM word pieces that are not ``[UNK]``, and the texts longer than ``max_tokens``."""
    if tokenizer is None:
        tokenizer = load_tokenizer()
    pieces = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    unknown = tokenizer.unk_token_id
    specials = tokenizer.num_special_tokens_to_add()  # [CLS] and [SEP] count towards the limit
    total = sum(len(ids) for ids in pieces)
    known = total - sum(ids.count(unknown) for ids in pieces)
    truncated = sum(len(ids) + specials > max_tokens for ids in pieces)
    return Coverage("minilm", "word pieces", known, total, len(texts), truncated, max_tokens)


def text_coverage(texts: Sequence[str], max_tokens: int) -> list[Coverage]:
    """Coverage of every frozen text encoder over ``texts``."""
    return [glove_coverage(texts), minilm_coverage(texts, max_tokens)]


def format_coverage(reports: Sequence[Coverage]) -> list[str]:
    """One line per encoder, for ``xmodal data info`` and ``xmodal extract``."""
    lines = []
    for report in reports:
        line = f"{report.encoder:<7} knows {report.share:6.1%} of {report.total} {report.unit}"
        if report.limit is not None:
            line += f"; {report.truncated} of {report.texts} texts cut at {report.limit} tokens"
        lines.append(line)
    return lines


def warn_if_low(dataset: str, reports: Sequence[Coverage], threshold: float = LOW_SHARE) -> bool:
    """Log one WARNING when an encoder knows less than ``threshold`` of the tokens; say whether it did."""
    low = [f"{report.encoder} {report.share:.0%}" for report in reports if report.share < threshold]
    if low:
        logger.warning("dataset %r: the text encoders know few of its tokens (%s, below %.0f%%); the text input "
                       "%s needs no English vocabulary (--set data.text_input=%s)", dataset, ", ".join(low),
                       100 * threshold, " or ".join(VOCABULARY_FREE_KINDS), VOCABULARY_FREE_KINDS[0])
    return bool(low)


def dataset_coverage(dataset: Dataset, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[str]:
    """The coverage lines of a dataset's raw texts (none when it ships text features); warns when low."""
    if dataset.text_kind != "raw":
        return []
    texts = [text for _, text in all_texts(dataset.items)]
    reports = text_coverage(texts, max_tokens)
    warn_if_low(dataset.name, reports)
    return format_coverage(reports)
