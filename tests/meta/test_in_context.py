"""Episodic short-context fine-tuning of the whole LM: the windows it trains on, and a smoke run."""

from __future__ import annotations

import math

import numpy as np
import torch

from llmrec.data import PreparedDataset
from llmrec.meta.in_context import EpisodicConfig, constrained_metric, episodic_finetune, episodic_windows
from llmrec.models import NextItemLM
from llmrec.training import TrainConfig


def test_episodic_windows_are_prefixes_or_sampled_episodes() -> None:
    seqs = [np.arange(1, 11), np.arange(20, 24), np.array([30])]
    prefixes = episodic_windows(seqs, EpisodicConfig(max_support=3, n_query=1))
    assert [w.tolist() for w in prefixes] == [[1, 2, 3, 4], [20, 21, 22, 23]]  # [30] teaches nothing
    sampled = episodic_windows(seqs, EpisodicConfig(max_support=3, max_start=4, episodes_per_user=3, seed=1))
    assert len(sampled) == 6 and all(len(w) == 4 for w in sampled)
    for w in sampled:  # a contiguous run of one sequence, starting at most 4 items in
        src = seqs[0] if w[0] < 20 else seqs[1]
        start = int(np.flatnonzero(src == w[0])[0])
        assert start <= 4 and w.tolist() == src[start : start + 4].tolist()


def test_episodic_finetune_trains_the_whole_lm_on_short_windows(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    calls: list[int] = []

    def evaluate(model: NextItemLM) -> dict[str, float]:
        calls.append(1)
        return {"ndcg@10": float(len(calls))}  # always improving: the last epoch's weights are kept

    result = episodic_finetune(
        tiny_lm,
        tiny_cold.train_sequences(),
        TrainConfig(epochs=2, lr=1e-2, batch_size=4, progress=False, warmup_steps=0),
        EpisodicConfig(max_support=3, replay=0.5),
        evaluate=evaluate,
    )
    assert result.epochs_run == 2 and len(calls) == 2
    changed = [k for k, v in tiny_lm.state_dict().items() if not torch.equal(v, before[k])]
    assert "item_emb.weight" in changed and any(k.startswith("blocks.") for k in changed)


def test_constrained_metric_refuses_epochs_that_cost_warm_users() -> None:
    assert constrained_metric(0.30, warm=0.099, warm_start=0.100, tolerance=0.02) == 0.30  # -1%: kept
    assert constrained_metric(0.30, warm=0.097, warm_start=0.100, tolerance=0.02) == -math.inf  # -3%: refused
    assert constrained_metric(0.30, warm=0.050, warm_start=0.100, tolerance=-1.0) == 0.30  # constraint off
