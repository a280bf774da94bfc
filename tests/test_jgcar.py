"""JGCAR: text encoder (eqs. 1-4), co-attention (eqs. 11-15) against the paper's formulas, the
batched block scores against pair-by-pair ones, and the variants' training terms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xmodal.errors import XmodalError
from xmodal.models.base import Batch, InputSpec
from xmodal.models.registry import create_model
from xmodal.nn.coattention import CoAttention, Side
from xmodal.nn.pooling import length_mask
from xmodal.nn.sequence import NgramBiLSTM, NgramConv

N_REGIONS, IMAGE_DIM, WORD_DIM, VOCAB = 6, 10, 8, 40


# -- text encoder ------------------------------------------------------------------------------
def test_ngram_conv_takes_max_of_tanh_windows_with_right_zero_padding():
    conv = NgramConv(1, 1)
    with torch.no_grad():
        for layer, weights in zip(conv.convs, ([1.0], [1.0, -1.0], [0.0, 0.0, 1.0])):
            layer.weight.copy_(torch.tensor(weights).view(1, 1, -1))
            layer.bias.zero_()
    words = torch.tensor([[0.5, -1.0, 0.25], [0.5, -1.0, 7.0]]).unsqueeze(-1)  # 2nd: length 2, "7" is padding
    out = conv(words, length_mask(torch.tensor([3, 2]), 3)).squeeze(-1)
    # unigram x_t; bigram x_t - x_{t+1}; trigram x_{t+2}; zeros past the end (and at padding).
    expected = torch.tanh(torch.tensor([[max(0.5, 1.5, 0.25), max(-1.0, -1.25, 0.0), max(0.25, 0.25, 0.0)],
                                        [max(0.5, 1.5, 0.0), max(-1.0, -1.0, 0.0), 0.0]]))
    torch.testing.assert_close(out, expected)


def test_bilstm_adds_directions_and_ignores_padding():
    torch.manual_seed(0)
    encoder = NgramBiLSTM(WORD_DIM, phrase_dim=12, dim=5).eval()
    vectors = torch.randn(2, 6, WORD_DIM)
    vectors[0, 3:] = 0  # the first text has 3 words
    lengths = torch.tensor([3, 6])
    states = encoder(vectors, lengths)
    assert states.shape == (2, 6, 5)
    assert torch.all(states[0, 3:] == 0)
    alone = encoder(vectors[:1, :3], lengths[:1])  # the same text without padding
    torch.testing.assert_close(states[0, :3], alone[0])
    # Reference: the LSTM run on the unpadded phrases; forward half + backward half (eq. 4).
    phrases = encoder.phrases(vectors[:1, :3], torch.ones(1, 3, dtype=torch.bool))
    both, _ = encoder.lstm(phrases)
    torch.testing.assert_close(states[0, :3], both[0, :, :5] + both[0, :, 5:])


# -- co-attention ------------------------------------------------------------------------------
def random_coattention(dim: int = 7, hidden: int = 5, regions: int = N_REGIONS, **kwargs) -> CoAttention:
    torch.manual_seed(1)
    module = CoAttention(dim, hidden, regions, **kwargs)
    with torch.no_grad():  # non-zero biases so eq. 12's b_v and b_s are exercised
        module.region_bias.normal_()
        module.word_bias.normal_()
    return module


def paper_pair(module: CoAttention, regions: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Eqs. 11-15 for one pair in the paper's column layout: V [d, N], S [d, T] (no padding)."""
    v, s = regions.T, words.T
    affinity = s.T @ module.bilinear.weight @ v  # eq. 11, [T, N]
    w_v, w_s = module.image_proj.weight, module.text_proj.weight  # [l, d]
    h_v = torch.tanh(w_v @ v + module.region_bias.T) * torch.tanh(w_s @ s @ affinity)  # eq. 12, [l, N]
    h_s = torch.tanh(w_s @ s + module.word_bias[:, None]) * torch.tanh(w_v @ v @ affinity.T)  # [l, T]
    a_v = torch.softmax(module.image_score @ h_v, dim=0)  # eq. 13
    a_s = torch.softmax(module.text_score @ h_s, dim=0)
    v_bar, s_bar = v @ a_v, s @ a_s  # eq. 14
    return nn.functional.cosine_similarity(v_bar, s_bar, dim=0), a_v, a_s  # eq. 15


def sides(module: CoAttention, regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor
          ) -> tuple[Side, Side]:
    mask = length_mask(lengths, words.shape[1])
    return module.images(regions), module.texts(words * mask.unsqueeze(-1), mask)


def random_block(n_images: int = 5, n_texts: int = 7, dim: int = 7) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(2)
    regions = torch.randn(n_images, N_REGIONS, dim, generator=generator)
    lengths = torch.tensor([3, 1, 6, 2, 5, 4, 6][:n_texts])
    words = torch.randn(n_texts, int(lengths.max()), dim, generator=generator)
    return regions, words * length_mask(lengths, words.shape[1]).unsqueeze(-1), lengths


