"""Re-ranking a model's scores: diversity (maximal marginal relevance) and natural-language intent (query blend).

Carbonell & Goldstein, "The use of MMR, diversity-based reranking for reordering documents and producing
summaries", SIGIR 1998. Greedily, the next item is

    argmax_{i ∉ S}  λ · rel(i) − (1 − λ) · max_{j ∈ S} sim(i, j)

λ = 1 is the model's own order; λ = 0 picks each next item as unlike the chosen ones as possible. The model's
scores are logits on an arbitrary scale, so rel is the score min-max normalised to [0, 1] over each user's
candidates, the same range as the similarities (Jaccard of categories, or cosine of item embeddings).

`blend_query` mixes the personal scores with a text encoder's query–item similarity (see its docstring).
"""

from __future__ import annotations

import numpy as np
import torch

from llmrec.eval.diversity import pairwise_similarity
from llmrec.models.layers import standardise_rows

__all__ = ["blend_query", "mmr", "mmr_rerank"]


def mmr(relevance: np.ndarray, similarity: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Positions of the k items MMR selects, in selection order: relevance [B, N], similarity [B, N, N] -> [B, K].

    Candidates with relevance -inf (excluded items) are never selected while others remain.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    B, N = relevance.shape
    k = min(k, N)
    finite = np.isfinite(relevance)  # [B, N]
    lo = np.where(finite, relevance, np.inf).min(1, keepdims=True)  # [B, 1]
    hi = np.where(finite, relevance, -np.inf).max(1, keepdims=True)  # [B, 1]
    span = np.where(hi > lo, hi - lo, 1.0)
    rel = np.where(finite, (relevance - lo) / span, 0.0)  # [B, N] in [0, 1]
    chosen = np.zeros((B, k), dtype=np.int64)
    is_free = np.ones((B, N), dtype=bool)
    max_sim = np.zeros((B, N))  # max similarity to the chosen items so far
    rows = np.arange(B)
    for step in range(k):
        gain = lam * rel - (1.0 - lam) * max_sim  # [B, N], in [-1, 1]
        gain = np.where(finite, gain, -2.0)  # excluded items only once every real one is taken
        gain = np.where(is_free, gain, -np.inf)
        pick = gain.argmax(1)  # [B]; ties go to the earlier (higher-scored) candidate
        chosen[:, step] = pick
        is_free[rows, pick] = False
        max_sim = np.maximum(max_sim, similarity[rows, pick])  # [B, N]
    return chosen


def mmr_rerank(
    candidates: np.ndarray, scores: np.ndarray, features: np.ndarray, k: int, lam: float, metric: str = "jaccard"
) -> np.ndarray:
    """Re-rank candidates [B, N] (item ids, with their model scores [B, N]) to k items per row -> ids [B, K].

    features: [V+1, F] item features for the similarity (multi-hot categories with "jaccard", embeddings with
    "cosine"; see `llmrec.eval.diversity.pairwise_similarity`).
    """
    sim = pairwise_similarity(features, candidates, metric)  # [B, N, N]
    pos = mmr(scores, sim, k, lam)  # [B, K]
    return np.take_along_axis(candidates, pos, axis=1)


def blend_query(scores: torch.Tensor, similarity: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend personal scores [B, V+1] with a query's similarity to every item [V+1]: (1 − w)·z(scores) + w·z(sim).

    Both are standardised over the catalogue (items 1..V; −inf entries stay −inf) so that `weight` trades
    comparable units: w = 0 is the model alone, w = 1 the query alone. The library's default weight is
    `llmrec.config.QUERY_WEIGHT`. On Beauty's validation queries min-max and rank (percentile) normalisation,
    and the query as a filter with the model as the ranker, did no better than the z-score (docs/trust.md).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"query weight must be in [0, 1], got {weight}")
    z_s, z_q = standardise_rows(scores), standardise_rows(similarity.unsqueeze(0))  # [B, V+1], [1, V+1]
    blended = (1.0 - weight) * z_s + weight * z_q
    return torch.where(torch.isfinite(z_s) & torch.isfinite(z_q), blended, float("-inf"))  # 0 · −inf is nan
