"""Cold-start users: the evaluation protocol, and the few-shot episodes that meta-training learns from.

Protocol (docs/DESIGN.md, "Cold-start users"; docs/cold-start.md). Users held out of training entirely
(``PreparedDataset.cold_users``) reveal the first n items of their sequence, the **support**, and the model
ranks the item that follows, the **query**, against all items. n ∈ {1, 2, 3, 5}. Every n is measured on the
same users: those with at least ``max(n) + n_query`` items, so the curves over n compare like with like.
With ``n_query > 1`` the next few items are all queries, each ranked from the support alone, and a user's
metric is the mean over its queries (the bootstrap still resamples users).

Seen items: the cold-start protocol ranks only items outside the support by default (``exclude_seen=True``):
the recommender knows the support, showing it back is never useful in these catalogues, and without the
mask any method that personalises toward the support (an adapter fitted to it) would be charged for an
artefact rather than for its ranking of new items. The same mask is applied to every method.

Episodes for meta-training come from **training** users only. An episode takes one sequence, a start s
(0 = the user's true beginning, the cold-start case), a support of n items ``seq[s : s+n]`` and a query of
the next q items ``seq[s+n : s+n+q]``. Support and query are disjoint ranges of positions with every support
position before every query position (tests/meta/test_tasks.py checks this with hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from llmrec.eval.evaluate import ScoreFn, bootstrap_ci, compute_ranks
from llmrec.eval.metrics import ndcg_at_k, recall_at_k

__all__ = [
    "SUPPORT_SIZES",
    "ColdStartExamples",
    "ColdStartResult",
    "Episode",
    "EpisodeSampler",
    "cold_start_examples",
    "evaluate_cold_start",
]

SUPPORT_SIZES: tuple[int, ...] = (1, 2, 3, 5)

IntArray = npt.NDArray[np.int64]


# ---- the protocol -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdStartExamples:
    """Support/query pairs for one support size n: histories[i] = first n items, queries[i] = the next q."""

    n_support: int
    rows: IntArray  # [N] index of each example's user in the sequences given
    histories: list[IntArray]  # N supports of n items, oldest first
    queries: IntArray  # [N, Q] the items that follow the support

    def __len__(self) -> int:
        return len(self.histories)


def cold_start_examples(
    sequences: Sequence[IntArray], n_support: int, *, n_query: int = 1, min_length: int | None = None
) -> ColdStartExamples:
    """The first `n_support` items of each sequence as support and the next `n_query` as queries.

    Sequences shorter than `min_length` (default n_support + n_query) are skipped; pass the same min_length
    for every n to measure all n on the same users.
    """
    if n_support < 1 or n_query < 1:
        raise ValueError(f"n_support and n_query must be >= 1, got {n_support} and {n_query}")
    need = n_support + n_query if min_length is None else min_length
    if need < n_support + n_query:
        raise ValueError(f"min_length={need} is shorter than n_support + n_query = {n_support + n_query}")
    rows = np.array([i for i, s in enumerate(sequences) if len(s) >= need], dtype=np.int64)
    histories = [np.asarray(sequences[i][:n_support], dtype=np.int64) for i in rows]
    queries = np.array(
        [sequences[i][n_support : n_support + n_query] for i in rows], dtype=np.int64
    ).reshape(len(rows), n_query)
    return ColdStartExamples(n_support=n_support, rows=rows, histories=histories, queries=queries)


@dataclass
class ColdStartResult:
    """Cold-start metrics of one method: for each support size n, means and 95% bootstrap CIs over users.

    metrics[n]["ndcg@10"] = mean; ci[n]["ndcg@10"] = (lo, hi); per_user[n]["ndcg@10"] = [N] values (same user
    order for every method given the same sequences, so two methods can be compared with a paired test).
    """

    support_sizes: tuple[int, ...]
    n_users: int
    exclude_seen: bool
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    ci: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    per_user: dict[int, dict[str, npt.NDArray[np.float64]]] = field(default_factory=dict)
    ranks: dict[int, IntArray] = field(default_factory=dict)  # [N, Q] rank of each query item

    def to_dict(self) -> dict[str, object]:
        return {
            "support_sizes": list(self.support_sizes),
            "n_users": self.n_users,
            "exclude_seen": self.exclude_seen,
            "metrics": {str(n): m for n, m in self.metrics.items()},
            "ci": {str(n): {k: list(v) for k, v in c.items()} for n, c in self.ci.items()},
        }


def evaluate_cold_start(
    score_fn: ScoreFn,
    sequences: Sequence[IntArray],
    *,
    support_sizes: Sequence[int] = SUPPORT_SIZES,
    n_query: int = 1,
    ks: Sequence[int] = (5, 10, 20),
    exclude_seen: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> ColdStartResult:
    """Rank each query item against all items given only the support, for every support size n.

    score_fn: histories -> [B, V+1] scores (the `ScoreFn` of llmrec.eval; an adapting method runs its inner
    loop inside it). Users: those with at least max(support_sizes) + n_query items. n_boot=0 skips the CIs.
    """
    sizes = tuple(sorted(int(n) for n in support_sizes))
    if not sizes:
        raise ValueError("support_sizes must not be empty")
    min_length = sizes[-1] + n_query
    result = ColdStartResult(support_sizes=sizes, n_users=0, exclude_seen=exclude_seen)
    for n in sizes:
        ex = cold_start_examples(sequences, n, n_query=n_query, min_length=min_length)
        if not len(ex):
            raise ValueError(f"no sequence has the {min_length} items that support size {n} with {n_query} queries needs")
        # Each query item is one ranking example with the support as its history (repeated Q times).
        histories = [h for h in ex.histories for _ in range(n_query)]
        ranks = compute_ranks(score_fn, histories, ex.queries.reshape(-1), exclude_seen=exclude_seen, batch_size=batch_size)
        ranks = ranks.reshape(len(ex), n_query)  # [N, Q]
        result.ranks[n] = ranks
        per_user: dict[str, npt.NDArray[np.float64]] = {}
        for k in ks:
            per_user[f"ndcg@{k}"] = ndcg_at_k(ranks.reshape(-1), k).reshape(ranks.shape).mean(1)
            per_user[f"recall@{k}"] = recall_at_k(ranks.reshape(-1), k).reshape(ranks.shape).mean(1)
        result.per_user[n] = per_user
        result.metrics[n] = {name: float(v.mean()) for name, v in per_user.items()}
        if n_boot:
            result.ci[n] = {name: bootstrap_ci(v, n_boot=n_boot, seed=seed)[1:] for name, v in per_user.items()}
        result.n_users = len(ex)
    return result


# ---- episodes for meta-training ---------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """A few-shot task cut from one sequence: support = positions [start, start+n), query = the next q."""

    row: int  # index of the sequence in the sampler's list
    start: int
    n_support: int
    n_query: int

    @property
    def support(self) -> range:
        return range(self.start, self.start + self.n_support)

    @property
    def query(self) -> range:
        return range(self.start + self.n_support, self.start + self.n_support + self.n_query)

    def window(self, sequence: IntArray) -> IntArray:
        """The items of support then query, in order: ``sequence[start : start + n + q]``."""
        return sequence[self.start : self.start + self.n_support + self.n_query]


class EpisodeSampler:
    """Random few-shot episodes over training sequences (never cold-start users: pass train sequences).

    Each episode draws a sequence uniformly among those long enough, a support size from `support_sizes`, and a
    start in [0, min(max_start, len - n - q)]; max_start=0 (default) gives the cold-start case exactly: the
    support is the user's first n items. Seeded: the same seed gives the same episodes.
    """

    def __init__(
        self,
        sequences: Sequence[IntArray],
        *,
        support_sizes: Sequence[int] = SUPPORT_SIZES,
        n_query: int = 1,
        max_start: int = 0,
        seed: int = 0,
    ) -> None:
        if not support_sizes or min(support_sizes) < 1 or n_query < 1 or max_start < 0:
            raise ValueError("support sizes and n_query must be >= 1 and max_start >= 0")
        self.sequences = sequences
        self.support_sizes = tuple(int(n) for n in support_sizes)
        self.n_query = n_query
        self.max_start = max_start
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        # For each support size, the sequences that hold support + query at start 0.
        self._eligible = {n: np.flatnonzero(lengths >= n + n_query) for n in self.support_sizes}
        self.support_sizes = tuple(n for n in self.support_sizes if len(self._eligible[n]))
        if not self.support_sizes:
            raise ValueError(f"no sequence is long enough for {min(support_sizes)} support + {n_query} query items")
        self._lengths = lengths

    def sample(self, n_episodes: int) -> list[Episode]:
        out = []
        for n in self.rng.choice(self.support_sizes, size=n_episodes):
            n = int(n)
            row = int(self.rng.choice(self._eligible[n]))
            last_start = min(self.max_start, int(self._lengths[row]) - n - self.n_query)
            start = int(self.rng.integers(0, last_start + 1))
            out.append(Episode(row=row, start=start, n_support=n, n_query=self.n_query))
        return out
