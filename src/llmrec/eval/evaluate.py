"""Evaluate a next-item model by full ranking, with segments and confidence intervals.

A model is seen only through a `ScoreFn`: given B histories (1-D int64 arrays of item ids, oldest first,
possibly empty) it returns scores ``[B, n_items + 1]``; column 0 is padding and is never ranked. The
protocol (see docs/DESIGN.md, "Evaluation protocol") ranks each held-out target against **all** items;
`evaluate_split` is that protocol and is what reports are built from.

Seen items (``exclude_seen=True``) follow the published convention (RecBole; the BSARec / TV-Rec family): every
item in the user's history is removed from the ranking, **the target included**, so a target the user had
already consumed (a repeat) counts as a miss. Keeping a repeated target rankable while removing every other
history item would tell the ranking which history item is the answer. `repeat_targets` counts such examples;
`evaluate_split_both` measures both protocols from one scoring pass.

`sampled_ranks` implements the older sampled-negatives protocol (target vs 100 sampled items) only so
that published numbers measured that way can be reproduced. It inflates HR@10 several-fold, so its
metrics are always keyed ``sampled-<n>/...`` by `sampled_metrics` and never share a key with full ranking.

Statistics: `bootstrap_ci` is a percentile bootstrap over users; `paired_test` compares two models on
the same users with a paired bootstrap CI of the mean difference and a sign-flip permutation p-value.

This module runs one split end to end (`evaluate_split`, `evaluate_split_both`, `EvalResult`); the ranking
itself lives in `llmrec.eval.ranking` and the statistics in `llmrec.eval.stats`, both re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from llmrec.eval.metrics import DEFAULT_KS, ndcg_at_k, recall_at_k, summarize
from llmrec.eval.ranking import (
    compute_ranks,
    compute_ranks_and_topk,
    rank_and_topk,
    repeat_targets,
    sampled_metrics,
    sampled_ranks,
)
from llmrec.eval.scoring import ScoreFn
from llmrec.eval.stats import (
    HISTLEN_SEGMENTS,
    POP_SEGMENTS,
    bootstrap_ci,
    bootstrap_means,
    check_n_boot,
    paired_test,
    segment_metrics,
)

__all__ = [
    "HISTLEN_SEGMENTS",
    "POP_SEGMENTS",
    "EvalResult",
    "ScoreFn",
    "bootstrap_ci",
    "compute_ranks",
    "compute_ranks_and_topk",
    "evaluate_split",
    "evaluate_split_both",
    "paired_test",
    "repeat_targets",
    "sampled_metrics",
    "sampled_ranks",
    "segment_metrics",
]

IntArray = npt.NDArray[np.int64]

# ScoreFn: histories (B arrays of item ids, oldest first) -> scores [B, n_items + 1]; column 0 is padding.
# `llmrec.eval.scoring.score_fn(model)` makes one for any model.


# ----------------------------------------------------------------------------------------------------
# One split, end to end
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class EvalResult:
    """Full-ranking evaluation of one split.

    metrics: `summarize` keys (``recall@10``, ``ndcg@10``, ``mrr`` ...), means over users.
    ci: percentile-bootstrap 95% interval per ``recall@k`` / ``ndcg@k``; empty when n_boot was 0.
    segments: segment name -> {``n``, metrics} (see `segment_metrics`).
    ranks: [N] the target's 1-based rank per example, for paired tests between models.
    repeat_targets: examples whose target is already in the history (misses when exclude_seen).
    """

    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    segments: dict[str, dict[str, float]]
    ranks: IntArray
    n: int
    exclude_seen: bool
    ks: tuple[int, ...] = field(default=DEFAULT_KS)
    repeat_targets: int = 0


def _check_split_args(ks: Sequence[int], histories: Sequence[npt.ArrayLike], n_boot: int) -> tuple[int, ...]:
    ks_t = tuple(int(k) for k in ks)
    if not ks_t:
        raise ValueError("ks must not be empty")
    if len(histories) == 0:
        raise ValueError("cannot evaluate a split with no examples")
    check_n_boot(n_boot)  # before any ranking: 10^10 resamples would allocate ~600 GiB
    return ks_t


def _summarise_split(
    ranks: IntArray,
    *,
    exclude_seen: bool,
    ks: tuple[int, ...],
    history_lengths: npt.ArrayLike,
    target_popularity: npt.ArrayLike | None,
    n_boot: int,
    seed: int,
    n_repeats: int,
) -> EvalResult:
    metrics = summarize(ranks, ks)
    ci: dict[str, tuple[float, float]] = {}
    if n_boot > 0:
        names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
        columns = [f(ranks, k) for k in ks for f in (recall_at_k, ndcg_at_k)]
        means = bootstrap_means(np.stack(columns, axis=1), n_boot, np.random.default_rng(seed))
        bounds = np.quantile(means, [0.025, 0.975], axis=0)  # [2, M]
        ci = {name: (float(bounds[0, j]), float(bounds[1, j])) for j, name in enumerate(names)}
    segments = segment_metrics(ranks, history_lengths, target_popularity, ks)
    return EvalResult(
        metrics=metrics,
        ci=ci,
        segments=segments,
        ranks=ranks,
        n=int(ranks.shape[0]),
        exclude_seen=exclude_seen,
        ks=ks,
        repeat_targets=n_repeats,
    )


def evaluate_split(
    score_fn: ScoreFn,
    histories: Sequence[npt.ArrayLike],
    targets: npt.ArrayLike,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_seen: bool = False,
    history_lengths: npt.ArrayLike | None = None,
    target_popularity: npt.ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> EvalResult:
    """Rank every target against all items and summarise: metrics, bootstrap CIs and segments.

    history_lengths defaults to the lengths of `histories`; pass the untruncated lengths when the
    histories were cut to the model's context. target_popularity ([N], training count of each
    example's target) enables the popularity segments. n_boot=0 skips the confidence intervals.
    """
    return evaluate_split_both(
        score_fn,
        histories,
        targets,
        ks=ks,
        protocols=(exclude_seen,),
        history_lengths=history_lengths,
        target_popularity=target_popularity,
        n_boot=n_boot,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )["exclude_seen" if exclude_seen else "include_seen"]


def evaluate_split_both(
    score_fn: ScoreFn,
    histories: Sequence[npt.ArrayLike],
    targets: npt.ArrayLike,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    protocols: tuple[bool, ...] = (True, False),
    history_lengths: npt.ArrayLike | None = None,
    target_popularity: npt.ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> dict[str, EvalResult]:
    """`evaluate_split` under both seen-item protocols from one scoring pass.

    Returns ``{"exclude_seen": EvalResult, "include_seen": EvalResult}`` (only the protocols asked for, as
    exclude_seen flags): one run then compares with tables of either kind. Both results share the same users
    and bootstrap seed.
    """
    ks_t = _check_split_args(ks, histories, n_boot)
    ranks, _ = rank_and_topk(score_fn, histories, targets, protocols=protocols, batch_size=batch_size, progress=progress, k=None)
    n_repeats = int(repeat_targets(histories, targets).sum())
    if history_lengths is None:
        history_lengths = np.array([np.asarray(h).size for h in histories], dtype=np.int64)
    return {
        ("exclude_seen" if exclude else "include_seen"): _summarise_split(
            ranks[exclude],
            exclude_seen=exclude,
            ks=ks_t,
            history_lengths=history_lengths,
            target_popularity=target_popularity,
            n_boot=n_boot,
            seed=seed,
            n_repeats=n_repeats,
        )
        for exclude in protocols
    }
