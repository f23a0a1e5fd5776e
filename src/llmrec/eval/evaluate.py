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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from llmrec.eval.metrics import DEFAULT_KS, ndcg_at_k, recall_at_k, summarize
from llmrec.eval.scoring import ScoreFn

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
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# ScoreFn: histories (B arrays of item ids, oldest first) -> scores [B, n_items + 1]; column 0 is padding.
# `llmrec.eval.scoring.score_fn(model)` makes one for any model.

# (name, shortest, longest) history length per segment; None = no upper bound. Length 0 (a user whose
# only known item is the target) joins the shortest bucket rather than getting a bucket of its own.
HISTLEN_SEGMENTS: tuple[tuple[str, int, int | None], ...] = (
    ("histlen 1-3", 0, 3),
    ("histlen 4-7", 4, 7),
    ("histlen 8-15", 8, 15),
    ("histlen 16+", 16, None),
)
POP_SEGMENTS: tuple[str, str, str] = ("pop low", "pop mid", "pop high")

# Elements per temporary array in the bootstrap/permutation loops: bounds memory (~32 MB of float64)
# whatever the number of users, while keeping each numpy call large enough to be fast.
_CHUNK_ELEMENTS = 1 << 22


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


def _history_rows(hist: list[IntArray], n_items: int) -> tuple[torch.Tensor, IntArray]:
    """(row of each history entry [H], item id of each entry [H]) for a batch of histories."""
    lengths = torch.tensor([h.shape[0] for h in hist], dtype=torch.int64)
    if int(lengths.sum()) == 0:
        return torch.zeros(0, dtype=torch.int64), np.zeros(0, dtype=np.int64)
    cols = np.concatenate(hist)
    if cols.min() < 0 or cols.max() > n_items:
        raise ValueError(f"history item ids must lie in 0..{n_items}")
    return torch.repeat_interleave(torch.arange(len(hist)), lengths), cols


def _candidate_mask(hist: list[IntArray], n_items: int, device: torch.device) -> torch.Tensor:
    """[B, V+1] bool: True where an item is ranked: not padding and not in the user's history.

    A target that is in the history is masked like every other history item (RecBole's convention): the
    caller counts it as a miss.
    """
    candidates = torch.ones((len(hist), n_items + 1), dtype=torch.bool, device=device)
    rows, cols = _history_rows(hist, n_items)
    if cols.size:
        candidates[rows.to(device), torch.from_numpy(cols).to(device)] = False
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


