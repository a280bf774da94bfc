"""Tests for xmodal.eval.metrics: hand-computed cases, sklearn agreement, blocking, API shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from xmodal.eval.metrics import (
    average_precision,
    evaluate_retrieval,
    first_match_ranks,
    labels_to_multihot,
    mean_average_precision,
    median_rank,
    recall_at_k,
)

# One query, six candidates, scores already in descending order, so the ranking is the
# candidate order and the relevance pattern in rank order is [1, 0, 1, 0, 0, 1].
ONE_SCORES = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
ONE_RELEVANT = torch.tensor([[1, 0, 1, 0, 0, 1]], dtype=torch.bool)


def _sklearn_ap(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per-row AP from sklearn, NaN for rows without a relevant candidate."""
    return np.array([
        average_precision_score(rel, row) if rel.any() else np.nan
        for row, rel in zip(scores, relevant)
    ])


# ----------------------------------------------------------------------------- hand-computed


def test_ap_all_hand_computed() -> None:
    # Relevant at ranks 1, 3, 6: precisions 1/1, 2/3, 3/6 -> AP = (1 + 2/3 + 1/2) / 3.
    ap = average_precision(ONE_SCORES, ONE_RELEVANT)
    assert ap.dtype == torch.float64
    assert ap.tolist() == pytest.approx([(1 + 2 / 3 + 3 / 6) / 3])


def test_ap_at_k_dscmr_convention() -> None:
    # Top 3 is [1, 0, 1]: precisions at the hits 1/1 and 2/3, divided by the 2 hits FOUND in
    # the top 3 (not by the 3 relevant overall): (1 + 2/3) / 2.
    assert average_precision(ONE_SCORES, ONE_RELEVANT, k=3).item() == pytest.approx((1 + 2 / 3) / 2)
    # k=1 finds one hit at rank 1 -> 1.0; k beyond n_candidates equals AP@all.
    assert average_precision(ONE_SCORES, ONE_RELEVANT, k=1).item() == pytest.approx(1.0)
    assert average_precision(ONE_SCORES, ONE_RELEVANT, k=100).item() == pytest.approx(
        (1 + 2 / 3 + 3 / 6) / 3
    )


def test_ap_at_k_zero_when_nothing_found_in_top_k() -> None:
    # Only relevant candidate ranks 4th: AP@3 = 0, AP@all = 1/4.
    relevant = torch.tensor([[0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    assert average_precision(ONE_SCORES, relevant, k=3).item() == 0.0
    assert average_precision(ONE_SCORES, relevant).item() == pytest.approx(0.25)


def test_ap_nan_for_query_without_relevant_candidate() -> None:
    scores = torch.cat([ONE_SCORES, ONE_SCORES])
    relevant = torch.cat([ONE_RELEVANT, torch.zeros_like(ONE_RELEVANT)])
    for k in (None, 3):
        ap = average_precision(scores, relevant, k=k)
        assert not math.isnan(ap[0].item())
        assert math.isnan(ap[1].item())


def test_ties_broken_by_candidate_index() -> None:
    # All scores equal: ranking is candidate order 0..3. Relevant candidate 2 ranks 3rd.
    scores = torch.zeros(1, 4)
    relevant = torch.tensor([[False, False, True, False]])
    assert average_precision(scores, relevant).item() == pytest.approx(1 / 3)
    assert first_match_ranks(scores, relevant).tolist() == [3]
    # Tie between candidates 1 and 3 at the top: 1 ranks first, 3 second.
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.5]])
    assert first_match_ranks(scores, torch.tensor([[False, False, False, True]])).tolist() == [2]
    assert first_match_ranks(scores, torch.tensor([[False, True, False, False]])).tolist() == [1]


def test_ties_broken_by_index_on_large_rows() -> None:
    # Long rows with heavy ties (where an unstable sort would reorder equal scores): results
    # must equal a reference built on numpy's stable argsort of the negated scores.
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 3, (4, 300)).astype(np.float64)
    relevant = rng.random((4, 300)) < 0.2
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    precision = np.cumsum(hits, axis=1) / np.arange(1, 301)
    expected_ap = (precision * hits).sum(axis=1) / hits.sum(axis=1)
    expected_rank = hits.argmax(axis=1) + 1
    np.testing.assert_allclose(average_precision(scores, relevant).numpy(), expected_ap,
                               rtol=1e-12)
    assert first_match_ranks(scores, relevant).tolist() == expected_rank.tolist()


