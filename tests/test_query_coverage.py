"""What a run's text side knows of one query (xmodal.search.query_check), per text input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from xmodal.encoders.tfidf import TfidfEncoder
from xmodal.encoders.tokenize import Vocabulary
from xmodal.search.query_check import query_coverage, query_warning

ENGLISH = ["a dog runs on the grass", "a child plays in a pool", "two dogs chase a ball", "a red car on a road"]
CHINESE = ["狗 在 草地 上 跑", "一个 孩子 在 泳池 里 玩", "两只 狗 追 球", "路上 的 红色 汽车"]


def _pipeline(kind: str, state=None) -> SimpleNamespace:
    """What query_coverage reads of an InputPipeline: the text kinds, their fitted state, the options."""
    return SimpleNamespace(spec=SimpleNamespace(text_parts=(kind,)), state=lambda key: state,
                           options=SimpleNamespace(max_text_tokens=64), encoder=lambda name, build: build())


def test_words_count_the_run_s_own_vocabulary():
    pipeline = _pipeline("words", Vocabulary.build(ENGLISH))
    (report,) = query_coverage(pipeline, "a dog on the sofa")
    assert (report.encoder, report.known, report.total) == ("vocabulary", 4, 5)  # "sofa" is not in it
    assert query_warning(pipeline, "a dog on the sofa") is None
    assert "vocabulary knows 0 of its 1 words" in query_warning(pipeline, "狗")


def test_tfidf_passes_a_query_in_the_run_s_language_and_flags_another():
    chinese = _pipeline("tfidf", TfidfEncoder.fit(CHINESE))
    english = _pipeline("tfidf", TfidfEncoder.fit(ENGLISH))
    assert query_warning(chinese, "狗") is None and query_warning(english, "a dog on the grass") is None
    assert "tfidf knows 0 of its" in query_warning(english, "狗")


def test_tfidf_reads_a_query_whose_word_is_a_column_though_its_character_ngrams_are_not():
    """As on emoji-zh: 狗 is a word of the keywords, but the capped character part kept other n-grams."""
    idf = {"word": np.ones(2, np.float32), "char": np.ones(2, np.float32)}
    encoder = TfidfEncoder({"word": ["狗", "猫"], "char": [" 猫", "猫 "]}, idf)
    pipeline = _pipeline("tfidf", encoder)
    (report,) = query_coverage(pipeline, "狗")
    assert (report.unit, report.known, report.total) == ("words", 1, 1)
    assert query_warning(pipeline, "狗") is None
    assert "tfidf knows 0 of its 1 words" in query_warning(pipeline, "鱼")


def test_minilm_runs_flag_unknown_characters_and_made_up_words():
    pipeline = _pipeline("tokens")
    assert query_warning(pipeline, "a dog running on grass") is None
    pieces, lexicon = query_coverage(pipeline, "qwxzv blorf")
    assert pieces.share == 1.0 and lexicon.share == 0.0  # known word pieces, but no word of them is English
    assert "glove knows 0 of its 2 word tokens" in query_warning(pipeline, "qwxzv blorf")
    assert query_warning(pipeline, "狗") is not None