def _rank_and_topk(
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
    ranks, _ = _rank_and_topk(
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
    ranks, topk = _rank_and_topk(
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


# ----------------------------------------------------------------------------------------------------
# Segments
# ----------------------------------------------------------------------------------------------------


def segment_metrics(
    ranks: npt.ArrayLike,
    history_lengths: npt.ArrayLike | None,
    target_popularity: npt.ArrayLike | None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Summary metrics per user segment, each with ``n`` (examples in it).

    Segments: history length (`HISTLEN_SEGMENTS`; length 0 counts as 1-3) and target-popularity terciles
    (`POP_SEGMENTS`). target_popularity[i] is the training count of example i's target; tercile edges are
    the 1/3 and 2/3 quantiles of those values, low = ``<= q1``, mid = ``(q1, q2]``, high = ``> q2``
    (heavily tied counts can make the groups unequal). Either input may be None to skip its segments.
    Empty segments are kept with n = 0 and NaN metrics so tables keep the same rows across models.
    """
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, dict[str, float]] = {}

    def add(name: str, mask: npt.NDArray[np.bool_]) -> None:
        out[name] = {"n": int(mask.sum()), **summarize(r[mask], ks)}

    if history_lengths is not None:
        lengths = np.asarray(history_lengths, dtype=np.int64)
        if lengths.shape != r.shape:
            raise ValueError(f"history_lengths has shape {lengths.shape}, ranks {r.shape}")
        for name, lo, hi in HISTLEN_SEGMENTS:
            mask = lengths >= lo if hi is None else (lengths >= lo) & (lengths <= hi)
            add(name, mask)
    if target_popularity is not None:
        pop = np.asarray(target_popularity, dtype=np.float64)
        if pop.shape != r.shape:
            raise ValueError(f"target_popularity has shape {pop.shape}, ranks {r.shape}")
        if pop.size:
            q1, q2 = np.quantile(pop, [1 / 3, 2 / 3])
        else:
            q1 = q2 = 0.0
        low, mid, high = POP_SEGMENTS
        add(low, pop <= q1)
        add(mid, (pop > q1) & (pop <= q2))
        add(high, pop > q2)
    return out


# ----------------------------------------------------------------------------------------------------
# Confidence intervals and paired tests
# ----------------------------------------------------------------------------------------------------


def _bootstrap_means(values: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """[N, M] per-example values -> [n_boot, M] means over resampled users (with replacement).

    Each replicate is drawn as per-user counts (bincount of the resampled indices) and applied with one
    matrix product, so all M metrics share the same resamples and the cost does not grow with M.
    """
    n = values.shape[0]
    out = np.empty((n_boot, values.shape[1]), dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(c, n))  # [c, N]
        offsets = (np.arange(c) * n)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=c * n).reshape(c, n)  # [c, N]
        out[start : start + c] = counts @ values / n
    return out


def _as_per_example(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def bootstrap_ci(
    per_example: npt.ArrayLike, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of a per-user metric and its percentile-bootstrap (1 - alpha) interval."""
    values = _as_per_example(per_example, "per_example")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    means = _bootstrap_means(values[:, None], n_boot, np.random.default_rng(seed))[:, 0]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(lo), float(hi)


def paired_test(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    n_permutations: int = 10_000,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Compare two models' per-user metric arrays on the same users, in the same order.

    Returns ``mean_a``, ``mean_b``, ``mean_diff`` (a - b), ``ci_lo``/``ci_hi`` (paired percentile
    bootstrap of the mean difference), ``p_value`` (two-sided paired sign-flip permutation test: under
    the null each user's difference is equally likely to have either sign) and ``n``. The p-value counts
    the observed assignment, (1 + #as-extreme) / (1 + n_permutations), so it is never exactly 0.
    """
    x = _as_per_example(a, "a")
    y = _as_per_example(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must cover the same users: shapes {x.shape} and {y.shape}")
    if n_boot < 1 or n_permutations < 1:
        raise ValueError("n_boot and n_permutations must be >= 1")
    d = x - y  # [N]
    n = d.shape[0]
    boot_rng, perm_rng = np.random.default_rng(seed).spawn(2)

    boot = _bootstrap_means(d[:, None], n_boot, boot_rng)[:, 0]
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])

    # Flipping the signs of the users where a random bit is 1 gives sum(d) - 2 * bits @ d; random bits
    # come from raw bytes (8 per byte), much cheaper than drawing one float per user per permutation.
    observed = abs(float(d.sum()))
    total = float(d.sum())
    as_extreme = 0
    chunk = max(1, _CHUNK_ELEMENTS // n)
    n_bytes = (n + 7) // 8
    for start in range(0, n_permutations, chunk):
        c = min(chunk, n_permutations - start)
        raw = np.frombuffer(perm_rng.bytes(c * n_bytes), dtype=np.uint8).reshape(c, n_bytes)
        bits = np.unpackbits(raw, axis=1, count=n).astype(np.float64)  # [c, N]
        flipped = np.abs(total - 2.0 * (bits @ d))  # [c]
        # Tolerance: sums that are equal in exact arithmetic can differ in the last bits.
        as_extreme += int((flipped >= observed - 1e-9 * max(1.0, observed)).sum())
    p_value = (1 + as_extreme) / (1 + n_permutations)

    return {
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": float(d.mean()),
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "p_value": float(p_value),
        "n": float(n),
    }


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
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
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
        means = _bootstrap_means(np.stack(columns, axis=1), n_boot, np.random.default_rng(seed))
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
    ranks, _ = _rank_and_topk(score_fn, histories, targets, protocols=protocols, batch_size=batch_size, progress=progress, k=None)
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
