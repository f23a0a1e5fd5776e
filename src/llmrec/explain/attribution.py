"""Which history items drove a recommendation, and a test of whether that answer is faithful.

Two attributions of the score s(h, j) of a recommended item j to the items h_1..h_T of the history:

- ``occlusion`` (exact): a_t = s(h, j) − s(h without h_t, j), the drop of the score when item t is deleted
  from the history. All T variants go through the model in one batched forward pass. Items older than the
  model's window (``max_seq_len``) are not read, and deleting one of them changes nothing, so their
  attribution is exactly 0; deleting an item inside the window lets the next older item slide in, as it would
  for a user who never had that item.
- ``gradient`` (cheap estimate, models with token inputs: `GradientAttributable`): gradient × input (Shrikumar et al. 2016,
  https://arxiv.org/abs/1605.01713) on the token inputs of the first transformer block (item embedding +
  item features + position), a_t = ⟨∂s/∂x_t, x_t⟩: one forward and one backward pass.

Whether an attribution may be *named* as the reason: ``occlusion_reasons`` scores the whole catalogue for the T
shortened histories (and for the newest k items deleted together, ``REASON_GROUPS``) and keeps a history item, or
a group when no single item passes, only when the recommended item reacts to its deletion more than all but
``REASON_LEVEL`` (``REASON_LEVEL_LONG`` for long windows) of the catalogue reacts to any one of the deletions
(docs/trust.md, "When an explanation names no item"); the gradient keeps the global ``MIN_STRENGTH`` threshold.

Faithfulness, as in the deletion metric of Petsiuk et al. ("RISE", BMVC 2018, https://arxiv.org/abs/1806.07421)
and the comprehensiveness score of DeYoung et al. ("ERASER", ACL 2020): removing the most attributed items
should lower the score more than removing random ones. ``deletion_test`` measures how often it does, and the
deletion curve (mean score drop after removing the top-m attributed items vs m random ones).

The model must be in eval mode (dropout off), as `Recommender.load` leaves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from llmrec.data.sequences import pad_left
from llmrec.eval.scoring import model_device
from llmrec.models.base import GradientAttributable, ItemEmbeddingModel, RecModel

__all__ = [
    "METHODS",
    "MIN_STRENGTH",
    "LONG_WINDOW",
    "REASON_GROUPS",
    "REASON_LEVEL",
    "REASON_LEVEL_LONG",
    "DeletionResult",
    "attribute",
    "deletion_test",
    "gradient_x_input",
    "is_weak",
    "occlusion",
    "occlusion_reasons",
    "reason_groups",
    "reason_level",
    "score_spread",
    "strength",
    "target_scores",
]

# An explanation names a history item only when that item's attribution is at least MIN_STRENGTH standard
# deviations of the model's scores over the catalogue (`strength`). Measured by benchmarks/explain_threshold.py on
# ml-100k: the 95th percentile of the strongest attribution of untrained (re-initialised) and shuffled-weight
# models, which explain nothing; see docs/trust.md ("When an explanation names no item").
MIN_STRENGTH = 0.65

# `occlusion_reasons` names history item t for a recommended item only when deleting t moves the user's
# representation away from that item more than away from all but REASON_LEVEL of the catalogue, the maximum over
# the deletions tried (so a long history gets no more chances than a short one). Chosen on beauty validation
# histories against a weight-shuffled TV-Rec (single items: at 0.1 it names 7.6% of its top-5 items, the trained
# model 55%; at 0.2, 28%; with REASON_GROUPS: 3.4% and 74%); docs/trust.md ("When an explanation names no item"),
# benchmarks/explain_reason_level.py.
REASON_LEVEL = 0.1
# Windows of more than LONG_WINDOW items are tested at REASON_LEVEL_LONG: there a weight-shuffled TV-Rec's own top-5
# items seldom react to any deletion more than the catalogue does (with REASON_GROUPS at 0.2 it names 1.9% on beauty's
# long windows and 2.4% on ml-100k, against 6.9% at 0.1 on beauty's 1-3-item windows), while the trained model's
# recommendations depend on many items a little (ml-100k validation: 31% named at 0.1, 52% at 0.2).
LONG_WINDOW = 10
REASON_LEVEL_LONG = 0.2

# When no single item passes, the test tries the newest k items deleted together, for each k here below the window's
# length (`reason_groups`): fixed by the window's length, never by the item explained, so one max-T threshold covers
# the singles and the groups. Chosen on validation histories among recent blocks of 2-8 items, halves and thirds of
# the window and nested recent groups (docs/trust.md, "When an explanation names no item").
REASON_GROUPS = (2, 3, 5, 8, 13, 21, 34)


@torch.no_grad()
def target_scores(model: RecModel, item_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Scores of the items `targets` [K] for the histories item_ids [B, L] -> [B, K] on the CPU.

    For a model with item embeddings (`ItemEmbeddingModel`) only the K needed columns of the output layer are
    computed (the full score() would compute all V); any other model goes through its score(). Inputs go to the
    device of the model's weights.
    """
    device = model_device(model)
    item_ids, targets = item_ids.to(device), targets.to(device)
    if isinstance(model, ItemEmbeddingModel):
        h = model.encode(item_ids)[:, -1]  # [B, D]
        return (h @ model.item_table()[targets].T).cpu()  # [B, K]
    return model.score(item_ids)[:, targets].cpu()


