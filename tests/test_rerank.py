"""MMR re-ranking and query blending: hand-worked selections, the λ and weight end points, and the Recommender options."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.cli.recommend import explain_cmd, recommend_cmd
from llmrec.config import QUERY_WEIGHT
from llmrec.data import PreparedDataset
from llmrec.eval.diversity import intra_list_diversity
from llmrec.recommend import Recommender
from llmrec.rerank import blend_query, mmr, mmr_rerank
from llmrec.training import build_model, save_artifact

TINY_MODEL = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


# ---- mmr -----------------------------------------------------------------------------------------------------
def test_mmr_lambda_one_is_the_relevance_order() -> None:
    rel = np.array([[0.1, 0.9, 0.5, 0.7]])
    sim = np.ones((1, 4, 4))
    np.testing.assert_array_equal(mmr(rel, sim, 4, 1.0), [[1, 3, 2, 0]])


def test_mmr_by_hand() -> None:
    # relevance after min-max: [1, 0.9, 0.5, 0]; items 0 and 1 are near duplicates, 2 is unlike both
    rel = np.array([[10.0, 9.0, 5.0, 0.0]])
    sim = np.array([[[1, 0.9, 0.1, 0.5], [0.9, 1, 0.1, 0.5], [0.1, 0.1, 1, 0.5], [0.5, 0.5, 0.5, 1]]])
    # λ = 0.5: pick 0 (0.5); then 1: 0.45-0.45=0, 2: 0.25-0.05=0.2, 3: 0-0.25 -> 2; then 1: 0.45-0.45, 3: -0.25 -> 1
    np.testing.assert_array_equal(mmr(rel, sim, 3, 0.5), [[0, 2, 1]])
    # λ = 0: the first pick is the most relevant (tie broken by order), then the least similar each time
    np.testing.assert_array_equal(mmr(rel, sim, 2, 0.0), [[0, 2]])
    with pytest.raises(ValueError, match="lambda"):
        mmr(rel, sim, 2, 1.5)


def test_mmr_takes_excluded_items_last() -> None:
    rel = np.array([[float("-inf"), 1.0, 0.0]])
    sim = np.zeros((1, 3, 3))
    np.testing.assert_array_equal(mmr(rel, sim, 3, 0.0), [[1, 2, 0]])


def test_mmr_rerank_returns_item_ids_and_raises_diversity() -> None:
    feats = np.array([[0, 0], [1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)  # items 1-3 alike, 4 different
    cand = np.array([[1, 2, 3, 4]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(mmr_rerank(cand, scores, feats, 2, 1.0, "cosine"), [[1, 2]])
    diverse = mmr_rerank(cand, scores, feats, 2, 0.3, "cosine")
    np.testing.assert_array_equal(diverse, [[1, 4]])
    assert intra_list_diversity(diverse, feats, "cosine") > intra_list_diversity([[1, 2]], feats, "cosine")


# ---- blend_query ---------------------------------------------------------------------------------------------
def test_blend_query_end_points_and_formula() -> None:
    scores = torch.tensor([[float("-inf"), 3.0, 1.0, 2.0, float("-inf")]])
    sim = torch.tensor([0.0, 0.1, 0.9, 0.5, 0.7])
    z_s = (torch.tensor([3.0, 1.0, 2.0]) - 2.0) / torch.tensor([2 / 3]).sqrt()  # population std over items 1..3
    z_q = (sim[1:] - sim[1:].mean()) / sim[1:].std(unbiased=False)
    b = blend_query(scores, sim, 0.25)
    assert torch.isinf(b[0, 0]) and torch.isinf(b[0, 4])  # padding and excluded items stay out
    torch.testing.assert_close(b[0, 1:4], 0.75 * z_s + 0.25 * z_q[:3])
    assert blend_query(scores, sim, 0.0)[0, 1:4].argsort().tolist() == [1, 2, 0]  # the model's order
    assert blend_query(scores, sim, 1.0)[0, 1:4].argsort().tolist() == [0, 2, 1]  # the query's order
    for w in (0.0, 1.0):  # 0 · −inf is nan, which topk would rank first
        assert blend_query(scores, sim, w)[0, 0].item() == float("-inf")
    with pytest.raises(ValueError, match="query weight"):
        blend_query(scores, sim, -0.1)


# ---- the Recommender options -----------------------------------------------------------------------------------
class BagOfWordsEncoder:
    """Hashed bag of words, unit length: texts sharing a word are similar. Counts its calls."""

    name = "bag-of-words"
    dim = 64

    def __init__(self) -> None:
        self.n_texts = 0

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.n_texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                if w not in ("item", "a", "thing", "genres", "categories"):
                    out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, n, out=np.zeros_like(out), where=n > 0)


@pytest.fixture
def rec(tiny_prepared: PreparedDataset, tmp_path: Path) -> Recommender:
    model = build_model(tiny_prepared, TINY_MODEL, seed=0)[0].eval()
    r = Recommender.load(save_artifact(model, tiny_prepared, tmp_path / "model"))
    r.text_encoder = BagOfWordsEncoder()
    r.text_cache_dir = tmp_path / "text-cache"
    return r


def _genre(rec: Recommender, item_id: str) -> str:
    idx = rec.item_index[item_id]
    return str(rec.items["categories"][idx - 1][0])


def test_recommend_query_follows_the_weight(rec: Recommender) -> None:
    users = list(rec.histories)[:2]
    plain = rec.recommend(user=users[0], k=5)
    at_zero = rec.recommend(user=users[0], k=5, query="jazz", query_weight=0.0)
    assert [r.item_id for r in at_zero] == [r.item_id for r in plain]  # a z-score keeps the model's order
    only_query = rec.recommend(user=users[0], k=10, query="some jazz please", query_weight=1.0, exclude_seen=False)
    assert {_genre(rec, r.item_id) for r in only_query} == {"jazz"}  # the 10 jazz items of the tiny catalogue
    blended = [rec.recommend(user=u, k=5, query="jazz", query_weight=0.5) for u in users]
    assert [r.item_id for r in blended[0]] != [r.item_id for r in blended[1]]  # still personal
    # the item embeddings are encoded once (then kept, and cached on disk); each query is one more text
    assert rec.text_encoder.n_texts == rec.n_items + 4
    with pytest.raises(ValueError, match="empty"):
        rec.recommend(user=users[0], query="  ")


def test_query_weight_default_is_one_constant(rec: Recommender) -> None:
    """Every door (Python, CLI; the service calls recommend_batch) defaults to llmrec.config.QUERY_WEIGHT."""
    doors = (Recommender.recommend, Recommender.recommend_batch, Recommender.explain, Recommender.explain_history)
    for door in (*doors, recommend_cmd, explain_cmd):
        assert inspect.signature(door).parameters["query_weight"].default == QUERY_WEIGHT, door.__name__
    assert 0.0 < QUERY_WEIGHT < 1.0  # a blend: neither the history nor the query alone
    user = next(iter(rec.histories))
    by_default = rec.recommend(user=user, k=5, query="jazz")
    explicit = rec.recommend(user=user, k=5, query="jazz", query_weight=QUERY_WEIGHT)
    other = rec.recommend(user=user, k=5, query="jazz", query_weight=0.3)
    assert [(r.item_id, r.score) for r in by_default] == [(r.item_id, r.score) for r in explicit]
    assert [r.score for r in by_default] != [r.score for r in other]  # the weight is used, not ignored


def test_recommend_diversity_reranks_the_top_candidates(rec: Recommender) -> None:
    user = next(iter(rec.histories))
    plain = rec.recommend(user=user, k=5)
    assert [r.item_id for r in rec.recommend(user=user, k=5, diversity=0.0)] == [r.item_id for r in plain]
    diverse = rec.recommend(user=user, k=5, diversity=1.0)
    # λ = 0: every pick unlike the ones before: five items, five genres (the tiny catalogue has five)
    assert len({_genre(rec, r.item_id) for r in diverse}) == 5
    assert diverse[0].item_id == plain[0].item_id and [r.rank for r in diverse] == [1, 2, 3, 4, 5]
    scores = {r.item_id: r.score for r in rec.recommend(user=user, k=rec.n_items)}
    assert all(r.score == pytest.approx(scores[r.item_id]) for r in diverse)  # the model's own scores
    unseen = rec.recommend(user=user, k=5, diversity=0.5, exclude_seen=True)
    assert not {r.item_id for r in unseen} & {rec.raw_ids[i - 1] for i in rec.histories[user]}
    with pytest.raises(ValueError, match="diversity"):
        rec.recommend(user=user, diversity=2.0)
