"""The LM as its own meta-learner: episodic short-context fine-tuning of the whole model.

A next-item LM trained on full histories spends almost none of its loss on the first few positions (on ml-100k,
about 5 of a user's ~100 targets), yet a cold-start user is nothing but first positions. Episodic fine-tuning
trains the whole LM on few-shot tasks from training users: the window ``support + query`` cut from the start of
a sequence (or, with ``max_start``, from a little further in). The causal LM's loss over a window of K items is
the loss of all its nested episodes at once — support = the first n items, query = item n+1, for n = 1..K−1 —
and causality (position t attends to items ≤ t only) means no query item is ever visible to its own support.

At recommendation time nothing changes: the support is read in context and no parameter moves per user, the
"in-context learning" of meta-trained sequence models (Garg et al., NeurIPS 2022, https://arxiv.org/abs/2208.01066;
Kirsch et al. 2022, https://arxiv.org/abs/2212.04458). `replay` mixes ordinary training windows back in, and
`warm_tolerance` makes the early stopping refuse any epoch that costs warm users (long histories) more than that
share of their validation NDCG@10 (`constrained_metric`): when no epoch qualifies, the LM keeps its starting weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from llmrec.data.sequences import training_windows
from llmrec.meta.tasks import EpisodeSampler
from llmrec.models.base import Trainable
from llmrec.training.loop import Callback, TrainConfig, TrainResult, train_loop

__all__ = ["EPISODIC_TRAIN_DEFAULTS", "EpisodicConfig", "constrained_metric", "episodic_finetune", "episodic_windows"]


class EpisodicModel(Trainable, Protocol):
    """What episodic fine-tuning needs: a model the training loop can fit that says how long a history it reads."""

    @property
    def max_seq_len(self) -> int: ...


M = TypeVar("M", bound=EpisodicModel)

# Fine-tuning, not training from scratch: a small constant learning rate and short patience.
EPISODIC_TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 5e-4,
    "epochs": 100,
    "patience": 10,
    "warmup_steps": 0,
    "schedule": "constant",
    "batch_size": 128,
}


@dataclass(frozen=True, kw_only=True)
class EpisodicConfig:
    max_support: int = 5  # support items per episode window (the window trains every n = 1..max_support)
    n_query: int = 1  # query items after the support
    max_start: int = 0  # 0: windows start at the user's first item (the cold-start case)
    episodes_per_user: int = 1  # windows per training user (> 1 only makes sense with max_start > 0)
    replay: float = 0.0  # ordinary training windows, as a share of the episode windows
    warm_tolerance: float = 0.02  # keep only epochs whose warm validation NDCG@10 is within this share of the start's (< 0: off)
    seed: int = 0  # episode and replay draws

    def __post_init__(self) -> None:
        if self.max_support < 1 or self.n_query < 1 or self.max_start < 0 or self.episodes_per_user < 1 or self.replay < 0:
            raise ValueError("max_support, n_query, episodes_per_user >= 1; max_start, replay >= 0 are required")


def constrained_metric(cold: float, warm: float, warm_start: float, tolerance: float) -> float:
    """The early-stopping value of an epoch: its cold-start validation metric, or -inf when warm validation fell
    below (1 - tolerance) x its starting value (tolerance < 0: no constraint). -inf never beats the start."""
    if tolerance < 0 or warm >= (1.0 - tolerance) * warm_start:
        return cold
    return -math.inf


def episodic_windows(sequences: Sequence[np.ndarray], config: EpisodicConfig) -> list[np.ndarray]:
    """Support + query windows from training sequences: one prefix per user, or sampled episodes with max_start."""
    K = config.max_support + config.n_query
    if config.max_start == 0 and config.episodes_per_user == 1:
        return [s[:K] for s in sequences if len(s) >= 2]  # short users give shorter (still valid) episodes
    sampler = EpisodeSampler(
        sequences, support_sizes=(config.max_support,), n_query=config.n_query, max_start=config.max_start, seed=config.seed
    )
    n_users = int(sum(len(s) >= K for s in sequences))
    return [ep.window(sequences[ep.row]) for ep in sampler.sample(n_users * config.episodes_per_user)]


def episodic_finetune(
    model: M,
    sequences: Sequence[np.ndarray],
    train_config: TrainConfig,
    episodic: EpisodicConfig,
    *,
    evaluate: Callable[[M], dict[str, float]] | None = None,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Fine-tune every weight of `model` on episode windows (+ replay) with the one training loop.

    Any trainable model serves. A causal one (the next-item LM) learns every nested episode of a window at once; one
    that learns at the last position only (BSARec) learns the window's longest episode.
    `evaluate` should measure cold-start validation users (``train_config.metric`` names its key); the model
    ends with the best evaluated weights.
    """
    windows = episodic_windows(sequences, episodic)
    if episodic.replay > 0:
        ordinary = training_windows(sequences, model.max_seq_len)
        n = min(len(ordinary), round(episodic.replay * len(windows)))
        pick = np.random.default_rng(episodic.seed).choice(len(ordinary), size=n, replace=False)
        windows = windows + [ordinary[i] for i in sorted(pick)]
    return train_loop(model, windows, train_config, evaluate=evaluate, run_dir=run_dir, callbacks=callbacks)
