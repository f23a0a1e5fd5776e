"""Full ranking, sampled ranking, segments and statistics on small literal inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llmrec.eval.evaluate import (
    ScoreFn,
    bootstrap_ci,
    compute_ranks,
    compute_ranks_and_topk,
    evaluate_split,
    evaluate_split_both,
    paired_test,
    repeat_targets,
    sampled_metrics,
    sampled_ranks,
    segment_metrics,
)
from llmrec.eval.metrics import summarize

# n_items = 5; column 0 is padding and deliberately scored high to prove it is never ranked.
# Keyed by history so that any batching gives the same scores.
TABLE: dict[tuple[int, ...], list[float]] = {
    (1,): [9.0, 0.1, 0.5, 0.9, 0.5, 0.2],  # target 2: item 3 higher, item 4 tied -> rank 3
    (3, 4): [0.0, 0.2, 0.1, 0.9, 0.8, 0.3],  # target 5: 3 and 4 higher -> 3; seen excluded -> 1
    (): [0.0, 0.5, 0.5, 0.5, 0.5, 0.5],  # target 1: all tied -> pessimistic rank 5
    (2, 5): [0.0, 0.3, 0.6, 0.1, 0.2, 0.9],  # target 2 (a repeat): 5 higher -> 2; seen excluded -> masked, rank 5
}
HISTORIES = [np.array(h, dtype=np.int64) for h in TABLE]
TARGETS = np.array([2, 5, 1, 2])


def table_score_fn(histories: list[np.ndarray]) -> torch.Tensor:
    return torch.tensor([TABLE[tuple(h.tolist())] for h in histories])


def reference_ranks(scores: np.ndarray, histories: list[np.ndarray], targets: np.ndarray, exclude: bool) -> np.ndarray:
    """Plain loop over items: what the vectorised ranking must reproduce (RecBole's masking: a seen target misses)."""
    out = []
    for row, hist, target in zip(scores, histories, targets, strict=True):
        blocked = {0} | ({int(i) for i in hist} if exclude else set())
        if int(target) in blocked:
            out.append(len(row) - 1)  # masked with the history: last of n_items
            continue
        t = row[target]
        higher = sum(1 for i in range(1, len(row)) if i not in blocked and row[i] > t)
        tied = sum(1 for i in range(1, len(row)) if i not in blocked and i != target and row[i] == t)
        out.append(1 + higher + tied)
    return np.array(out)


def test_compute_ranks_literal_table_with_tie() -> None:
    ranks = compute_ranks(table_score_fn, HISTORIES, TARGETS, batch_size=3)
    np.testing.assert_array_equal(ranks, [3, 3, 5, 2])
    assert ranks.dtype == np.int64


def test_compute_ranks_exclude_seen_masks_a_repeated_target() -> None:
    # Row 4 (history 2, 5; target 2): without the mask the target ranks 2; with it, 2 is a history item
    # like 5 and is masked too, so the example is a miss (rank n_items = 5), as RecBole and BSARec count it.
    ranks = compute_ranks(table_score_fn, HISTORIES, TARGETS, exclude_seen=True, batch_size=2)
    np.testing.assert_array_equal(ranks, [3, 1, 5, 5])


def test_a_repeated_target_is_a_miss_even_when_scored_highest() -> None:
    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.tensor([[0.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]] * len(batch))  # item 1 scores highest

    histories = [np.array([1, 4]), np.array([4])]
    ranks = compute_ranks(score_fn, histories, [1, 1], exclude_seen=True)
    assert ranks.tolist() == [7, 1]  # repeat -> last of 7 items; fresh target -> first
    metrics = summarize(ranks, (1, 5))
    assert metrics["recall@5"] == 0.5 and metrics["ndcg@5"] == 0.5 and metrics["recall@1"] == 0.5
    assert compute_ranks(score_fn, histories, [1, 1]).tolist() == [1, 1]  # not excluded: both hits


def test_repeat_targets_counts_literal_examples() -> None:
    assert repeat_targets(HISTORIES, TARGETS).tolist() == [False, False, False, True]
    hist = [np.array([3, 3, 7]), np.array([]), np.array([7, 1])]
    assert repeat_targets(hist, [3, 3, 1]).tolist() == [True, False, True]


def test_compute_ranks_matches_reference_loop() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 40
    # Rounded scores create many ties, the case a vectorised count most easily gets wrong.
    table = np.round(rng.random((n_users, n_items + 1)), 1)
    # Each history starts with item u + 1, which tells the score function whose row to return.
    histories = [np.concatenate([[u + 1], rng.integers(1, n_items + 1, size=int(rng.integers(0, 12)))]) for u in range(n_users)]
    targets = rng.integers(1, n_items + 1, size=n_users)

    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([table[int(h[0]) - 1] for h in batch]))

    for exclude in (False, True):
        got = compute_ranks(score_fn, histories, targets, exclude_seen=exclude, batch_size=7)
        np.testing.assert_array_equal(got, reference_ranks(table, histories, targets, exclude))


