"""`words` rows GloVe has no vector for (issue 32): zero, or a fixed random start with data.unknown_words."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from conftest import EMOJI_TARBALLS
from xmodal.config import load_config
from xmodal.features.kinds import word_rows


def test_known_rows_keep_glove_padding_stays_zero_and_the_rest_start_random():
    vectors = np.zeros((5, 3), np.float32)
    vectors[2] = [0.3, -0.6, 0.9]
    vectors[4] = [-0.3, 0.6, 0.0]
    found = np.array([False, False, True, False, True])  # padding, <unk>, a word, an unknown word, a word
    assert torch.equal(word_rows(vectors, found, "zero"), torch.from_numpy(vectors))
    rows = word_rows(vectors, found, "random")
    assert torch.equal(rows[[0, 2, 4]], torch.from_numpy(vectors[[0, 2, 4]]))  # padding and GloVe's rows
    assert rows[1].abs().min() > 0 and rows[3].abs().min() > 0 and not torch.equal(rows[1], rows[3])
    assert torch.equal(rows, word_rows(vectors, found, "random"))  # the same draw every time


@pytest.mark.slow
def test_a_chinese_vocabulary_starts_distinct_and_the_log_says_why(caplog, tmp_path):
    if not (EMOJI_TARBALLS / "emojilib-4.0.3.tgz").is_file():
        pytest.skip("../shared/data/emoji is absent")
    from xmodal.factory import build_data

    config = load_config(None, base={"model": {"name": "dual"}, "data": {
        "dataset": "emoji", "path": str(EMOJI_TARBALLS), "lang": "zh", "image_input": "global", "text_input": "words",
        "unknown_words": "random"}})
    with caplog.at_level(logging.WARNING, logger="xmodal.features.kinds"):
        data = build_data(config, torch.device("cpu"))
    rows = data.spec.word_vectors
    assert "of emoji-zh's vocabulary: they start as random vectors" in caplog.text
    distinct = torch.unique(rows[1:], dim=0)
    assert len(distinct) == len(rows) - 1  # every word its own start (zero rows would all be one)