# ----------------------------------------------------------------------------- sklearn agreement


@pytest.mark.parametrize("multi_label", [False, True])
def test_ap_matches_sklearn(multi_label: bool) -> None:
    rng = np.random.default_rng(0)
    n_q, n_c, n_classes = 12, 40, 5
    scores = rng.random((n_q, n_c))
    if multi_label:
        q = rng.random((n_q, n_classes)) < 0.3
        c = rng.random((n_c, n_classes)) < 0.3
        relevant = (q.astype(int) @ c.T.astype(int)) > 0
    else:
        relevant = rng.integers(0, n_classes, n_q)[:, None] == rng.integers(0, n_classes, n_c)
    expected = _sklearn_ap(scores, relevant)
    got = average_precision(scores, relevant).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    assert not np.isnan(expected).all()


@settings(max_examples=40, deadline=None)
@given(
    n_q=st.integers(1, 6),
    n_c=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.05, 0.9),
    block_size=st.integers(1, 8),
)
def test_ap_matches_sklearn_property(n_q: int, n_c: int, seed: int, density: float,
                                     block_size: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n_q * n_c).reshape(n_q, n_c).astype(np.float64)  # no ties
    relevant = rng.random((n_q, n_c)) < density
    got = average_precision(scores, relevant, block_size=block_size).numpy()
    np.testing.assert_allclose(got, _sklearn_ap(scores, relevant), rtol=1e-12, equal_nan=True)


# ----------------------------------------------------------------------------- MAP with labels


def test_map_single_labels_differ_between_sides() -> None:
    # 2 image queries, 4 texts. Image labels [0, 1]; text labels [1, 0, 0, 2].
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5],    # ranking: t0(1) t1(0) t3(2) t2(0)
                           [0.2, 0.3, 0.4, 0.1]])   # ranking: t2(0) t1(0) t0(1) t3(2)
    image_labels = torch.tensor([0, 1])
    text_labels = torch.tensor([1, 0, 0, 2])
    # Query 0 (label 0): relevant at ranks 2, 4 -> (1/2 + 2/4) / 2 = 0.5.
    # Query 1 (label 1): relevant at rank 3 -> 1/3.
    expected = (0.5 + 1 / 3) / 2
    assert mean_average_precision(scores, image_labels, text_labels) == pytest.approx(expected)
    # MAP@2: query 0 finds one hit at rank 2 -> 1/2; query 1 finds none -> 0.
    assert mean_average_precision(scores, image_labels, text_labels, k=2) == pytest.approx(0.25)


def test_map_multi_label_share_one_label() -> None:
    # Query has labels {0, 2}; candidates {2}, {1}, {0, 1}, {} -> relevant 1, 0, 1, 0.
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])  # ranking: c1(0) c3(0) c2(1) c0(1)
    query = labels_to_multihot([[0, 2]], 3)
    candidates = labels_to_multihot([[2], [1], [0, 1], []], 3)
    assert candidates.tolist() == [[False, False, True], [False, True, False],
                                   [True, True, False], [False, False, False]]
    # Hits at ranks 3, 4 -> (1/3 + 2/4) / 2.
    expected = (1 / 3 + 2 / 4) / 2
    assert mean_average_precision(scores, query, candidates) == pytest.approx(expected)
    # Same result from Python lists, float multi-hot, and numpy input.
    assert mean_average_precision(scores.numpy(), [[0, 2]], [[2], [1], [0, 1], []]) == \
        pytest.approx(expected)
    assert mean_average_precision(scores, query.float(), candidates.float()) == \
        pytest.approx(expected)


def test_map_excludes_queries_without_relevant_candidate() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.5, 0.6]])
    # Query 1 has label 7, which no candidate has: excluded, so MAP = AP of query 0 = 1.
    assert mean_average_precision(scores, torch.tensor([0, 7]), torch.tensor([0, 1])) == 1.0
    assert math.isnan(mean_average_precision(scores, torch.tensor([5, 7]), torch.tensor([0, 1])))