def test_attend_matches_the_paper_equations_for_one_pair():
    module = random_coattention()
    regions, words, lengths = random_block()
    with torch.no_grad():
        attended = module.aligned(*sides(module, regions[2:3], words[0:1], lengths[0:1]))
        score, a_v, a_s = paper_pair(module, regions[2], words[0, : lengths[0]])
    torch.testing.assert_close(attended.scores()[0], score)
    torch.testing.assert_close(attended.image_weights[0], a_v)
    torch.testing.assert_close(attended.text_weights[0, :3], a_s)
    assert torch.all(attended.text_weights[0, 3:] == 0)  # padding gets no attention


@pytest.mark.parametrize("chunk_elements, text_group", [(1 << 23, 64), (40, 2)])
def test_block_scores_equal_pair_by_pair_paper_scores(chunk_elements, text_group):
    module = random_coattention(chunk_elements=chunk_elements, text_group=text_group)
    regions, words, lengths = random_block()
    with torch.no_grad():
        block = module.all_scores(*sides(module, regions, words, lengths))
        expected = torch.stack([torch.stack([paper_pair(module, regions[i], words[j, : lengths[j]])[0]
                                             for j in range(len(words))]) for i in range(len(regions))])
    assert block.shape == (5, 7)
    torch.testing.assert_close(block, expected, atol=1e-5, rtol=1e-5)


def test_checkpointed_chunks_give_the_unchunked_gradients():
    regions, words, lengths = random_block()
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij")
    grads = []
    for chunk_elements in (None, 1 << 23, 40):  # plain autograd; one chunk; many chunks and text groups
        module = random_coattention(chunk_elements=chunk_elements or 1, text_group=3)
        if chunk_elements is None:  # every pair spelled out, no checkpointing
            pairs = rows.flatten(), cols.flatten()
            image_side, text_side = sides(module, regions[pairs[0]], words[pairs[1]], lengths[pairs[1]])
            attended = module.aligned(image_side, text_side)
            image, text = attended.image.view(5, 7, -1), attended.text.view(5, 7, -1)
        else:
            image, text = module.all_features(*sides(module, regions, words, lengths))
        (image.square().sum() + (image * text).sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in module.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[2], grads[0], atol=1e-5, rtol=1e-4)


# -- the model ---------------------------------------------------------------------------------
def make_model(**params) -> tuple:
    generator = torch.Generator().manual_seed(3)
    spec = InputSpec(image="regions", text="words", image_dim=IMAGE_DIM, text_dim=WORD_DIM, image_regions=N_REGIONS,
                     grid_side=None, vocab_size=VOCAB, word_vectors=torch.randn(VOCAB, WORD_DIM, generator=generator),
                     n_classes=3)
    torch.manual_seed(0)
    defaults = {"dim": 8, "phrase_dim": 12, "attention_dim": 6, "m_prime": 3}
    model = create_model("jgcar", spec, defaults | params).eval()
    items = torch.tensor([0, 1, 2, 3, 4, 5, 0, 6])  # pairs 0 and 6 share an image
    lengths = torch.tensor([2, 5, 1, 3, 4, 5, 3, 2])
    ids = torch.randint(1, VOCAB, (8, 5), generator=generator) * length_mask(lengths, 5)
    images = {"regions": torch.randn(7, N_REGIONS, IMAGE_DIM, generator=generator)[items.clamp_max(6)]}
    labels = nn.functional.one_hot(items % 3, 3).float()
    return model, Batch(images, {"ids": ids, "lengths": lengths}, items, labels)


def test_model_block_similarity_equals_single_pairs():
    model, batch = make_model()
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        block = model.similarity(images, texts)
        singles = torch.tensor([[float(model.similarity({k: v[i : i + 1] for k, v in images.items()},
                                                        {k: v[j : j + 1] for k, v in texts.items()}))
                                 for j in range(8)] for i in range(8)])
    torch.testing.assert_close(block, singles, atol=1e-5, rtol=1e-5)
    assert block[0, 6] == pytest.approx(float(block[6, 6]), abs=1e-6)  # one image, same score
    assert model.embed(images).shape == (8, 8)