@torch.no_grad()
def score_spread(model: RecModel, history: np.ndarray, max_seq_len: int) -> float:
    """Standard deviation of the model's scores of every item (padding left out) for one history: the scale an
    attribution is compared with (a drop of 0.01 means nothing when scores spread over several units). For a model
    with item embeddings that is the sequence model's own score, ``encode(...)[:, -1] @ item_table()``, the score
    every attribution here reads (`target_scores`; a title term that `text_blend` adds when serving is not in it)."""
    ids = pad_left([np.asarray(history, dtype=np.int64)], max_seq_len).to(model_device(model))
    if isinstance(model, ItemEmbeddingModel):
        s = (model.encode(ids)[:, -1] @ model.item_table().T)[0, 1:].float()  # [V]
    else:
        s = model.score(ids)[0, 1:].float()  # [V]
    s = s[torch.isfinite(s)]
    return float(s.std()) if s.numel() > 1 else 0.0


def strength(weight: float, spread: float) -> float:
    """An attribution in units of the score spread (`score_spread`); 0 when the scores do not spread at all."""
    return weight / spread if spread > 0 else 0.0


def is_weak(weight: float, spread: float, threshold: float = MIN_STRENGTH) -> bool:
    """True when the strongest attribution is too weak to name an item as the reason (below `threshold`)."""
    return strength(weight, spread) < threshold


def _window(n: int, max_seq_len: int) -> range:
    """Positions of a length-n history that the model reads (the most recent max_seq_len)."""
    return range(max(0, n - max_seq_len), n)


def occlusion(model: RecModel, history: np.ndarray, targets: npt.ArrayLike, max_seq_len: int) -> np.ndarray:
    """Exact occlusion: history [T] internal ids, targets [K] -> [K, T] score drop when each item is deleted."""
    history = np.asarray(history, dtype=np.int64)
    tgt = torch.as_tensor(np.asarray(targets, dtype=np.int64).reshape(-1))
    window = _window(len(history), max_seq_len)
    out = np.zeros((len(tgt), len(history)), dtype=np.float32)
    if len(history) == 0:
        return out
    variants = [history] + [np.delete(history, t) for t in window]  # full history, then one deletion each
    s = target_scores(model, pad_left(variants, max_seq_len), tgt)  # [1 + W, K]
    out[:, window.start :] = (s[:1] - s[1:]).T.numpy()  # [K, W]
    return out


def reason_groups(n_window: int, sizes: Sequence[int] | None = None) -> list[range]:
    """The groups of history items the test for a reason tries besides the single items: the newest k items of the
    model's window (n_window items, positions 0..n_window-1, oldest first) for each k in `sizes` (None:
    REASON_GROUPS) with 2 <= k < n_window. Deleting the whole window is no reason, and groups of one are the singles."""
    return [range(n_window - k, n_window) for k in (REASON_GROUPS if sizes is None else sizes) if 2 <= k < n_window]


