"""The cold-start protocol on literal cases, and the episode sampler's no-leak property (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.eval.cold_start import cold_start_examples, evaluate_cold_start
from llmrec.meta.tasks import Episode, EpisodeSampler


def _seqs(*rows: list[int]) -> list[np.ndarray]:
    return [np.array(r, dtype=np.int64) for r in rows]


def _fixed_scores(histories: list[np.ndarray]) -> torch.Tensor:
    """Five items, the same scores for everyone: item 1 best, item 5 worst."""
    row = torch.tensor([float("-inf"), 5.0, 4.0, 3.0, 2.0, 1.0])
    return row.expand(len(histories), -1).clone()


def test_cold_start_examples_cut_support_and_query() -> None:
    ex = cold_start_examples(_seqs([1, 2, 3, 4, 5], [6, 7, 8], [9, 10]), 2, n_query=1)
    assert ex.rows.tolist() == [0, 1]  # [9, 10] has no query after a support of 2
    assert [h.tolist() for h in ex.histories] == [[1, 2], [6, 7]]
    assert ex.queries.tolist() == [[3], [8]]
    same_users = cold_start_examples(_seqs([1, 2, 3, 4, 5], [6, 7, 8], [9, 10]), 1, n_query=2, min_length=4)
    assert same_users.rows.tolist() == [0]
    assert same_users.queries.tolist() == [[2, 3]]
    with pytest.raises(ValueError, match="shorter than n_support"):
        cold_start_examples(_seqs([1, 2, 3]), 2, n_query=2, min_length=3)


def test_evaluate_cold_start_gives_hand_checked_ranks() -> None:
    # [2, 1] is too short for n=2 plus a query, so it is left out of every n (same users for all n).
    seqs = _seqs([1, 3, 2], [5, 4, 1], [2, 1])
    res = evaluate_cold_start(_fixed_scores, seqs, support_sizes=(1, 2), ks=(1, 10), n_boot=0)
    # n=1: [1] -> 3: unseen items 2,3,4,5 score 4,3,2,1 -> rank 2;  [5] -> 4: 1,2,3 score higher -> rank 4
    # n=2: [1,3] -> 2: rank 1;  [5,4] -> 1: rank 1
    assert res.n_users == 2
    assert res.ranks[1].tolist() == [[2], [4]]
    assert res.ranks[2].tolist() == [[1], [1]]
    assert res.metrics[1]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)
    assert res.metrics[1]["recall@1"] == 0.0
    assert res.metrics[2]["ndcg@10"] == 1.0 and res.metrics[2]["recall@1"] == 1.0
    assert res.ci == {}
    # Seen items ranked too: [1] -> 3 now has 1 and 2 above it. With n=1 only, [2] -> 1 qualifies (rank 1).
    seen = evaluate_cold_start(_fixed_scores, seqs, support_sizes=(1,), ks=(10,), exclude_seen=False, n_boot=0)
    assert seen.ranks[1].tolist() == [[3], [4], [1]]


def test_evaluate_cold_start_averages_several_queries_per_user() -> None:
    res = evaluate_cold_start(_fixed_scores, _seqs([1, 3, 2, 5]), support_sizes=(1,), n_query=2, ks=(10,), n_boot=0)
    assert res.ranks[1].tolist() == [[2, 1]]  # [1] -> 3 (rank 2) and [1] -> 2 (rank 1)
    assert res.per_user[1]["ndcg@10"].tolist() == pytest.approx([(1 / math.log2(3) + 1.0) / 2])


def test_evaluate_cold_start_reports_bootstrap_intervals() -> None:
    seqs = _seqs(*[[1 + (i % 5), 1 + ((i + 2) % 5), 1 + ((i + 4) % 5)] for i in range(20)])
    res = evaluate_cold_start(_fixed_scores, seqs, support_sizes=(1,), ks=(10,), n_boot=200)
    lo, hi = res.ci[1]["ndcg@10"]
    assert lo <= res.metrics[1]["ndcg@10"] <= hi


# ---- episodes ---------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 15), min_size=1, max_size=8),
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    n_query=st.integers(1, 3),
    max_start=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_episode_sampler_never_puts_a_query_position_in_the_support(
    lengths: list[int], sizes: list[int], n_query: int, max_start: int, seed: int
) -> None:
    seqs = [np.arange(100 * u, 100 * u + n, dtype=np.int64) for u, n in enumerate(lengths)]  # positions = values
    if not any(n >= min(sizes) + n_query for n in lengths):
        with pytest.raises(ValueError, match="long enough"):
            EpisodeSampler(seqs, support_sizes=sizes, n_query=n_query, max_start=max_start, seed=seed)
        return
    sampler = EpisodeSampler(seqs, support_sizes=sizes, n_query=n_query, max_start=max_start, seed=seed)
    for ep in sampler.sample(30):
        support, query = set(ep.support), set(ep.query)
        assert not support & query
        assert max(support) < min(query)  # the support comes strictly before its query
        assert ep.n_support in sizes and len(query) == n_query
        assert 0 <= ep.start <= max_start and max(query) < len(seqs[ep.row])
        window = ep.window(seqs[ep.row])
        assert window.tolist() == [seqs[ep.row][p] for p in [*ep.support, *ep.query]]


def test_episode_sampler_is_seeded_and_starts_at_the_first_item_by_default() -> None:
    seqs = _seqs(list(range(1, 12)), list(range(20, 27)), [30, 31])
    a = EpisodeSampler(seqs, seed=3).sample(50)
    assert a == EpisodeSampler(seqs, seed=3).sample(50)
    assert a != EpisodeSampler(seqs, seed=4).sample(50)
    assert all(ep.start == 0 for ep in a)
    assert {ep.row for ep in a if ep.n_support == 5} <= {0, 1}  # [30, 31] holds only n=1 + 1 query
    assert Episode(row=0, start=2, n_support=3, n_query=1).window(seqs[0]).tolist() == [3, 4, 5, 6]