def test_map_empty_query_conventions_exclude_and_zero() -> None:
    # Three queries over four candidates (labels 0, 1, 0, 1), scores in candidate order.
    # Query 0 (label 0): relevant at ranks 1, 3 -> AP (1 + 2/3) / 2 = 5/6.
    # Query 1 (label 1): relevant at ranks 2, 4 -> AP (1/2 + 2/4) / 2 = 1/2.
    # Query 2 (label 2): no candidate has label 2 -> AP undefined.
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]] * 3)
    query, candidates = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 0, 1])
    ours = mean_average_precision(scores, query, candidates)
    dscmr = mean_average_precision(scores, query, candidates, empty="zero")
    assert ours == pytest.approx((5 / 6 + 1 / 2) / 2)  # 2/3: query 2 left out
    assert dscmr == pytest.approx((5 / 6 + 1 / 2 + 0) / 3)  # 4/9: query 2 counted as AP 0
    # The DSCMR code's own loop (fx_calc_map_label), written out, gives the same 4/9.
    order = np.argsort(-scores.numpy(), axis=1, kind="stable")
    res = []
    for i in range(3):
        p = r = 0.0
        for j, candidate in enumerate(order[i]):
            if query[i] == candidates[candidate]:
                r += 1
                p += r / (j + 1)
        res.append(p / r if r > 0 else 0)
    assert dscmr == pytest.approx(float(np.mean(res)))
    # The rule reaches MAP@k and evaluate_retrieval as well.
    assert mean_average_precision(scores, query, candidates, k=2, empty="zero") == pytest.approx((1 + 1 / 2) / 3)
    both = evaluate_retrieval(scores, image_labels=query, text_labels=candidates, map_ks=(2,), map_empty="zero")
    assert both["i2t"]["map"] == pytest.approx(dscmr)
    with pytest.raises(ValueError, match="empty: expected one of"):
        mean_average_precision(scores, query, candidates, empty="nan")


def test_map_mixed_single_and_multi_labels() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    single = torch.tensor([1])
    multi = labels_to_multihot([[0], [0, 1], [1]], 2)  # relevant: 0, 1, 1
    assert mean_average_precision(scores, single, multi) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_labels_to_multihot_inputs() -> None:
    assert labels_to_multihot(torch.tensor([2, 0]), 3).tolist() == [[False, False, True],
                                                                    [True, False, False]]
    assert labels_to_multihot([1, 1], 2).tolist() == [[False, True], [False, True]]
    assert labels_to_multihot(np.array([[0, 3.0]]), 2).tolist() == [[False, True]]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        labels_to_multihot([[0, 3]], 3)
    with pytest.raises(ValueError, match="3 columns"):
        labels_to_multihot(torch.zeros(2, 4), 3)


# ----------------------------------------------------------------------------- instance recall


def _recall_case() -> tuple[torch.Tensor, torch.Tensor]:
    """3 images x 6 texts; image i matches texts 2i and 2i+1."""
    gt = torch.zeros(3, 6, dtype=torch.bool)
    for i in range(3):
        gt[i, 2 * i] = gt[i, 2 * i + 1] = True
    scores = torch.tensor([
        [0.9, 0.1, 0.8, 0.7, 0.6, 0.5],  # image 0: text 0 ranks 1st -> rank 1
        [0.9, 0.8, 0.7, 0.1, 0.6, 0.5],  # image 1: texts 2, 3 rank 3rd, 6th -> rank 3
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # image 2: texts 4, 5 rank 5th, 6th -> rank 5
    ])
    return scores, gt


def test_first_match_ranks_hand_built() -> None:
    scores, gt = _recall_case()
    assert first_match_ranks(scores, gt).tolist() == [1, 3, 5]
    # t2i: text columns as queries. Text j's scores over images:
    # t0 [.9,.9,.9] -> image 0 (tie, lowest index) rank 1;  t1 [.1,.8,.8] -> image 0 rank 3;
    # t2 [.8,.7,.7] -> image 1 rank 2;  t3 [.7,.1,.6] -> image 1 rank 3;
    # t4 [.6,.6,.5] -> image 2 rank 3;  t5 [.5,.5,.4] -> image 2 rank 3.
    assert first_match_ranks(scores.T, gt.T).tolist() == [1, 3, 2, 3, 3, 3]


