"""The per-user adapter of a meta-trained artifact: adaptation to a handful of items, and scoring with it.

**The adapter: a user vector on the output side.** One vector u ∈ R^D per user, added to the LM's final hidden
state before the item softmax:

    logits_j = (h_t + u) · e_j  =  h_t · e_j  +  u · e_j          (e_j = the item's output embedding)

i.e. the user factor of matrix factorisation laid on top of the sequence model. Why this one of the three the
issue lists (a user token, a low-rank adapter on the last block, the output bias):

- the output bias (one free scalar per item) can only raise the support items themselves: its gradient
  is softmax − one-hot, so an item never in the support just gets pushed down with everything else. A cold
  user needs the *neighbours* of the support raised; u moves every item through the shared embedding
  geometry, so items close to the support rise together;
- a low-rank adapter on the last block has 2·r·D parameters per adapted matrix, far more than ≤ 5 items can
  pin down without overfitting; u has D (64), and a meta-learned start and step size regularise it;
- a user token on the input side needs a backward pass through every block at each inner step; u sits after
  the transformer, so the support's hidden states are computed once (no gradient) and each inner step is one
  [n, D] × [D, V] product: adaptation costs ~1 ms, far inside the 50 ms budget, and the base weights are
  never in the autograd graph at all.

**Inner loop** (`adapt`): k steps of plain SGD on u alone, through `torch.func.functional_call` on the adapter
with u as the only swapped tensor. The support loss is the LM's own: ``support_loss="next"`` scores each
support item from the state of the items before it (n − 1 targets; with one item there is nothing to fit and
u stays at its start), ``"bag"`` scores every support item from the state after the whole support (the MF
objective "this user chose these"; fits even n = 1). Which one is chosen on cold-start validation users.
Deterministic: no sampling, dropout off. Only histories of at most ``max_history`` items (default 5, the largest
meta-training support) are adapted; a longer history is scored by the LM exactly as without the adapter — the
adapter is a cold-start tool, and fitted to a long history it costs warm users accuracy (docs/cold-start.md).

**Learned preconditioner** (``preconditioner="diagonal" | "matrix"``): the inner step becomes α g ⊙ p or α g P,
with p ∈ R^D (Meta-SGD's per-coordinate step, Li et al. 2017) or P ∈ R^{D×D} (a meta-learned linear warp of the
gradient, as in Meta-Curvature, Park & Oliva 2019, https://arxiv.org/abs/1902.03356). They start at ones / the
identity, i.e. exactly the scalar step, and are meta-learned with α by the same first-order rule: with the inner
gradients constant, u_k is linear in p (or P), so their meta-gradient costs one product. This lets meta-training
decide *which directions* of the user space a few support items should move, not only how far.

Where u starts (u₀), the step size α and the preconditioner are meta-learned by `llmrec.meta.maml`; this module
is what an artifact needs at recommendation time (the `Recommender`, the evaluators), so it sits with the models.
The adapter reads a model only through `llmrec.models.base.ItemEmbeddingModel` (``encode`` and ``item_table``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.func import functional_call

from llmrec.data.sequences import pad_left
from llmrec.models.base import ItemEmbeddingModel
from llmrec.types import PAD_ID

__all__ = [
    "AdapterConfig",
    "Support",
    "UserAdapter",
    "adapt",
    "adapted_scores",
    "has_adapter",
    "inner_loop",
    "make_adapted_score_fn",
    "support_nll",
    "support_of",
]

SUPPORT_LOSSES = ("next", "bag")
PRECONDITIONERS = ("scalar", "diagonal", "matrix")
_CONFIG_FILE = "adapter.json"
_WEIGHTS_FILE = "adapter.safetensors"


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    d_model: int  # width of the LM it adapts (written from the LM's config)
    inner_steps: int = 5  # SGD steps on the user's support
    inner_lr: float = 1.0  # initial SGD step size (meta-training may learn it)
    support_loss: str = "bag"  # "bag": every support item from the last state | "next": each item from its prefix
    max_history: int = 5  # longer histories are not adapted (the base LM scores them); >= the meta-training supports
    # How a support gradient becomes a step: "scalar" (u -= α g), "diagonal" (u -= α g ⊙ p, p ∈ R^D) or "matrix"
    # (u -= α g P, P ∈ R^{D×D}); p and P start at ones / the identity (= "scalar") and are meta-learned with α.
    preconditioner: str = "scalar"

    def __post_init__(self) -> None:
        if self.support_loss not in SUPPORT_LOSSES:
            raise ValueError(f"support_loss must be one of {SUPPORT_LOSSES}, got {self.support_loss!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {self.preconditioner!r}")
        if self.inner_steps < 0 or self.inner_lr <= 0 or self.max_history < 1 or self.d_model < 1:
            raise ValueError("inner_steps >= 0, inner_lr > 0, max_history >= 1 and d_model >= 1 are required")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdapterConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown AdapterConfig keys: {', '.join(sorted(unknown))}")
        return cls(**d)


class UserAdapter(nn.Module):
    """u₀ (the start of every user's vector) and log α (the inner step size); forward adds u to hidden states."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.user = nn.Parameter(torch.zeros(config.d_model))  # [D] u₀; zero = the base LM unchanged
        self.log_inner_lr = nn.Parameter(torch.tensor(math.log(config.inner_lr)))
        if config.preconditioner == "diagonal":
            self.precond = nn.Parameter(torch.ones(config.d_model))  # [D]
        elif config.preconditioner == "matrix":
            self.precond = nn.Parameter(torch.eye(config.d_model))  # [D, D]

    def step(self, grad: torch.Tensor, precond: torch.Tensor | None) -> torch.Tensor:
        """The un-scaled inner step for gradients grad [B, D]: g, g ⊙ p or g P."""
        if precond is None:
            return grad
        return grad * precond if precond.ndim == 1 else grad @ precond

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, N, D] + user ([D] shared or [B, D] per user, as swapped in by the inner loop) -> [B, N, D]."""
        user = self.user if self.user.ndim == 2 else self.user.unsqueeze(0)  # [B or 1, D]
        return hidden + user.unsqueeze(1)

    @property
    def inner_lr(self) -> float:
        return float(self.log_inner_lr.detach().exp())

    def save_pretrained(self, path: str | Path) -> None:
        """Write adapter.json + adapter.safetensors into `path` (beside a model's own files)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / _CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(path / _WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> UserAdapter:
        path = Path(path)
        adapter = cls(AdapterConfig.from_dict(json.loads((path / _CONFIG_FILE).read_text())))
        adapter.load_state_dict(load_file(str(path / _WEIGHTS_FILE)))
        return adapter.eval()


def has_adapter(path: str | Path) -> bool:
    return (Path(path) / _CONFIG_FILE).is_file()


# ---- inner loop -------------------------------------------------------------------------------------


@dataclass
class Support:
    """What the inner loop needs from the frozen LM, computed once per batch of users (no gradient)."""

    states: torch.Tensor  # [B, N, D] hidden states that score the support targets
    targets: torch.Tensor  # [B, N] support items (PAD where none)
    last: torch.Tensor  # [B, D] state after the whole history: scores the next item
    table: torch.Tensor  # [V+1, D] output item embeddings


@torch.no_grad()
def support_of(model: ItemEmbeddingModel, item_ids: torch.Tensor, config: AdapterConfig) -> Support:
    """item_ids [B, L] left-padded histories -> the support of each (at most its last max_history items)."""
    h = model.encode(item_ids)  # [B, L', D] (L' <= max_seq_len: the model keeps the most recent items)
    ids = item_ids[:, -h.shape[1] :]  # [B, L']
    M = config.max_history
    if config.support_loss == "next":
        states = h[:, :-1][:, -M:]  # [B, N, D]: the state after item t ...
        targets = ids[:, 1:][:, -M:].clone()  # [B, N]    ... scores item t+1
        targets[ids[:, :-1][:, -M:] == PAD_ID] = PAD_ID  # the first real item has no state before it
    else:
        targets = ids[:, -M:]  # [B, N]
        states = h[:, -1:].expand(-1, targets.shape[1], -1)  # [B, N, D]
    # detach: without item features item_table() is the embedding Parameter itself, and the LM must stay out of
    # every graph (no gradient may reach it, not even an accumulated .grad).
    return Support(states=states, targets=targets, last=h[:, -1], table=model.item_table().detach())


def support_nll(shifted: torch.Tensor, table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over users of each user's mean −log P(target) over its real targets. [B, N, D] -> scalar."""
    B, N, _ = shifted.shape
    logits = shifted @ table[1:].T  # [B, N, V] (PAD is not a class, as in the LM's own loss)
    real = targets != PAD_ID  # [B, N]
    nll = F.cross_entropy(logits.reshape(B * N, logits.shape[-1]), (targets - 1).clamp_min(0).reshape(-1), reduction="none")
    per_user = (nll.view(B, N) * real).sum(1) / real.sum(1).clamp_min(1)  # [B]
    return per_user.sum()


def inner_loop(adapter: UserAdapter, support: Support, steps: int, *, keep_graph: bool) -> torch.Tensor:
    """k SGD steps on each user's vector from u₀: returns [B, D].

    keep_graph=False (inference): the result is detached. keep_graph=True (meta-training): the result stays a
    function of u₀ (identity, first order) and α, with the inner gradients as constants.
    """
    B = support.states.shape[0]
    with torch.enable_grad():  # adaptation needs gradients even inside evaluation's torch.no_grad()
        user = adapter.user.expand(B, -1)  # [B, D]
        lr = adapter.log_inner_lr.exp()
        precond: torch.Tensor | None = getattr(adapter, "precond", None)
        if not keep_graph:
            user, lr = user.detach().clone().requires_grad_(True), lr.detach()
            precond = None if precond is None else precond.detach()
        for _ in range(steps):
            shifted = functional_call(adapter, {"user": user}, (support.states,))  # [B, N, D]
            loss = support_nll(shifted, support.table, support.targets)
            (grad,) = torch.autograd.grad(loss, user)  # [B, D], no graph; users are independent terms of the sum
            user = user - lr * adapter.step(grad, precond)
    return user if keep_graph else user.detach()


def adapt(model: ItemEmbeddingModel, adapter: UserAdapter, item_ids: torch.Tensor, *, steps: int | None = None) -> torch.Tensor:
    """Adapted user vectors [B, D] for left-padded histories item_ids [B, L]; the LM is read, never changed.

    Histories longer than ``max_history`` get the zero vector: the adapter is meta-trained on few-shot supports and
    is not used on long histories, which the base LM already reads well (docs/cold-start.md, warm users).
    """
    support = support_of(model, item_ids, adapter.config)
    user = inner_loop(adapter, support, adapter.config.inner_steps if steps is None else steps, keep_graph=False)
    is_short = (item_ids != PAD_ID).sum(1) <= adapter.config.max_history  # [B]
    return user * is_short.unsqueeze(1)


@torch.no_grad()
def adapted_scores(
    model: ItemEmbeddingModel, adapter: UserAdapter, item_ids: torch.Tensor, *, steps: int | None = None
) -> torch.Tensor:
    """Next-item scores [B, V+1] after adapting to each history item_ids [B, L] (column 0 = -inf).

    A history longer than ``max_history`` is scored exactly as the base LM scores it.
    """
    support = support_of(model, item_ids, adapter.config)
    user = inner_loop(adapter, support, adapter.config.inner_steps if steps is None else steps, keep_graph=False)
    user = user * ((item_ids != PAD_ID).sum(1) <= adapter.config.max_history).unsqueeze(1)  # [B, D]
    scores = (support.last + user) @ support.table.T  # [B, V+1]
    if getattr(model, "blends_text", False):  # the title term of `text_blend`, as the model's own score() adds it
        scores = model.blend_recent_text(scores, item_ids)  # type: ignore[attr-defined]
    scores[:, PAD_ID] = float("-inf")
    return scores


def make_adapted_score_fn(
    model: ItemEmbeddingModel,
    adapter: UserAdapter,
    *,
    steps: int | None = None,
    chunk: int = 64,
    max_seq_len: int | None = None,
) -> Callable[[list[np.ndarray]], torch.Tensor]:
    """A ScoreFn (llmrec.eval) that adapts to every history before scoring it, `chunk` users at a time.

    `llmrec.eval.score_fn(model, adapter=adapter)` is the usual way in; histories are left-padded to
    `max_seq_len` (default: the model's)."""
    length = model.max_seq_len if max_seq_len is None else max_seq_len

    def score(histories: list[np.ndarray]) -> torch.Tensor:
        parts = [
            adapted_scores(model, adapter, pad_left(histories[i : i + chunk], length), steps=steps)
            for i in range(0, len(histories), chunk)
        ]
        return torch.cat(parts)

    return score
