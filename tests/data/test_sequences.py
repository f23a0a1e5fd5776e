"""`llmrec.data.sequences`: training examples and batches, on literal inputs."""

from __future__ import annotations

import numpy as np
import torch

from llmrec.data.sequences import bucketed_batches, prefix_examples, training_windows


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