def test_recall_at_k_hand_built() -> None:
    scores, gt = _recall_case()
    result = recall_at_k(scores, gt, ks=(1, 3, 5))
    assert result["r@1"] == pytest.approx(100 / 3)
    assert result["r@3"] == pytest.approx(200 / 3)
    assert result["r@5"] == pytest.approx(100.0)
    assert result["medr"] == 3.0
    assert result["meanr"] == pytest.approx(3.0)
    assert set(result) == {"r@1", "r@3", "r@5", "medr", "meanr"}


def test_medr_is_scan_median_for_even_count() -> None:
    # Ranks [1, 2]: the plain median of 1-based ranks would be 1.5; SCAN / VSE++ take
    # floor(median([0, 1])) + 1 = floor(0.5) + 1 = 1.
    scores = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    gt = torch.tensor([[True, False], [False, True]])
    result = recall_at_k(scores, gt)
    assert result["medr"] == 1.0
    assert result["r@1"] == 50.0


def test_medr_hand_worked_where_conventions_differ() -> None:
    # Four queries with 1-based ranks [1, 3, 4, 8]: np.median gives (3 + 4) / 2 = 3.5;
    # 0-based ranks [0, 2, 3, 7] have median 2.5 -> floor 2 -> medr 3.
    ranks = torch.tensor([1, 3, 4, 8])
    assert float(np.median(ranks.numpy())) == 3.5
    assert median_rank(ranks) == 3.0
    # An odd count has a whole median, and both conventions agree: [2, 5, 9] -> 5.
    assert median_rank(torch.tensor([9, 2, 5])) == 5.0
    # Built as a score matrix: image i's only match is text i, placed at ranks 1, 3, 4, 8.
    order = {0: 1, 1: 3, 2: 4, 3: 8}
    scores = torch.zeros(4, 8)
    gt = torch.zeros(4, 8, dtype=torch.bool)
    for query, rank in order.items():
        others = [c for c in range(8) if c != query]
        ranked = others[: rank - 1] + [query] + others[rank - 1:]
        scores[query, ranked] = torch.linspace(1.0, 0.1, 8)
        gt[query, query] = True
    assert first_match_ranks(scores, gt).tolist() == [1, 3, 4, 8]
    assert recall_at_k(scores, gt)["medr"] == 3.0


def test_first_match_requires_a_match_per_query() -> None:
    with pytest.raises(ValueError, match=r"gt: 1 query row\(s\) have no ground-truth match"):
        first_match_ranks(torch.rand(2, 3), torch.tensor([[True, False, False], [False] * 3]))


# ----------------------------------------------------------------------------- blocking


@pytest.mark.parametrize("block_size", [1, 2, 7, 10_000])
def test_block_size_does_not_change_results(block_size: int) -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (9, 13), generator=gen).float()  # many ties on purpose
    relevant = torch.rand(9, 13, generator=gen) < 0.3
    gt = relevant.clone()
    gt[:, 0] = True
    image_labels = torch.randint(0, 3, (9,), generator=gen)
    text_labels = torch.randint(0, 3, (13,), generator=gen)
    reference_block = 9

    for k in (None, 3):
        torch.testing.assert_close(
            average_precision(scores, relevant, k=k, block_size=block_size),
            average_precision(scores, relevant, k=k, block_size=reference_block),
            equal_nan=True,
        )
    assert torch.equal(first_match_ranks(scores, gt, block_size=block_size),
                       first_match_ranks(scores, gt, block_size=reference_block))
    blocked = evaluate_retrieval(scores, image_labels=image_labels, text_labels=text_labels,
                                 gt=gt, map_ks=(3,), block_size=block_size)
    single = evaluate_retrieval(scores, image_labels=image_labels, text_labels=text_labels,
                                gt=gt, map_ks=(3,), block_size=10_000)
    assert blocked == single


# ----------------------------------------------------------------------------- evaluate_retrieval