def test_compute_ranks_target_at_neg_inf_ranks_last_among_candidates() -> None:
    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.tensor([[0.0, float("-inf"), 1.0, float("-inf"), 2.0]] * len(batch))

    # Item 3 (seen, -inf) must not count as a tie once excluded; item 1 is the target.
    assert compute_ranks(score_fn, [np.array([3])], [1], exclude_seen=True).tolist() == [3]
    assert compute_ranks(score_fn, [np.array([3])], [1]).tolist() == [4]


def test_compute_ranks_accepts_integer_scores() -> None:
    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.tensor([[0, 5, 3, 3, 1]]).expand(len(batch), -1)  # popularity counts

    assert compute_ranks(score_fn, [np.array([]), np.array([1])], [3, 2]).tolist() == [3, 3]


def test_compute_ranks_rejects_nan_and_bad_shapes() -> None:
    one_nan = torch.tensor([[0.0, 1.0, float("inf"), float("nan")]])
    with pytest.raises(ValueError, match="NaN"):
        compute_ranks(lambda b: one_nan.expand(len(b), -1), [np.array([1])], [2])
    with pytest.raises(ValueError, match="shape"):
        compute_ranks(lambda b: torch.zeros(len(b) + 1, 4), [np.array([1])], [2])
    with pytest.raises(ValueError, match="targets"):
        compute_ranks(table_score_fn, HISTORIES, [2, 5, 1, 6])
    with pytest.raises(ValueError, match="targets"):
        compute_ranks(table_score_fn, HISTORIES, TARGETS[:2])


def test_compute_ranks_and_topk_lists_best_items_never_padding() -> None:
    ranks, topk = compute_ranks_and_topk(table_score_fn, HISTORIES, TARGETS, k=2, exclude_seen=True)
    np.testing.assert_array_equal(ranks, [3, 1, 5, 5])
    assert topk.shape == (4, 2)
    assert topk[1].tolist() == [5, 1]  # 3 and 4 were seen
    assert topk[3].tolist() == [1, 4]  # 2 and 5 seen (2 is the target, a repeat: masked too)
    assert topk[0, 0] == 3 and 0 not in topk[0]  # column 0 scored 9.0 but is padding
    _, topk = compute_ranks_and_topk(table_score_fn, HISTORIES, TARGETS, k=2)
    assert topk[1].tolist() == [3, 4]


def test_compute_ranks_and_topk_pads_short_rows_with_zero() -> None:
    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.arange(6, dtype=torch.float32).expand(len(batch), -1)

    _, topk = compute_ranks_and_topk(score_fn, [np.array([1, 2, 3, 4])], [5], k=3, exclude_seen=True)
    assert topk.tolist() == [[5, 0, 0]]


def _above_target_score_fn(n_items: int, targets: dict[tuple[int, ...], int]) -> ScoreFn:
    """History items score 2, the target 1, all else 0: any sampled history item would push rank above 1."""

    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        scores = torch.zeros(len(batch), n_items + 1)
        for row, h in enumerate(batch):
            scores[row, torch.from_numpy(h)] = 2.0
            scores[row, targets[tuple(h.tolist())]] = 1.0
        return scores

    return score_fn


