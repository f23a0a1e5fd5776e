"""Per-example ranks of held-out targets: full ranking against all items, and the legacy sampled protocol.

A model is seen only through a `ScoreFn` (see `llmrec.eval.evaluate`). `compute_ranks` ranks each target against
**all** items (pessimistic on ties); with ``exclude_seen`` every history item is removed from the ranking, the target
included, so a repeated target is a miss (RecBole's convention; `repeat_targets` counts such examples).
`rank_and_topk` computes the ranks of both seen-item protocols from one scoring pass.

`sampled_ranks` implements the older sampled-negatives protocol (target vs 100 sampled items) only so that
published numbers measured that way can be reproduced; `sampled_metrics` keys its summary ``sampled-<n>/...`` so
it never shares a key with full ranking. Summaries with uncertainty live in `llmrec.eval.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from llmrec.eval.metrics import DEFAULT_KS, summarize
from llmrec.eval.scoring import ScoreFn
from llmrec.eval.seen_items import seen_mask

__all__ = [
    "compute_ranks",
    "compute_ranks_and_topk",
    "rank_and_topk",
    "repeat_targets",
    "sampled_metrics",
    "sampled_ranks",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


# ----------------------------------------------------------------------------------------------------
# Full ranking
# ----------------------------------------------------------------------------------------------------


def _check_inputs(histories: Sequence[npt.ArrayLike], targets: npt.ArrayLike) -> IntArray:
    tgt = np.asarray(targets, dtype=np.int64)
    if tgt.ndim != 1:
        raise ValueError(f"targets must be 1-D, got shape {tgt.shape}")
    if len(histories) != tgt.shape[0]:
        raise ValueError(f"{len(histories)} histories but {tgt.shape[0]} targets")
    if tgt.size and tgt.min() < 1:
        raise ValueError("targets must be item ids >= 1 (0 is padding)")
    return tgt


def _score_batch(score_fn: ScoreFn, hist: list[IntArray], n_items: int | None) -> tuple[torch.Tensor, int]:
    """Call the model and check what came back; returns (scores [B, V+1], n_items)."""
    scores = score_fn(hist)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"score_fn must return a torch.Tensor, got {type(scores).__name__}")
    if scores.ndim != 2 or scores.shape[0] != len(hist) or scores.shape[1] < 2:
        raise ValueError(f"score_fn returned shape {tuple(scores.shape)}; expected [{len(hist)}, n_items + 1]")
    if n_items is not None and scores.shape[1] != n_items + 1:
        raise ValueError(f"score_fn returned {scores.shape[1]} columns, earlier batches had {n_items + 1}")
    scores = scores.detach()
    if not scores.is_floating_point():
        # Integer scores (e.g. raw popularity counts) need a float dtype to hold -inf; float64 is exact
        # for counts up to 2**53, so no new ties are created.
        scores = scores.to(torch.float64)
    # A NaN compares false with everything and would silently rank as "below the target". max()
    # propagates NaN and, unlike isnan(), allocates no [B, V+1] mask: ~10x cheaper on CPU.
    if torch.isnan(scores.max()):
        raise ValueError("score_fn returned NaN scores")
    return scores, scores.shape[1] - 1


def _candidate_mask(hist: list[IntArray], n_items: int, device: torch.device) -> torch.Tensor:
    """[B, V+1] bool: True where an item is ranked: not padding and not in the user's history (`seen_mask`).

    A target that is in the history is masked like every other history item (RecBole's convention): the
    caller counts it as a miss.
    """
    candidates = ~seen_mask(hist, n_items, device=device)
    candidates[:, 0] = False
    return candidates


def _repeat_mask(hist: list[IntArray], targets: IntArray) -> BoolArray:
    """[B] bool: True where the target already occurs in the history. O(total history length)."""
    out = np.zeros(len(hist), dtype=bool)
    lengths = np.array([h.shape[0] for h in hist], dtype=np.int64)
    if lengths.sum() > 0:
        rows = np.repeat(np.arange(len(hist)), lengths)
        hits = np.concatenate(hist) == targets[rows]
        out[np.unique(rows[hits])] = True
    return out


def repeat_targets(histories: Sequence[npt.ArrayLike], targets: npt.ArrayLike) -> BoolArray:
    """[N] bool: whether each example's target is already in its history (a repeat consumption).

    With seen items excluded these examples are misses by construction (see the module docstring).
    """
    tgt = _check_inputs(histories, targets)
    hist = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    return _repeat_mask(hist, tgt)


def rank_and_topk(
    score_fn: ScoreFn,
    histories: Sequence[npt.ArrayLike],
    targets: npt.ArrayLike,
    *,
    protocols: tuple[bool, ...],
    batch_size: int,
    progress: bool,
    k: int | None,
) -> tuple[dict[bool, IntArray], IntArray | None]:
    """Ranks under each seen-item protocol in `protocols` (exclude_seen flags) from one scoring pass.

    Returns ({exclude_seen: ranks [N]}, top-k [N, K] under protocols[0], or None when k is None).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tgt_all = _check_inputs(histories, targets)
    n = tgt_all.shape[0]
    ranks = {exclude: np.empty(n, dtype=np.int64) for exclude in protocols}
    topk: IntArray | None = None if k is None else np.zeros((n, k), dtype=np.int64)
    n_items: int | None = None

    bar = None
    if progress:
        from tqdm import tqdm  # lazy: only needed when asked for

        bar = tqdm(total=n, unit="user", desc="ranking")
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                hist = [np.asarray(histories[i], dtype=np.int64).reshape(-1) for i in range(start, stop)]
                scores, n_items = _score_batch(score_fn, hist, n_items)  # [B, V+1]
                if start == 0 and tgt_all.max() > n_items:
                    raise ValueError(f"targets must be item ids in 1..{n_items}")
                if start == 0 and k is not None and k > n_items:
                    raise ValueError(f"k={k} exceeds n_items={n_items}")
                tgt = torch.from_numpy(tgt_all[start:stop]).to(scores.device)  # [B]
                target_scores = scores.gather(1, tgt[:, None])  # [B, 1]

                # rank = 1 + #higher + #other-tied = #(candidates scoring >= target), target included.
                # Counting over a candidate mask (not by writing -inf) keeps this exact even when the
                # target itself scores -inf.
                allowed = _candidate_mask(hist, n_items, scores.device) if True in protocols else None  # [B, V+1]
                for exclude in protocols:
                    if exclude:
                        assert allowed is not None
                        at_or_above = (scores >= target_scores).logical_and_(allowed)  # [B, V+1]
                        r = at_or_above.sum(1).cpu().numpy()
                        # A repeated target is masked with the rest of the history: it scores -inf in effect
                        # and ranks last, tied pessimistically with the other masked items (a miss at any k < n_items).
                        r[_repeat_mask(hist, tgt_all[start:stop])] = n_items
                        ranks[exclude][start:stop] = r
                    else:
                        ranks[exclude][start:stop] = (scores[:, 1:] >= target_scores).sum(1).cpu().numpy()

                if topk is not None and k is not None:
                    masked = scores.masked_fill(~allowed, float("-inf")) if protocols[0] and allowed is not None else scores
                    values, idx = torch.topk(masked[:, 1:], k, dim=1)  # [B, K]
                    items = idx + 1  # undo the padding-column offset
                    # Rows with fewer than k rankable items are padded with 0, not filled with blocked items.
                    items = items.masked_fill(torch.isneginf(values), 0)
                    topk[start:stop] = items.cpu().numpy()
                if bar is not None:
                    bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    return ranks, topk


def compute_ranks(
    score_fn: ScoreFn,
    histories: Sequence[npt.ArrayLike],
    targets: npt.ArrayLike,
    *,
    exclude_seen: bool = False,
    batch_size: int = 512,
    progress: bool = False,
) -> IntArray:
    """1-based rank of each target among all items 1..n_items; ties are broken pessimistically.

    histories: N arrays of item ids (oldest first); targets: [N] item ids. Returns [N] int64.
    exclude_seen: items in the user's history are not ranked; a target that is itself in the history is masked
    with them and gets rank n_items (a miss), as in RecBole.
    """
    ranks, _ = rank_and_topk(
        score_fn,
        histories,
        targets,
        protocols=(exclude_seen,),
        batch_size=batch_size,
        progress=progress,
        k=None,
    )
    return ranks[exclude_seen]


def compute_ranks_and_topk(
    score_fn: ScoreFn,
    histories: Sequence[npt.ArrayLike],
    targets: npt.ArrayLike,
    *,
    k: int = 20,
    exclude_seen: bool = False,
    batch_size: int = 512,
    progress: bool = False,
) -> tuple[IntArray, IntArray]:
    """Like `compute_ranks`, plus each user's top-k item ids ``[N, K]`` (best first; 0 pads short rows).

    Ties inside the top-k list are ordered arbitrarily (by `torch.topk`); ranks stay pessimistic.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranks, topk = rank_and_topk(
        score_fn,
        histories,
        targets,
        protocols=(exclude_seen,),
        batch_size=batch_size,
        progress=progress,
        k=k,
    )
    assert topk is not None  # k was given
    return ranks[exclude_seen], topk


# ----------------------------------------------------------------------------------------------------
# Sampled negatives (legacy protocol, for reproducing published numbers only)
# ----------------------------------------------------------------------------------------------------


def sampled_ranks(
    score_fn: ScoreFn,
    histories: Sequence[npt.ArrayLike],
    targets: npt.ArrayLike,
    *,
    n_negatives: int = 100,
    popularity: npt.ArrayLike | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> IntArray:
    """1-based rank of each target among itself and `n_negatives` sampled items (pessimistic on ties).

    Negatives are distinct items drawn without replacement, never the target or an item in the user's
    history; uniformly, or with probability proportional to ``popularity`` ([n_items + 1] counts indexed
    by item id; entry 0 is ignored, items with count 0 are never drawn). Summarise the result only with
    `sampled_metrics`, which labels every key ``sampled-<n>/``.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tgt_all = _check_inputs(histories, targets)
    n = tgt_all.shape[0]
    rng = np.random.default_rng(seed)
    ranks = np.empty(n, dtype=np.int64)
    log_weights: FloatArray | None = None
    n_items: int | None = None

    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            hist = [np.asarray(histories[i], dtype=np.int64).reshape(-1) for i in range(start, stop)]
            scores, n_items = _score_batch(score_fn, hist, n_items)  # [B, V+1]
            if start == 0 and tgt_all.max() > n_items:
                raise ValueError(f"targets must be item ids in 1..{n_items}")
            if log_weights is None:
                log_weights = _log_sampling_weights(popularity, n_items)  # [V+1]
            batch = stop - start
            tgt = tgt_all[start:stop]

            # Gumbel-top-k: the n largest of log(w) + Gumbel noise are a weighted sample without
            # replacement (Efraimidis & Spirakis 2006), in one vectorised pass over [B, V+1].
            keys = log_weights[None, :] + rng.gumbel(size=(batch, n_items + 1))  # [B, V+1]
            lengths = np.array([h.shape[0] for h in hist], dtype=np.int64)
            if lengths.sum() > 0:
                cols = np.concatenate(hist)
                if cols.min() < 0 or cols.max() > n_items:
                    raise ValueError(f"history item ids must lie in 0..{n_items}")
                keys[np.repeat(np.arange(batch), lengths), cols] = -np.inf
            keys[np.arange(batch), tgt] = -np.inf
            keys[:, 0] = -np.inf
            eligible = np.isfinite(keys).sum(axis=1)
            if eligible.min() < n_negatives:
                row = start + int(np.argmin(eligible))
                raise ValueError(
                    f"example {row} has only {int(eligible.min())} items to sample from, fewer than n_negatives={n_negatives}"
                )
            negatives = np.argpartition(-keys, n_negatives - 1, axis=1)[:, :n_negatives]  # [B, n_neg]

            neg = torch.from_numpy(negatives).to(scores.device)
            t = torch.from_numpy(tgt).to(scores.device)
            target_scores = scores.gather(1, t[:, None])  # [B, 1]
            negative_scores = scores.gather(1, neg)  # [B, n_neg]
            ranks[start:stop] = (1 + (negative_scores >= target_scores).sum(1)).cpu().numpy()
    return ranks


def _log_sampling_weights(popularity: npt.ArrayLike | None, n_items: int) -> FloatArray:
    if popularity is None:
        return np.zeros(n_items + 1, dtype=np.float64)
    pop = np.asarray(popularity, dtype=np.float64)
    if pop.shape != (n_items + 1,):
        raise ValueError(f"popularity must have shape [{n_items + 1}] (indexed by item id), got {pop.shape}")
    if not np.all(np.isfinite(pop)) or pop.min() < 0:
        raise ValueError("popularity must be finite and non-negative")
    with np.errstate(divide="ignore"):  # log(0) = -inf is wanted: such items are never drawn
        return np.log(pop)


def sampled_metrics(ranks: npt.ArrayLike, *, n_negatives: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """`summarize` for sampled-negative ranks, every key prefixed ``sampled-<n_negatives>/``.

    The prefix is the point: these numbers are not comparable with full ranking and must never be
    mistaken for them in a table.
    """
    return {f"sampled-{n_negatives}/{key}": value for key, value in summarize(ranks, ks).items()}