def test_evaluate_retrieval_only_applicable_keys() -> None:
    scores, gt = _recall_case()
    image_labels, text_labels = torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1, 1, 0, 1])

    only_gt = evaluate_retrieval(scores, gt=gt)
    recall_keys = {"r@1", "r@5", "r@10", "medr", "meanr"}
    assert set(only_gt) == {"i2t", "t2i", "rsum"}
    assert set(only_gt["i2t"]) == set(only_gt["t2i"]) == recall_keys

    only_labels = evaluate_retrieval(scores, image_labels=image_labels, text_labels=text_labels,
                                     map_ks=(2, 50))
    assert set(only_labels) == {"i2t", "t2i"}
    assert set(only_labels["i2t"]) == set(only_labels["t2i"]) == {"map", "map@2", "map@50"}

    both = evaluate_retrieval(scores, image_labels=image_labels, text_labels=text_labels, gt=gt)
    assert set(both["i2t"]) == recall_keys | {"map", "map@50"}
    for direction in ("i2t", "t2i"):
        assert all(type(v) is float for v in both[direction].values())
    assert type(both["rsum"]) is float


def test_evaluate_retrieval_values_and_rsum() -> None:
    scores, gt = _recall_case()
    result = evaluate_retrieval(scores, gt=gt)
    # i2t ranks [1, 3, 5]: r@1 = 33.3, r@5 = r@10 = 100. t2i ranks [1, 3, 2, 3, 3, 3]:
    # r@1 = 16.7, r@5 = r@10 = 100.
    assert result["i2t"]["r@1"] == pytest.approx(100 / 3)
    assert result["t2i"]["r@1"] == pytest.approx(100 / 6)
    assert result["t2i"]["medr"] == 3.0
    assert result["t2i"]["meanr"] == pytest.approx(15 / 6)
    expected_rsum = sum(result[d][f"r@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert result["rsum"] == pytest.approx(expected_rsum)
    assert result["rsum"] == pytest.approx(100 / 3 + 100 / 6 + 400)


def test_t2i_equals_i2t_of_transposed_problem() -> None:
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(5, 8, generator=gen)
    gt = torch.zeros(5, 8, dtype=torch.bool)
    gt[torch.arange(8) % 5, torch.arange(8)] = True  # each text one image
    image_labels = labels_to_multihot([[0], [1, 2], [2], [0, 1], [3]], 4)
    text_labels = torch.randint(0, 4, (8,), generator=gen)

    forward = evaluate_retrieval(scores, image_labels=image_labels, text_labels=text_labels,
                                 gt=gt, map_ks=(3,))
    backward = evaluate_retrieval(scores.T, image_labels=text_labels, text_labels=image_labels,
                                  gt=gt.T, map_ks=(3,))
    assert forward["t2i"] == backward["i2t"]
    assert forward["i2t"] == backward["t2i"]
    assert forward["rsum"] == pytest.approx(backward["rsum"])
    assert forward["t2i"]["map"] == pytest.approx(
        mean_average_precision(scores.T, text_labels, image_labels)
    )


# ----------------------------------------------------------------------------- validation


def test_shape_mismatch_messages() -> None:
    scores = torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"relevant: expected shape \(3, 4\).*got \(4, 3\)"):
        average_precision(scores, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"gt: expected shape \(3, 4\).*got \(3, 5\)"):
        recall_at_k(scores, torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="candidate_labels: expected 4 rows.*got 3"):
        mean_average_precision(scores, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="image_labels: expected 3 rows.*got 2"):
        evaluate_retrieval(scores, image_labels=[0, 1], text_labels=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"scores: expected a 2-D matrix.*got shape \(4,\)"):
        average_precision(torch.rand(4), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="candidate_labels: expected 3 classes"):
        mean_average_precision(scores, torch.zeros(3, 3), torch.zeros(4, 2))


def test_invalid_arguments() -> None:
    scores, gt = _recall_case()
    with pytest.raises(ValueError, match="block_size"):
        first_match_ranks(scores, gt, block_size=0)
    with pytest.raises(ValueError, match="k: expected a positive integer"):
        average_precision(scores, gt, k=0)
    with pytest.raises(ValueError, match="give both or neither"):
        evaluate_retrieval(scores, image_labels=[0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        average_precision(torch.tensor([[0.1, float("nan")]]), torch.tensor([[True, False]]))
