"""Beyond-accuracy metrics of recommendation lists: intra-list diversity, coverage, novelty, exposure inequality.

All functions take the lists as an int array ``[N, K]`` of item ids (1..n_items; 0 = padding, ignored) and are
pure numpy, so they apply to any model's output.

- Intra-list diversity (ILD): the mean pairwise distance between the items of a list, averaged over lists
  (Ziegler et al., "Improving recommendation lists through topic diversification", WWW 2005). Distances are
  ``1 - similarity``, with Jaccard similarity of category sets or cosine similarity of item embeddings.
- Catalogue coverage: ``llmrec.eval.metrics.coverage_at_k`` (re-exported here for one import).
- Novelty: the mean self-information ``-log2(k_i / U)`` of the recommended items, where ``k_i`` is the number of
  users who interacted with item i and U the number of users (Zhou et al., PNAS 2010,
  https://arxiv.org/abs/0808.2670).
- Gini of exposure: the Gini coefficient of how often each catalogue item is recommended (0 = every item shown
  equally often, (n-1)/n = one item takes every slot); Fleder & Hosanagar, Management Science 2009.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from llmrec.eval.metrics import coverage_at_k

__all__ = [
    "coverage_at_k",
    "diversity_report",
    "gini_exposure",
    "intra_list_diversity",
    "multi_hot",
    "novelty",
    "pairwise_similarity",
]

METRICS = ("jaccard", "cosine")


def multi_hot(categories: Sequence[Sequence[str] | None]) -> tuple[np.ndarray, list[str]]:
    """Categories of items 1..V (in item order) -> multi-hot matrix [V+1, C] (row 0 = padding) and the vocabulary."""
    vocab = sorted({c for cs in categories if cs for c in cs})
    index = {c: j for j, c in enumerate(vocab)}
    out = np.zeros((len(categories) + 1, len(vocab)), dtype=np.float32)
    for row, cs in enumerate(categories, start=1):
        for c in cs or ():
            out[row, index[c]] = 1.0
    return out, vocab


def pairwise_similarity(features: np.ndarray, item_ids: npt.ArrayLike, metric: str = "jaccard") -> np.ndarray:
    """Similarity of every pair of items within each row: item_ids [B, N] -> [B, N, N].

    features: [V+1, F] item features indexed by item id: multi-hot categories for "jaccard", embeddings for
    "cosine". Two items without any category have Jaccard similarity 0 (nothing is known to be shared), and so
    does a zero embedding under cosine.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    ids = np.asarray(item_ids, dtype=np.int64)
    x = features[ids].astype(np.float64)  # [B, N, F]
    dot = x @ x.transpose(0, 2, 1)  # [B, N, N]
    if metric == "jaccard":
        size = x.sum(-1)  # [B, N]
        union = size[:, :, None] + size[:, None, :] - dot  # [B, N, N]
        jaccard: np.ndarray = np.divide(dot, union, out=np.zeros_like(dot), where=union > 0)
        return jaccard
    norm = np.linalg.norm(x, axis=-1)  # [B, N]
    den = norm[:, :, None] * norm[:, None, :]
    cosine: np.ndarray = np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)
    return cosine


def intra_list_diversity(lists: npt.ArrayLike, features: np.ndarray, metric: str = "jaccard") -> float:
    """Mean over lists of the mean pairwise distance (1 - similarity) between the real items of each list.

    lists: [N, K] item ids (0 = padding, left out of the pairs); lists with fewer than two items are skipped.
    """
    ids = np.asarray(lists, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"lists must be [N, K], got shape {ids.shape}")
    dist = 1.0 - pairwise_similarity(features, ids, metric)  # [N, K, K]
    real = ids > 0  # [N, K]
    pair = real[:, :, None] & real[:, None, :] & ~np.eye(ids.shape[1], dtype=bool)  # [N, K, K] distinct real pairs
    n_pairs = pair.sum((1, 2))  # [N]
    keep = n_pairs > 0
    if not keep.any():
        return 0.0
    per_list = (dist * pair).sum((1, 2))[keep] / n_pairs[keep]
    return float(per_list.mean())


def novelty(lists: npt.ArrayLike, item_users: npt.ArrayLike, n_users: int) -> float:
    """Mean self-information -log2(k_i / U) over the recommended items (padding ignored).

    item_users: [V+1] number of users who interacted with each item; an item nobody interacted with counts as
    one user (its self-information is the largest possible, log2 U, instead of infinite).
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    ids = np.asarray(lists, dtype=np.int64).ravel()
    ids = ids[ids > 0]
    if ids.size == 0:
        return 0.0
    k = np.maximum(np.asarray(item_users, dtype=np.float64)[ids], 1.0)
    return float(np.mean(-np.log2(k / n_users)))


def gini_exposure(lists: npt.ArrayLike, n_items: int) -> float:
    """Gini coefficient of the recommendation counts of the items 1..n_items (never-recommended items count 0).

    G = Σ_i (2i - n - 1) x_(i) / (n Σ x) with x sorted ascending and i = 1..n.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    ids = np.asarray(lists, dtype=np.int64).ravel()
    ids = ids[(ids >= 1) & (ids <= n_items)]
    counts = np.sort(np.bincount(ids, minlength=n_items + 1)[1:].astype(np.float64))  # [n], ascending
    total = counts.sum()
    if total == 0:
        return 0.0
    i = np.arange(1, n_items + 1, dtype=np.float64)
    return float(((2 * i - n_items - 1) * counts).sum() / (n_items * total))


def diversity_report(
    lists: npt.ArrayLike,
    *,
    n_items: int,
    features: np.ndarray,
    metric: str = "jaccard",
    item_users: npt.ArrayLike | None = None,
    n_users: int | None = None,
) -> dict[str, float]:
    """ILD, coverage, Gini of exposure and (given item_users and n_users) novelty of the lists, keyed for a report."""
    ids = np.asarray(lists, dtype=np.int64)
    k = ids.shape[1]
    out = {
        f"ild@{k}": intra_list_diversity(ids, features, metric),
        f"coverage@{k}": coverage_at_k(ids, n_items),
        f"gini@{k}": gini_exposure(ids, n_items),
    }
    if item_users is not None and n_users is not None:
        out[f"novelty@{k}"] = novelty(ids, item_users, n_users)
    return out