def test_explain_returns_attention_over_regions_and_valid_words():
    model, batch = make_model()
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        attention = model.explain({k: v[1:2] for k, v in images.items()}, {k: v[1:2] for k, v in texts.items()})
    image, text = attention.maps["image"], attention.maps["text"]
    assert image.axes == ("region",) and text.axes == ("word",)
    assert image.weights.shape == (N_REGIONS,) and text.weights.shape == (5,)
    assert float(image.weights.sum()) == pytest.approx(1.0)
    assert float(text.weights.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("params, terms", [
    ({}, {"J1", "J2", "J3", "J4", "J_G", "J_C", "total"}),
    ({"use_intra": False}, {"J1", "J4", "J_G", "J_C", "total"}),  # JGCAR-v1
    ({"use_decorrelation": False}, {"J1", "J2", "J3", "J_G", "J_C", "total"}),  # JGCAR-v2
    ({"mode": "global"}, {"J1", "J2", "J3", "J4", "J_G", "total"}),  # GRL
])
def test_variants_train_the_terms_of_their_rows(params, terms):
    model, batch = make_model(**params)
    out = model.loss(batch)
    assert set(out) == terms
    torch.testing.assert_close(out["J_G"], sum(out[key] for key in ("J1", "J2", "J3", "J4") if key in out))
    beta = 1.0 if params.get("mode") == "global" else 0.5
    expected = beta * out["J_G"] + (1 - beta) * out.get("J_C", 0.0)
    torch.testing.assert_close(out["total"], expected)


def test_grl_scores_by_global_cosine_and_has_no_coattention():
    model, batch = make_model(mode="global")
    assert model.coattention is None
    with torch.no_grad():
        images, texts = model.encode_images(batch.images), model.encode_texts(batch.texts)
        scores = model.similarity(images, texts)
    expected = nn.functional.cosine_similarity(images["embedding"][:, None], texts["embedding"][None], dim=-1)
    torch.testing.assert_close(scores, expected)
    assert set(images) == {"embedding"}


def test_sgcar_trains_two_separate_networks():
    model, batch = make_model(mode="separate")
    terms = model.loss(batch)
    both = list(model.encoder.parameters()) + list(model.global_encoder.parameters())
    grads_g = torch.autograd.grad(terms["J_G"], both, allow_unused=True, retain_graph=True)
    n_coattentive = len(list(model.encoder.parameters()))
    assert all(g is None for g in grads_g[:n_coattentive])  # J_G never reaches the co-attention network
    assert any(g is not None and g.abs().sum() > 0 for g in grads_g[n_coattentive:])
    grads_c = torch.autograd.grad(terms["J_C"], list(model.global_encoder.parameters()), allow_unused=True)
    assert all(g is None for g in grads_c)
    with torch.no_grad():  # the first stage embeds with the global network
        images = model.encode_images(batch.images)
        torch.testing.assert_close(images["embedding"], model.global_encoder.images(batch.images).mean(1))


def test_intra_modal_losses_need_labels_but_v1_does_not():
    model, batch = make_model()
    unlabelled = Batch(batch.images, batch.texts, batch.items, None)
    with pytest.raises(XmodalError, match="use_intra=false"):
        model.loss(unlabelled)
    model_v1, _ = make_model(use_intra=False)
    assert torch.isfinite(model_v1.loss(unlabelled)["total"])


def test_coattention_batch_limits_j_c_to_the_first_pairs():
    model, batch = make_model(coattention_batch=4)
    first = Batch({k: v[:4] for k, v in batch.images.items()}, {k: v[:4] for k, v in batch.texts.items()},
                  batch.items[:4], batch.labels[:4])
    full_model, _ = make_model()
    full_model.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.loss(batch)["J_C"], full_model.loss(first)["J_C"])
    torch.testing.assert_close(model.loss(batch)["J_G"], full_model.loss(batch)["J_G"])


# -- learning ----------------------------------------------------------------------------------
def test_trained_coattention_attends_to_the_one_region_and_word_that_carry_the_answer():
    """A toy retrieval task: each image is background regions plus its item's code at one random
    region, each text filler words plus the item's word at one random position. Uniform attention
    (what JGCAR learned on emoji before J4 was made scale-free) dilutes the code eight-fold; the
    co-attention must find it, from J_G + J_C alone, in 100 RMSprop steps."""
    regions, dim, n_items, length, vocab = 8, 16, 12, 4, 40
    generator = torch.Generator().manual_seed(0)
    codes, background = 2 * torch.randn(n_items, dim, generator=generator), torch.randn(dim, generator=generator)
    spec = InputSpec(image="regions", text="words", image_dim=dim, text_dim=8, image_regions=regions,
                     vocab_size=vocab, word_vectors=torch.randn(vocab, 8, generator=generator))
    torch.manual_seed(0)
    model = create_model("jgcar", spec, {"dim": 16, "phrase_dim": 16, "attention_dim": 16, "m_prime": 8,
                                         "use_intra": False, "dropout": 0.0})

    def sample(size: int, gen: torch.Generator) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        items, rows = torch.randint(n_items, (size,), generator=gen), torch.arange(size)
        images = background + 0.5 * torch.randn(size, regions, dim, generator=gen)
        where = torch.randint(regions, (size,), generator=gen)
        images[rows, where] = codes[items]
        ids = torch.randint(n_items + 1, vocab, (size, length), generator=gen)  # filler words
        word = torch.randint(length, (size,), generator=gen)
        ids[rows, word] = items + 1
        return Batch({"regions": images}, {"ids": ids, "lengths": torch.full((size,), length)}, items), where, word

    optimizer = torch.optim.RMSprop(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = model.loss(sample(32, generator)[0])["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    batch, where, word = sample(200, torch.Generator().manual_seed(1))
    with torch.no_grad():
        sides = model._sides(model.encode_images(batch.images), model.encode_texts(batch.texts))
        attended = model.coattention.aligned(*sides)
    rows = torch.arange(200)
    assert attended.image_weights[rows, where].mean() > 0.5  # uniform: 1/8
    assert attended.text_weights[rows, word].mean() > 0.5  # uniform: 1/4
