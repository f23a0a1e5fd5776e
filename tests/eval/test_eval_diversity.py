"""Beyond-accuracy metrics against hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrec.eval.diversity import (
    coverage_at_k,
    diversity_report,
    gini_exposure,
    intra_list_diversity,
    multi_hot,
    novelty,
    pairwise_similarity,
)

# items 1..4: {a}, {a, b}, {c}, {} ; Jaccard: (1,2) = 1/2, (1,3) = 0, (2,3) = 0, anything with 4 = 0
CATS = [["a"], ["a", "b"], ["c"], None]


def test_multi_hot_rows_follow_item_ids() -> None:
    m, vocab = multi_hot(CATS)
    assert vocab == ["a", "b", "c"]
    np.testing.assert_array_equal(m, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_pairwise_jaccard_and_cosine_by_hand() -> None:
    m, _ = multi_hot(CATS)
    sim = pairwise_similarity(m, [[1, 2, 3, 4]], "jaccard")[0]
    assert sim[0, 1] == pytest.approx(0.5) and sim[1, 0] == pytest.approx(0.5)
    assert sim[0, 2] == 0 and sim[3, 3] == 0  # an item without categories shares nothing, not even with itself
    assert sim[1, 1] == pytest.approx(1.0)
    emb = np.array([[0, 0], [1, 0], [1, 1], [0, 2]], dtype=np.float32)
    cos = pairwise_similarity(emb, [[1, 2, 3]], "cosine")[0]
    assert cos[0, 1] == pytest.approx(1 / math.sqrt(2)) and cos[0, 2] == pytest.approx(0.0)
    assert cos[1, 2] == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="metric"):
        pairwise_similarity(emb, [[1, 2]], "euclid")


def test_intra_list_diversity_by_hand() -> None:
    m, _ = multi_hot(CATS)
    # list [1, 2, 3]: distances 1/2, 1, 1 -> 5/6; list [1, 2, 0]: padding left out -> distance 1/2
    assert intra_list_diversity([[1, 2, 3]], m) == pytest.approx(5 / 6)
    assert intra_list_diversity([[1, 2, 0]], m) == pytest.approx(0.5)
    assert intra_list_diversity([[1, 2, 3], [1, 2, 0]], m) == pytest.approx((5 / 6 + 0.5) / 2)
    assert intra_list_diversity([[1, 0, 0]], m) == 0.0  # no pair at all
    emb = np.array([[0, 0], [1, 0], [1, 1], [0, 2]], dtype=np.float32)
    # cosine distances: (1,2) 1 - 1/√2, (1,3) 1, (2,3) 1 - 1/√2
    assert intra_list_diversity([[1, 2, 3]], emb, "cosine") == pytest.approx((3 - 2 / math.sqrt(2)) / 3)
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        intra_list_diversity([1, 2, 3], m)


def test_coverage_novelty_and_gini_by_hand() -> None:
    lists = np.array([[1, 2], [1, 3], [1, 0]])
    assert coverage_at_k(lists, 4) == pytest.approx(3 / 4)
    # users per item: 1 -> 8, 2 -> 2, 3 -> 0 (counts as 1); U = 8
    users = np.array([0, 8, 2, 0, 4])
    expected = np.mean([0.0, 2.0, 0.0, 3.0, 0.0])  # -log2(8/8), -log2(2/8), -log2(8/8), -log2(1/8), -log2(8/8)
    assert novelty(lists, users, 8) == pytest.approx(expected)
    # exposure counts over items 1..4: [3, 1, 1, 0] -> sorted [0, 1, 1, 3]; Σ(2i-n-1)x = -3*0 -1*1 +1*1 +3*3 = 9
    assert gini_exposure(lists, 4) == pytest.approx(9 / (4 * 5))
    assert gini_exposure([[1, 2], [3, 4]], 4) == pytest.approx(0.0)  # perfectly even
    assert gini_exposure([[1], [1], [1]], 4) == pytest.approx(3 / 4)  # one item takes every slot: (n-1)/n
    assert gini_exposure([[0]], 4) == 0.0 and novelty([[0]], users, 8) == 0.0


def test_diversity_report_keys() -> None:
    m, _ = multi_hot(CATS)
    report = diversity_report([[1, 2, 3]], n_items=4, features=m, item_users=[0, 1, 1, 1, 1], n_users=2)
    assert set(report) == {"ild@3", "coverage@3", "gini@3", "novelty@3"}
    assert report["ild@3"] == pytest.approx(5 / 6) and report["novelty@3"] == pytest.approx(1.0)
