"""Ranking metrics for next-item prediction with a single target per example.

Every metric here is a pure function of the 1-based rank of the one true next item among all candidates
(see `llmrec.eval.evaluate.compute_ranks`). With one target, Recall@k equals HR@k (so `hit@k` is reported
as an alias for readers who know that name), Precision@k is the hit divided by k, and NDCG@k has an ideal
DCG of 1, so it is simply 1 / log2(rank + 1) inside the cut-off.

Ranks are expected to be pessimistic on ties (rank = 1 + items scored strictly higher + other items scored
equal): a constant-score model then ranks every target last instead of first, and popularity baselines,
which tie many items, are not flattered.

This module knows nothing of models or data: it imports numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_KS",
    "coverage_at_k",
    "mrr",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "summarize",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)

FloatArray = npt.NDArray[np.float64]


def _as_ranks(ranks: npt.ArrayLike) -> FloatArray:
    """Validate ranks once so each metric can assume a 1-D float array of values >= 1."""
    out = np.asarray(ranks, dtype=np.float64)
    if out.ndim != 1:
        raise ValueError(f"ranks must be 1-D, got shape {out.shape}")
    if out.size and not (np.all(np.isfinite(out)) and out.min() >= 1):
        raise ValueError("ranks must be finite and >= 1 (ranks are 1-based)")
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def recall_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    """Per-example Recall@k = HR@k: 1.0 when the target is within the top k, else 0.0.  [N] -> [N]"""
    _check_k(k)
    r = _as_ranks(ranks)
    return (r <= k).astype(np.float64)


def precision_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    """Per-example Precision@k: hits among the k recommended items / k (at most 1/k with one target)."""
    return recall_at_k(ranks, k) / k


def ndcg_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    """Per-example NDCG@k: 1 / log2(rank + 1) within the cut-off, else 0 (ideal DCG is 1 with one target)."""
    _check_k(k)
    r = _as_ranks(ranks)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def mrr_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    """Per-example reciprocal rank truncated at k: 1 / rank within the cut-off, else 0."""
    _check_k(k)
    r = _as_ranks(ranks)
    return np.where(r <= k, 1.0 / r, 0.0)


def mrr(ranks: npt.ArrayLike) -> FloatArray:
    """Per-example reciprocal rank over the full ranking (no cut-off)."""
    return 1.0 / _as_ranks(ranks)


def summarize(ranks: npt.ArrayLike, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean of every metric over the examples, keyed like ``recall@10``.

    Keys, for each k in ks: ``recall@k``, ``hit@k`` (same value as recall), ``precision@k``, ``ndcg@k``,
    ``mrr@k``; then ``mrr``. An empty input gives NaN for every metric: a mean over no users is undefined,
    and 0.0 would read as a real (terrible) score.
    """
    r = _as_ranks(ranks)
    empty = r.size == 0

    def mean(values: FloatArray) -> float:
        return float("nan") if empty else float(values.mean())

    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = mean(recall_at_k(r, k))
        out[f"hit@{k}"] = out[f"recall@{k}"]
        out[f"precision@{k}"] = mean(precision_at_k(r, k))
        out[f"ndcg@{k}"] = mean(ndcg_at_k(r, k))
        out[f"mrr@{k}"] = mean(mrr_at_k(r, k))
    out["mrr"] = mean(mrr(r))
    return out


def coverage_at_k(topk_items: npt.ArrayLike, n_items: int) -> float:
    """Catalogue coverage: fraction of the items 1..n_items that appear in at least one top-k list.

    topk_items: [N, K] item ids. Ids outside 1..n_items (0 = padding, used when fewer than K candidates
    remained) are ignored rather than counted, so padding never inflates coverage.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    items = np.asarray(topk_items)
    if items.ndim != 2:
        raise ValueError(f"topk_items must be [N, K], got shape {items.shape}")
    flat = items.ravel().astype(np.int64)
    flat = flat[(flat >= 1) & (flat <= n_items)]
    return float(np.unique(flat).size / n_items)
