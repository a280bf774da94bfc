"""Text coverage of the frozen encoders (GloVe word tokens, MiniLM word pieces) on English and Chinese."""

from __future__ import annotations

import logging

from xmodal.data.records import Dataset, Item
from xmodal.encoders.coverage import dataset_coverage, glove_coverage, minilm_coverage, text_coverage, warn_if_low

ENGLISH = ["A dog runs on the beach.", "two cats sleeping on a sofa"]
CHINESE = ["一只狗在海滩上奔跑。", "两只猫在睡觉", "鳄鱼在河里游泳"]


def test_english_is_known_to_both_encoders():
    glove = glove_coverage(ENGLISH)
    assert (glove.known, glove.total, glove.texts) == (12, 12, 2)
    minilm = minilm_coverage(ENGLISH, max_tokens=64)
    assert minilm.share == 1.0 and minilm.truncated == 0 and minilm.limit == 64


def test_chinese_is_mostly_unknown_and_long_texts_are_counted_as_cut():
    glove, minilm = text_coverage(CHINESE, max_tokens=8)
    # The word tokenizer splits CJK into single characters; GloVe 6B knows 1 of the 22 (4.5%).
    assert (glove.known, glove.total) == (1, 22)
    assert 0 < minilm.share < 0.8  # MiniLM's vocabulary holds few CJK characters: most are [UNK]
    # 10 (with the full stop), 6 and 7 characters, one piece each, plus [CLS] and [SEP]: two exceed 8.
    assert minilm.total == 23 and minilm.truncated == 2
    assert minilm_coverage(["keycap " * 40], max_tokens=64).truncated == 1


def test_one_warning_names_the_vocabulary_free_kind(caplog):
    with caplog.at_level(logging.WARNING, logger="xmodal.encoders.coverage"):
        assert not warn_if_low("en", text_coverage(ENGLISH, 64))
        assert warn_if_low("zh", text_coverage(CHINESE, 64))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "dataset 'zh'" in message and "glove 5%" in message and "tfidf" in message


def test_dataset_coverage_lines(tmp_path, caplog):
    items = [Item(str(i), tmp_path / f"{i}.png", (text,), (), "train") for i, text in enumerate(CHINESE)]
    with caplog.at_level(logging.WARNING):
        lines = dataset_coverage(Dataset("zh", items), max_tokens=64)
    assert lines[0].startswith("glove") and "4.5% of 22 word tokens" in lines[0]
    assert lines[1].startswith("minilm") and "0 of 3 texts cut at 64 tokens" in lines[1]
    assert any("tfidf" in record.getMessage() for record in caplog.records)


def test_no_coverage_without_raw_texts():
    from xmodal.data.records import FeatureRow

    items = [Item("0", FeatureRow("image", 0), (FeatureRow("text", 0),), (), "train")]
    assert dataset_coverage(Dataset("vectors", items)) == []