def reason_level(n_window: int) -> float:
    """The level of the test for a reason for a window of n_window items: REASON_LEVEL, or REASON_LEVEL_LONG for
    windows of more than LONG_WINDOW items."""
    return REASON_LEVEL_LONG if n_window > LONG_WINDOW else REASON_LEVEL


@torch.no_grad()
def occlusion_reasons(
    model: RecModel,
    history: np.ndarray,
    targets: npt.ArrayLike,
    max_seq_len: int,
    level: float | None = None,
    group_sizes: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Occlusion [K, T] (as `occlusion`) and which of its entries are reasons [K, T] (bool).

    The candidate deletions are the W single items of the model's window and the groups of `reason_groups` (the
    newest k items deleted together, k in `group_sizes`; None: REASON_GROUPS; (): single items only). The shortened histories go through the model once,
    scoring the whole catalogue. For deletion f and catalogue item g, c_f(g) = drop of g's score / |e_g| is how
    far the deletion moves the user's representation away from g's direction (dividing by the norm of g's output
    embedding keeps items with large embeddings, whose scores react to any change of the input, from looking
    special; models without an item table use the raw drop). z_f(g) standardises c_f over the unseen catalogue.
    The max statistic Z(g) = max_f z_f(g) over all the candidate deletions has, over the unseen catalogue, a
    (1 - level) quantile τ (Westfall & Young's max-T correction for trying them all): a catalogue item passes
    for some deletion with probability `level` (None: `reason_level` of the window's length), whatever the
    history's length. For target k:

    - history item t (not k itself) is a reason when z_t(k) > τ and deleting t lowers k's score;
    - when no single item is, the items of the group whose deletion passes with the largest z (and lowers k's
      score) are reasons together: many items that each move the score a little can pass as a block.
    """
    history = np.asarray(history, dtype=np.int64)
    tgt = np.asarray(targets, dtype=np.int64).reshape(-1)
    window = _window(len(history), max_seq_len)
    weights = np.zeros((len(tgt), len(history)), dtype=np.float32)
    reasons = np.zeros((len(tgt), len(history)), dtype=bool)
    if len(history) == 0:
        return weights, reasons
    W = len(window)
    groups = reason_groups(W, group_sizes)  # positions in the window
    level = reason_level(W) if level is None else level
    deleted = [[t] for t in range(W)] + [list(g) for g in groups]  # singles, then groups: F = W + G deletions
    variants = [history] + [np.delete(history, [window.start + t for t in d]) for d in deleted]
    s = model.score(pad_left(variants, max_seq_len).to(model_device(model))).float()  # [1 + F, V + 1]
    drop = s[:1] - s[1:]  # [F, V + 1]
    if isinstance(model, ItemEmbeddingModel):
        drop = drop / model.item_table().float().norm(dim=1).clamp_min(1e-12)  # [F, V + 1]
    reference = torch.isfinite(s[0])  # [V + 1]: column 0 (padding) and masked items are -inf in every row
    reference[torch.from_numpy(history).to(s.device)] = False  # compare with unseen items
    idx = torch.from_numpy(tgt).to(s.device)
    w = (s[0, idx][None, :] - s[1:, idx]).T  # [K, F]: the score drop of each target under each deletion
    weights[:, window.start :] = w[:, :W].cpu().numpy()
    if int(reference.sum()) < 2:
        return weights, reasons
    ref = drop[:, reference]  # [F, R]
    # mean and standard deviation over the catalogue as matrix products: torch's std_mean is ~20x slower on a CPU
    avg = torch.full((ref.shape[1], 1), 1.0 / ref.shape[1], device=ref.device)  # [R, 1]
    mean = ref @ avg  # [F, 1]
    centred = ref - mean  # [F, R]
    sd = ((centred * centred) @ avg).sqrt().clamp_min(1e-12)  # [F, 1]
    top = (centred / sd).amax(0)  # [R]: Z(g) = max_f z_f(g)
    n_above = min(int(level * top.numel()), top.numel() - 1)  # the (1 - level) quantile: n_above items lie above it
    tau = torch.kthvalue(top, top.numel() - n_above).values  # max-T threshold over the catalogue
    z = ((drop[:, idx] - mean) / sd).T  # [K, F]
    passed = ((z > tau) & (w > 0)).cpu().numpy()  # [K, F]
    z_np = z.cpu().numpy()
    # the history items a reason may name for each target: a positive weight, and never the target itself
    citable = (weights[:, window.start :] > 0) & (history[window.start :][None, :] != tgt[:, None])  # [K, W]
    for k in range(len(tgt)):
        if (passed[k, :W] & citable[k]).any():
            reasons[k, window.start :] = passed[k, :W] & citable[k]
            continue
        in_group = [f for f in range(W, len(deleted)) if passed[k, f] and citable[k, deleted[f]].any()]
        if in_group:  # the passing group the target reacts to most: its citable items are the reason together
            members = np.array(deleted[max(in_group, key=lambda f: z_np[k, f])])
            reasons[k, window.start + members[citable[k, members]]] = True
    return weights, reasons


def gradient_x_input(model: RecModel, history: np.ndarray, targets: npt.ArrayLike, max_seq_len: int) -> np.ndarray:
    """Gradient × input on the token representations entering the model's `token_input_module`: history [T],
    targets [K] -> [K, T]."""
    hooked = model.token_input_module() if isinstance(model, GradientAttributable) else None
    if not isinstance(model, GradientAttributable) or hooked is None:
        raise TypeError(f"gradient attribution needs a model with token inputs ({type(model).__name__}); use occlusion")
    history = np.asarray(history, dtype=np.int64)
    tgt = torch.as_tensor(np.asarray(targets, dtype=np.int64).reshape(-1))
    K, T = len(tgt), len(history)
    out = np.zeros((K, T), dtype=np.float32)
    if T == 0:
        return out
    ids = pad_left([history], max_seq_len).expand(K, -1)  # [K, L]: one row per target, so one backward serves all
    captured: list[torch.Tensor] = []

    def _as_leaf(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0].detach().requires_grad_(True)  # [K, L, D]
        captured.append(x)
        return (x, *args[1:])

    handle = hooked.register_forward_pre_hook(_as_leaf)
    try:
        with torch.enable_grad():
            h = model.encode(ids)[:, -1]  # [K, D]
            s = (h * model.item_table()[tgt].detach()).sum()  # rows are independent: d s / d x_k = d s_k / d x_k
            (grad,) = torch.autograd.grad(s, captured[0])  # [K, L, D]
    finally:
        handle.remove()
    contrib = (grad * captured[0].detach()).sum(-1)  # [K, L]
    W = min(T, ids.shape[1])
    out[:, T - W :] = contrib[:, -W:].numpy()
    return out


METHODS: dict[str, Callable[[Any, np.ndarray, npt.ArrayLike, int], np.ndarray]] = {
    "occlusion": occlusion,
    "gradient": gradient_x_input,
}


def attribute(
    model: RecModel, history: np.ndarray, targets: npt.ArrayLike, max_seq_len: int, method: str = "occlusion"
) -> np.ndarray:
    """Attributions [K, T] of the targets' scores to the history items with `method` ("occlusion" | "gradient")."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; one of {', '.join(METHODS)}")
    return METHODS[method](model, history, targets, max_seq_len)


@dataclass(frozen=True)
class DeletionResult:
    """Outcome of `deletion_test`; drops are in the model's score units (logits for a NextItemLM)."""

    method: str
    n_cases: int
    n_remove: int
    win_rate: float  # share of (case, random draw) pairs where deleting the top-n_remove attributed drops more
    mean_drop_attributed: float  # mean score drop after deleting the n_remove most attributed items
    mean_drop_random: float  # ... after deleting n_remove random items (from the model's window)
    curve_attributed: list[float]  # mean drop after deleting the top-m attributed items, m = 0..M
    curve_random: list[float]  # mean drop after deleting m random items, m = 0..M
    # Share of the (case, random draw) pairs whose random draw deleted exactly the attributed items (same positions):
    # a tie, counted as no win. Short histories make it common (3 items, 2 deleted: a third of the draws).
    identical_rate: float = 0.0
    win_rate_distinct: float = float("nan")  # win rate over the pairs whose random draw differs from the attributed one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deletion_test(
    model: RecModel,
    histories: Sequence[np.ndarray],
    max_seq_len: int,
    *,
    targets: npt.ArrayLike | None = None,
    method: str = "occlusion",
    n_remove: int = 2,
    curve_steps: int = 10,
    n_random: int = 5,
    seed: int = 0,
) -> DeletionResult:
    """Delete the top attributed vs random history items and compare how much the target's score drops.

    targets: the item explained for each history (default: the model's top-1 among unseen items). Random
    deletions are drawn from the model's window (deleting an unread item changes nothing, which would flatter
    the attribution). Cases whose window has at most `curve_steps` items are skipped.
    """
    if not 1 <= n_remove <= curve_steps:
        raise ValueError(f"need 1 <= n_remove <= curve_steps, got {n_remove} and {curve_steps}")
    rng = np.random.default_rng(seed)
    hs = [np.asarray(h, dtype=np.int64) for h in histories]
    if targets is None:
        scores = model.score(pad_left(hs, max_seq_len).to(model_device(model))).cpu().clone()  # [B, V+1], column 0 = -inf
        for i, h in enumerate(hs):
            scores[i, torch.from_numpy(h)] = float("-inf")
        tgt = scores.argmax(1).numpy()
    else:
        tgt = np.asarray(targets, dtype=np.int64).reshape(-1)
    M = curve_steps
    wins: list[float] = []
    identical: list[bool] = []
    drops_attr: list[float] = []
    drops_rand: list[float] = []
    curves_attr, curves_rand = [], []
    for h, j in zip(hs, tgt, strict=True):
        window = _window(len(h), max_seq_len)
        if len(window) <= M:
            continue
        a = attribute(model, h, [j], max_seq_len, method)[0, window.start :]  # [W]
        by_attr = window.start + np.argsort(-a, kind="stable")  # positions, most attributed first
        orders = [by_attr] + [window.start + rng.permutation(len(window)) for _ in range(n_random)]
        variants = [h] + [np.delete(h, order[:m]) for order in orders for m in range(1, M + 1)]
        s = target_scores(model, pad_left(variants, max_seq_len), torch.tensor([int(j)]))[:, 0].numpy()
        drop = (s[0] - s[1:]).reshape(1 + n_random, M)  # [1 + R, M]: row 0 attributed, rows 1.. random
        curves_attr.append(drop[0])
        curves_rand.append(drop[1:].mean(0))
        drops_attr.append(drop[0, n_remove - 1])
        drops_rand.append(drop[1:, n_remove - 1].mean())
        wins.extend(drop[0, n_remove - 1] > drop[1:, n_remove - 1])
        top = set(by_attr[:n_remove].tolist())
        identical.extend(set(order[:n_remove].tolist()) == top for order in orders[1:])
    if not wins:
        raise ValueError(f"no history has more than curve_steps={M} items in the model's window")
    zero = [0.0]
    distinct = ~np.array(identical)
    return DeletionResult(
        method=method,
        n_cases=len(drops_attr),
        n_remove=n_remove,
        win_rate=float(np.mean(wins)),
        mean_drop_attributed=float(np.mean(drops_attr)),
        mean_drop_random=float(np.mean(drops_rand)),
        curve_attributed=zero + np.mean(curves_attr, 0).tolist(),
        curve_random=zero + np.mean(curves_rand, 0).tolist(),
        identical_rate=float(np.mean(identical)),
        win_rate_distinct=float(np.mean(np.array(wins)[distinct])) if distinct.any() else float("nan"),
    )
