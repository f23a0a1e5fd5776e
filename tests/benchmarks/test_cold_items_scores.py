"""The score summaries of benchmarks/cold_items.py --model: ranks from [N] / [N, cold] summaries equal the ranks
read off the whole seen-masked score matrix, for any cold offset, TIGER's quota and the new-items list."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
V = 40


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cold_items_bench", REPO / "benchmarks" / "cold_items.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class _RandomScorer:
    """Scores of a fixed random [users, V+1] table by the history's last item (ties included: integer scores)."""

    max_seq_len = 5

    def __init__(self) -> None:
        self.table = torch.randint(-4, 5, (V + 1, V + 1), generator=torch.Generator().manual_seed(0)).float()

    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        out = self.table[item_ids[:, -1]].clone()
        out[:, 0] = float("-inf")
        return out


def _examples() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    is_cold = np.zeros(V + 1, dtype=bool)
    is_cold[rng.choice(np.arange(1, V + 1), 8, replace=False)] = True
    histories = [rng.integers(1, V + 1, rng.integers(1, 9)) for _ in range(700)]
    targets = rng.integers(1, V + 1, len(histories))
    targets[:20] = [h[0] for h in histories[:20]]  # repeats: masked with the history, a miss
    return histories, targets, is_cold


@pytest.mark.parametrize("offset", [0.0, 0.5, 2.0, 7.0])
def test_summary_ranks_equal_the_ranks_of_the_masked_matrix(offset: float) -> None:
    bench = _bench()
    histories, targets, is_cold = _examples()
    model = _RandomScorer()
    s = bench._collect(model, histories, targets, is_cold)
    full = model.score(bench.pad_left(histories, model.max_seq_len))  # [N, V+1]
    for i, h in enumerate(histories):
        full[i, h] = float("-inf")  # every history item leaves the ranking, a repeated target too
    cold = torch.from_numpy(np.flatnonzero(is_cold))
    expected = bench._ranks(bench._with_cold_offset(full, cold, full[:, cold], offset), targets)
    np.testing.assert_array_equal(s.ranks(offset), expected)
    assert (expected[:20] >= V - 8).all()  # the repeats rank at the bottom
    for n_slots in (1, 2):
        np.testing.assert_array_equal(
            bench._quota_from(s, s, n_slots), bench._quota_ranks(full, cold, full[:, cold], targets, n_slots)
        )
    is_cold_target = is_cold[targets]
    np.testing.assert_array_equal(
        s.cold_ranks()[torch.from_numpy(is_cold_target)].numpy(),
        bench._cold_ranks(full[torch.from_numpy(is_cold_target)][:, cold], cold, targets[is_cold_target]).numpy(),
    )
