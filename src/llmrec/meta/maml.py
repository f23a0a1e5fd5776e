"""First-order MAML of the per-user adapter: where its adaptation starts, and how far it steps.

The adapter itself (a user vector on the output side, its inner loop, scoring with it) is
`llmrec.models.adapter`; its names are re-exported here. This module meta-learns its parameters.

**Outer loop** (`meta_train`): first-order MAML (Finn et al., ICML 2017, https://arxiv.org/abs/1703.03400,
"first-order approximation" §5.2) over episodes from training users: adapt u from its start u₀ on the support,
take the query loss at the adapted u, and move u₀ by that loss's gradient at the adapted point. The inner step
size α is meta-learned too (Meta-SGD, Li et al. 2017, https://arxiv.org/abs/1707.09835, with one scalar α
rather than one per parameter): u_k = u₀ − α Σ_i g_i with the inner gradients g_i treated as constants, so
∂L/∂α = −⟨∇L(u_k), Σ_i g_i⟩ comes out of the same backward pass. The base LM is frozen: only u₀ and log α learn.
The preconditioner (``AdapterConfig.preconditioner``) is meta-learned with α by the same first-order rule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call

from llmrec.data.sequences import pad_left
from llmrec.eval.cold_start import SUPPORT_SIZES
from llmrec.meta.tasks import EpisodeSampler
from llmrec.models.adapter import (
    AdapterConfig,
    UserAdapter,
    adapt,
    adapted_scores,
    has_adapter,
    inner_loop,
    make_adapted_score_fn,
    support_nll,
    support_of,
)
from llmrec.models.base import ItemEmbeddingModel

__all__ = [
    "AdapterConfig",
    "MetaConfig",
    "MetaResult",
    "UserAdapter",
    "adapt",
    "adapted_scores",
    "has_adapter",
    "make_adapted_score_fn",
    "meta_train",
]


# ---- outer loop -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MetaConfig:
    support_sizes: tuple[int, ...] = SUPPORT_SIZES  # support sizes of the training episodes
    n_query: int = 1  # query items per episode
    max_start: int = 0  # episodes start at the user's first item (0) or up to this far in
    meta_batch_size: int = 64  # episodes per outer step
    meta_steps: int = 2000  # upper bound on outer steps; early stopping usually ends sooner
    outer_lr: float = 0.01  # Adam on u₀ and log α
    learn_inner_lr: bool = True  # meta-learn α (else it stays at AdapterConfig.inner_lr)
    eval_every: int = 100  # outer steps between validation evaluations
    patience: int = 5  # evaluations without improvement before stopping
    seed: int = 0  # episode sampling

    def __post_init__(self) -> None:
        if self.meta_batch_size < 1 or self.meta_steps < 1 or self.eval_every < 1 or self.outer_lr <= 0:
            raise ValueError("meta_batch_size, meta_steps, eval_every must be >= 1 and outer_lr > 0")


@dataclass
class MetaResult:
    best_step: int
    best_metric: float
    steps_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def meta_train(
    model: ItemEmbeddingModel,
    adapter: UserAdapter,
    sequences: Sequence[np.ndarray],
    config: MetaConfig,
    *,
    evaluate: Callable[[UserAdapter], float] | None = None,
) -> MetaResult:
    """First-order MAML on (u₀, log α) over episodes from `sequences` (training users only); the LM stays frozen.

    `evaluate(adapter)` (higher is better, on validation users) runs every `eval_every` steps; the adapter ends
    with the best evaluated state (the last state when evaluate is None).
    """
    if max(config.support_sizes) > adapter.config.max_history:
        raise ValueError(
            f"adapter.max_history={adapter.config.max_history} is shorter than the largest support size {max(config.support_sizes)}"
        )
    if isinstance(model, torch.nn.Module):
        model.eval()  # frozen: dropout off
    sampler = EpisodeSampler(
        sequences, support_sizes=config.support_sizes, n_query=config.n_query, max_start=config.max_start, seed=config.seed
    )
    learned_step = [adapter.log_inner_lr] + ([adapter.precond] if hasattr(adapter, "precond") else [])
    params = [adapter.user] + (learned_step if config.learn_inner_lr else [])
    opt = torch.optim.Adam(params, lr=config.outer_lr)
    best = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
    best_metric, best_step, bad, losses = -math.inf, 0, 0, []
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    step = 0
    for step in range(1, config.meta_steps + 1):
        episodes = sampler.sample(config.meta_batch_size)
        windows = [ep.window(sequences[ep.row]) for ep in episodes]
        supports = [w[: ep.n_support] for w, ep in zip(windows, episodes, strict=True)]
        support = support_of(model, pad_left(supports, model.max_seq_len), adapter.config)
        user = inner_loop(adapter, support, adapter.config.inner_steps, keep_graph=True)  # [B, D]
        # Query item j is predicted from everything before it (support + earlier queries), as at test time.
        q = config.n_query
        with torch.no_grad():
            context = model.encode(pad_left([w[:-1] for w in windows], model.max_seq_len))[:, -q:]  # [B, Q, D]
        targets = torch.from_numpy(np.stack([w[-q:] for w in windows]))  # [B, Q]
        shifted = functional_call(adapter, {"user": user}, (context,))  # [B, Q, D]
        loss = support_nll(shifted, support.table, targets).div(len(episodes))
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()
        losses.append(loss.item())
        if step % config.eval_every and step != config.meta_steps:
            continue
        row = {"step": float(step), "query_loss": float(np.mean(losses[-config.eval_every :])), "inner_lr": adapter.inner_lr}
        if evaluate is not None:
            metric = evaluate(adapter)
            row["valid"] = metric
        else:
            metric = -row["query_loss"]
        history.append(row)
        if metric > best_metric:
            best_metric, best_step, bad = metric, step, 0
            best = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    adapter.load_state_dict(best)
    return MetaResult(
        best_step=best_step, best_metric=best_metric, steps_run=step, history=history, seconds=time.perf_counter() - t0
    )