def test_sampled_ranks_never_samples_target_or_history() -> None:
    rng = np.random.default_rng(1)
    n_items, n_users = 120, 40
    histories = [rng.choice(np.arange(1, n_items + 1), size=15, replace=False) for _ in range(n_users)]
    targets = np.array([int(rng.integers(1, n_items + 1)) for _ in range(n_users)])
    by_history = {tuple(h.tolist()): int(t) for h, t in zip(histories, targets, strict=True)}
    assert len(by_history) == n_users
    score_fn = _above_target_score_fn(n_items, by_history)
    # Popularity concentrated on history items and the target: a sampler ignoring the exclusions
    # would draw them almost surely.
    popularity = np.ones(n_items + 1)
    for h in histories:
        popularity[h] = 1e6
    popularity[targets] = 1e6
    for pop in (None, popularity):
        ranks = sampled_ranks(score_fn, histories, targets, n_negatives=100, popularity=pop, batch_size=16)
        assert ranks.tolist() == [1] * n_users  # target never a negative (a tie would give rank 2)


def test_sampled_ranks_pessimistic_ties_and_zero_popularity() -> None:
    def constant(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.zeros(len(batch), 301)

    assert sampled_ranks(constant, [np.array([1])], [2]).tolist() == [101]
    # Items with zero popularity are never drawn: the only items left score below the target.
    pop = np.zeros(301)
    pop[200:] = 1.0

    def low_tail(batch: list[np.ndarray]) -> torch.Tensor:
        scores = torch.ones(len(batch), 301)
        scores[:, 200:] = 0.0
        return scores

    assert sampled_ranks(low_tail, [np.array([])], [5], n_negatives=50, popularity=pop).tolist() == [1]


def test_sampled_ranks_is_seeded_and_refuses_small_catalogues() -> None:
    table = torch.from_numpy(np.random.default_rng(2).random((1, 201)))

    def score_fn(batch: list[np.ndarray]) -> torch.Tensor:
        return table.expand(len(batch), -1)

    hist, tgt = [np.array([3])] * 20, np.full(20, 7)
    a = sampled_ranks(score_fn, hist, tgt, seed=0)
    np.testing.assert_array_equal(a, sampled_ranks(score_fn, hist, tgt, seed=0))
    assert not np.array_equal(a, sampled_ranks(score_fn, hist, tgt, seed=1))
    with pytest.raises(ValueError, match="fewer than n_negatives"):
        sampled_ranks(score_fn, [np.arange(1, 150)], [160], n_negatives=100)


def test_sampled_metrics_keys_are_labelled() -> None:
    out = sampled_metrics(np.array([1, 50]), n_negatives=100, ks=(10,))
    assert out["sampled-100/recall@10"] == 0.5
    assert all(key.startswith("sampled-100/") for key in out)


def test_segment_metrics_assigns_literal_inputs() -> None:
    ranks = np.array([1, 2, 3, 4, 5, 6])
    lengths = np.array([0, 3, 4, 7, 8, 20])
    pop = np.array([1, 2, 3, 4, 5, 6])  # terciles: q1 = 2.67, q2 = 4.33
    seg = segment_metrics(ranks, lengths, pop, ks=(1, 5))
    assert list(seg) == ["histlen 1-3", "histlen 4-7", "histlen 8-15", "histlen 16+", "pop low", "pop mid", "pop high"]
    assert [seg[s]["n"] for s in seg] == [2, 2, 1, 1, 2, 2, 2]
    assert seg["histlen 1-3"]["recall@1"] == 0.5  # ranks 1, 2 (length 0 joins 1-3)
    assert seg["histlen 16+"]["mrr"] == pytest.approx(1 / 6)
    assert seg["pop low"]["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert seg["pop high"]["recall@5"] == 0.5  # ranks 5, 6


def test_segment_metrics_keeps_empty_segments_and_skips_missing_inputs() -> None:
    seg = segment_metrics(np.array([1, 2]), np.array([1, 2]), None, ks=(10,))
    assert set(seg) == {"histlen 1-3", "histlen 4-7", "histlen 8-15", "histlen 16+"}
    assert seg["histlen 16+"]["n"] == 0 and math.isnan(seg["histlen 16+"]["ndcg@10"])


def test_bootstrap_ci_contains_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(3)
    small = (rng.random(100) < 0.3).astype(float)
    large = (rng.random(10_000) < 0.3).astype(float)
    mean, lo, hi = bootstrap_ci(small, n_boot=500)
    assert lo <= mean <= hi and mean == pytest.approx(small.mean())
    mean_l, lo_l, hi_l = bootstrap_ci(large, n_boot=500)
    assert lo_l <= mean_l <= hi_l
    assert hi_l - lo_l < (hi - lo) / 3  # width shrinks like 1/sqrt(n): 10x here
    assert bootstrap_ci(small, n_boot=500, seed=7) == bootstrap_ci(small, n_boot=500, seed=7)


def test_bootstrap_ci_constant_input_is_degenerate() -> None:
    assert bootstrap_ci(np.full(50, 0.25), n_boot=200) == (0.25, 0.25, 0.25)


def test_paired_test_detects_clear_difference() -> None:
    rng = np.random.default_rng(4)
    b = rng.random(300)
    a = b + 0.05 + rng.normal(0, 0.02, size=300)
    out = paired_test(a, b, n_boot=500)
    assert out["p_value"] < 0.05
    assert out["ci_lo"] > 0 and out["mean_diff"] == pytest.approx(0.05, abs=0.01)
    assert out["n"] == 300


def test_paired_test_identical_arrays_give_large_p() -> None:
    a = np.random.default_rng(5).random(200)
    out = paired_test(a, a.copy(), n_boot=200)
    assert out["p_value"] == 1.0
    assert out["mean_diff"] == 0.0 and out["ci_lo"] == 0.0 and out["ci_hi"] == 0.0


def test_paired_test_no_true_difference_is_not_significant() -> None:
    rng = np.random.default_rng(6)
    out = paired_test(rng.random(200), rng.random(200), n_boot=200)
    assert out["p_value"] > 0.05
    assert out["ci_lo"] < 0 < out["ci_hi"]


def test_evaluate_split_fills_every_field() -> None:
    pop = np.array([10, 1, 5, 10])
    result = evaluate_split(table_score_fn, HISTORIES, TARGETS, ks=(1, 5), target_popularity=pop, n_boot=200)
    np.testing.assert_array_equal(result.ranks, [3, 3, 5, 2])
    assert result.n == 4 and result.exclude_seen is False and result.ks == (1, 5)
    assert result.metrics == summarize(result.ranks, (1, 5))
    assert set(result.ci) == {"recall@1", "ndcg@1", "recall@5", "ndcg@5"}
    for key, (lo, hi) in result.ci.items():
        assert lo <= result.metrics[key] <= hi
    assert result.segments["histlen 1-3"]["n"] == 4  # lengths 1, 2, 0, 2
    assert {"pop low", "pop mid", "pop high"} <= set(result.segments)


def test_evaluate_split_without_bootstrap() -> None:
    result = evaluate_split(table_score_fn, HISTORIES, TARGETS, exclude_seen=True, n_boot=0)
    assert result.ci == {} and result.exclude_seen is True
    assert result.metrics["recall@1"] == 0.25  # ranks 3, 1, 5, 5
    assert result.repeat_targets == 1


def test_evaluate_split_both_scores_once_and_matches_each_protocol() -> None:
    calls = []

    def counting(histories: list[np.ndarray]) -> torch.Tensor:
        calls.append(len(histories))
        return table_score_fn(histories)

    both = evaluate_split_both(counting, HISTORIES, TARGETS, ks=(1, 5), n_boot=50, batch_size=3)
    assert calls == [3, 1]  # one pass over the 4 examples for both protocols
    assert set(both) == {"exclude_seen", "include_seen"}
    np.testing.assert_array_equal(both["exclude_seen"].ranks, [3, 1, 5, 5])
    np.testing.assert_array_equal(both["include_seen"].ranks, [3, 3, 5, 2])
    assert both["exclude_seen"].exclude_seen is True and both["include_seen"].exclude_seen is False
    assert both["exclude_seen"].repeat_targets == both["include_seen"].repeat_targets == 1
    for key, single in (("exclude_seen", True), ("include_seen", False)):
        alone = evaluate_split(table_score_fn, HISTORIES, TARGETS, ks=(1, 5), exclude_seen=single, n_boot=50)
        assert both[key].metrics == alone.metrics and both[key].ci == alone.ci


def test_compute_ranks_empty_input_and_progress_bar() -> None:
    assert compute_ranks(table_score_fn, [], np.array([], dtype=np.int64)).shape == (0,)
    ranks = compute_ranks(table_score_fn, HISTORIES, TARGETS, progress=True)
    np.testing.assert_array_equal(ranks, [3, 3, 5, 2])
