"""Two-stage search: K = all candidates reproduces exhaustive ranking; shortlists and the full
score matrix behave as documented; reranking scores exactly the shortlisted pairs, one call per image."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from doubles import PassThrough
from test_jgcar import make_model
from xmodal.eval.metrics import direction_metrics, evaluate_retrieval
from xmodal.eval.protocol import score_matrix
from xmodal.eval.two_stage import TwoStageResult, rerank, score_pairs, two_stage_scores, two_stage_search
from xmodal.models.base import Rep, take


def encoded_jgcar():
    model, batch = make_model()
    with torch.no_grad():
        return model, model.encode_images(batch.images), model.encode_texts(batch.texts), batch


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_k_equal_to_all_candidates_reproduces_exhaustive_ranking(direction):
    model, images, texts, _ = encoded_jgcar()
    images = take(images, torch.tensor([0, 1, 2, 3, 4, 5, 7]))  # row 6 repeats image 0: exact ties
    exhaustive = score_matrix(model, images, texts, image_block=3, text_block=5)
    result = two_stage_search(model, images, texts, k=100, direction=direction)  # k is cut to all candidates
    full = exhaustive if direction == "i2t" else exhaustive.T
    assert result.indices.shape == ((7, 8) if direction == "i2t" else (8, 7))
    torch.testing.assert_close(result.scores, full.sort(dim=1, descending=True).values, atol=1e-5, rtol=1e-5)
    assert torch.equal(result.indices, full.argsort(dim=1, descending=True, stable=True))
    matrix = result.score_matrix()
    torch.testing.assert_close(matrix, exhaustive, atol=1e-5, rtol=1e-5)


class ReversedModel(PassThrough):
    """Global vectors rank one way; ``similarity`` (minus the cosine) ranks the opposite way."""

    name = "reversed"

    def embed(self, rep: Rep) -> Tensor:
        return rep["v"]

    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        unit = torch.nn.functional.normalize
        return -(unit(images["v"], dim=-1) @ unit(texts["v"], dim=-1).T)


def test_shortlist_is_stage_one_and_order_is_stage_two():
    model = ReversedModel()
    images = {"v": torch.tensor([[1.0, 0.0]])}
    texts = {"v": torch.tensor([[1.0, 0.1], [0.0, 1.0], [1.0, 0.5], [1.0, -0.2]])}  # cosines .995, 0, .894, .981
    result = two_stage_search(model, images, texts, k=2, direction="i2t")
    assert result.indices.tolist() == [[3, 0]]  # top 2 by cosine {0, 3}, reranked by -cosine
    torch.testing.assert_close(result.scores, -result.first_stage[:, [3, 0]])
    # Full matrix: the shortlist first (in stage-2 order), then the rest in stage-1 order (2, then 1).
    assert result.score_matrix()[0].argsort(descending=True).tolist() == [3, 0, 2, 1]


def test_score_matrix_transposes_text_queries():
    result = TwoStageResult("t2i", torch.tensor([[1], [0]]), torch.tensor([[0.5], [0.2]]),
                            torch.tensor([[0.1, 0.9], [0.3, 0.2]]))
    matrix = result.score_matrix()  # [n_images=2, n_texts=2]
    assert matrix.shape == (2, 2)
    assert matrix[1, 0] == 0.5 and matrix[0, 1] == 0.2
    assert matrix[0, 0] < 0.2 and matrix[1, 1] < 0.2  # below every shortlisted score


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_rerank_scores_only_the_shortlist_with_one_call_per_image(direction):
    model, images, texts, _ = encoded_jgcar()
    shortlist = torch.tensor([[0, 3, 5], [7, 1, 2], [6, 6, 0]])  # rows: queries (images or texts)
    calls = []

    class Counting:  # the model through the base contract only, counting similarity calls
        def similarity(self, image_block, text_block):
            calls.append((len(image_block["regions"]), len(text_block["words"])))
            return model.similarity(image_block, text_block)

    scores = rerank(Counting(), images, texts, shortlist, direction)
    full = model.similarity(images, texts)
    expected = (full[:3] if direction == "i2t" else full.T[:3]).gather(1, shortlist)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    if direction == "i2t":  # three image queries, each against its three candidates
        assert calls == [(1, 3), (1, 3), (1, 3)]
    else:  # images 0, 1, 2, 3, 5, 6, 7 each against the text queries that shortlisted them
        assert calls == [(1, 2), (1, 1), (1, 1), (1, 1), (1, 1), (1, 2), (1, 1)]


def test_score_pairs_groups_by_image():
    model, images, texts, _ = encoded_jgcar()
    image_index, text_index = torch.tensor([4, 0, 4, 2, 0]), torch.tensor([1, 1, 7, 0, 3])
    scores = score_pairs(model, images, texts, image_index, text_index)
    torch.testing.assert_close(scores, model.similarity(images, texts)[image_index, text_index],
                               atol=1e-5, rtol=1e-5)


def test_direction_metrics_reads_each_direction_from_its_own_matrix():
    model, images, texts, batch = encoded_jgcar()
    gt = batch.items[:, None] == batch.items[None, :]  # image rows repeat item 0 at rows 0 and 6
    i2t, t2i = two_stage_scores(model, images, texts, k=3)
    metrics = direction_metrics(i2t, t2i, gt, recall_ks=(2, 8))
    assert metrics["i2t"] == {**evaluate_retrieval(i2t, gt=gt)["i2t"], "r@2": metrics["i2t"]["r@2"], "r@8": 100.0}
    assert metrics["t2i"]["r@1"] == evaluate_retrieval(t2i, gt=gt)["t2i"]["r@1"]
    assert metrics["rsum"] == pytest.approx(sum(metrics[d][f"r@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))
