"""`llmrec.data.sequences`: training examples and batches, on literal inputs."""

from __future__ import annotations

import numpy as np
import torch

from llmrec.data.sequences import bucketed_batches, length_groups, prefix_examples, random_batches, training_windows


def test_prefix_examples_are_every_prefix_cut_to_the_window() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5]), np.array([6, 7])]
    got = [e.tolist() for e in prefix_examples(seqs, max_seq_len=2)]
    # each example is up to max_seq_len inputs plus its target; a one-item sequence teaches nothing
    assert got == [[1, 2], [1, 2, 3], [2, 3, 4], [6, 7]]
    # one example per target, as many as the causal windows have target positions
    n_targets = sum(len(w) - 1 for w in training_windows(seqs, max_seq_len=2))
    assert len(got) == n_targets == 4


def test_last_only_batches_put_the_single_target_at_the_last_position() -> None:
    examples = prefix_examples([np.array([1, 2, 3])], max_seq_len=5)  # [1, 2] and [1, 2, 3]
    batches = list(bucketed_batches(examples, batch_size=8, generator=torch.Generator().manual_seed(0), last_only=True))
    assert len(batches) == 1
    b = batches[0]
    assert b.targets is not None
    rows = sorted(zip(b.item_ids.tolist(), b.targets.tolist(), strict=True))
    assert rows == [([0, 1], [0, 2]), ([1, 2], [0, 3])]  # left-padded inputs; targets only at the end
    causal = next(iter(bucketed_batches(examples[-1:], 8, torch.Generator().manual_seed(0))))
    assert causal.targets is not None and causal.targets.tolist() == [[2, 3]]  # the default: every position


def _varied_windows(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 30, size=int(rng.integers(2, 12))) for _ in range(n)]


def test_random_batches_cover_every_window_once_and_mix_lengths() -> None:
    windows = _varied_windows()
    batches = list(random_batches(windows, 8, torch.Generator().manual_seed(0), last_only=True))
    assert [b.item_ids.shape[0] for b in batches] == [8] * 5
    seen = []
    for b in batches:
        assert b.targets is not None
        for row, t in zip(b.item_ids.tolist(), b.targets.tolist(), strict=True):
            seen.append(tuple(x for x in row if x != 0) + (t[-1],))
    assert sorted(seen) == sorted(tuple(int(x) for x in w) for w in windows)
    # a random batch holds histories of different lengths (a length-bucketed one would not)
    spreads = [int((b.item_ids != 0).sum(1).max() - (b.item_ids != 0).sum(1).min()) for b in batches]
    assert max(spreads) >= 5
    again = list(random_batches(windows, 8, torch.Generator().manual_seed(0), last_only=True))
    assert all(torch.equal(a.item_ids, b.item_ids) for a, b in zip(batches, again, strict=True))


def test_length_groups_split_rows_by_length_and_keep_every_target() -> None:
    windows = _varied_windows(16)
    for last_only in (True, False):
        (batch,) = random_batches(windows, 16, torch.Generator().manual_seed(1), last_only=last_only)
        parts = length_groups(batch)
        assert batch.targets is not None
        assert sum(n for _, n in parts) == int((batch.targets != 0).sum())
        assert sum(p.item_ids.shape[0] for p, _ in parts) == 16
        widths = [p.item_ids.shape[1] for p, _ in parts]
        assert widths == sorted(widths) and widths[0] < batch.item_ids.shape[1]
        for p, _ in parts:  # trimmed to the part's longest history: no all-padding column is left
            assert bool((p.item_ids[:, 0] != 0).any())
