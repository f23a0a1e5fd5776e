"""Metrics against hand-worked values (ranks are 1-based, one target per example)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import llmrec.eval.metrics as metrics_module
from llmrec.eval.metrics import (
    coverage_at_k,
    mrr,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    summarize,
)

RANKS = np.array([1, 3, 11])


def test_recall_at_k_hand_values() -> None:
    np.testing.assert_array_equal(recall_at_k(RANKS, 10), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(recall_at_k(RANKS, 1), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(recall_at_k(RANKS, 11), [1.0, 1.0, 1.0])


def test_precision_at_k_is_hit_over_k() -> None:
    np.testing.assert_allclose(precision_at_k(RANKS, 5), [0.2, 0.2, 0.0])


def test_ndcg_at_k_hand_values() -> None:
    # rank 1 -> 1/log2(2) = 1; rank 3 -> 1/log2(4) = 1/2; rank 11 is outside the cut-off.
    np.testing.assert_allclose(ndcg_at_k(RANKS, 10), [1.0, 0.5, 0.0])
    assert ndcg_at_k(RANKS, 10).mean() == pytest.approx((1 + 1 / 2 + 0) / 3)
    np.testing.assert_allclose(ndcg_at_k(np.array([2.0]), 5), [1 / math.log2(3)])


def test_mrr_at_k_truncates_and_mrr_does_not() -> None:
    np.testing.assert_allclose(mrr_at_k(RANKS, 10), [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(mrr(RANKS), [1.0, 1 / 3, 1 / 11])


def test_summarize_hand_values() -> None:
    out = summarize(RANKS, ks=(1, 10))
    assert set(out) == {
        "recall@1", "hit@1", "precision@1", "ndcg@1", "mrr@1",
        "recall@10", "hit@10", "precision@10", "ndcg@10", "mrr@10",
        "mrr",
    }  # fmt: skip
    assert out["recall@10"] == pytest.approx(2 / 3)
    assert out["hit@10"] == out["recall@10"]
    assert out["precision@10"] == pytest.approx(2 / 30)
    assert out["ndcg@10"] == pytest.approx(0.5)
    assert out["mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 3)
    assert out["recall@1"] == pytest.approx(1 / 3)
    assert out["ndcg@1"] == pytest.approx(1 / 3)


def test_summarize_default_ks() -> None:
    out = summarize(RANKS)
    assert {"recall@1", "recall@5", "recall@10", "recall@20", "mrr"} <= set(out)
    assert out["recall@20"] == 1.0


def test_summarize_empty_gives_nan() -> None:
    out = summarize(np.array([], dtype=np.int64), ks=(10,))
    assert all(math.isnan(v) for v in out.values())


def test_metrics_reject_bad_ranks_and_k() -> None:
    with pytest.raises(ValueError, match="1-based"):
        recall_at_k(np.array([0, 1]), 10)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(RANKS, 0)
    with pytest.raises(ValueError, match="1-D"):
        mrr(np.ones((2, 2)))


def test_coverage_at_k_counts_distinct_items_ignoring_padding() -> None:
    topk = np.array([[1, 2], [2, 0], [4, 4]])
    assert coverage_at_k(topk, n_items=8) == pytest.approx(3 / 8)
    with pytest.raises(ValueError):
        coverage_at_k(np.array([1, 2]), n_items=8)


def test_metrics_module_imports_only_numpy_and_stdlib() -> None:
    # eval.metrics must know nothing of models or data: numpy/torch plus typing-only stdlib at most.
    tree = ast.parse(Path(metrics_module.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "collections", "numpy", "torch"}
