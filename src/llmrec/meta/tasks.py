"""Cold-start users: the evaluation protocol, and the few-shot episodes that meta-training learns from.

The protocol's runner is `llmrec.eval.cold_start` (imports point from meta to eval, never back); this module
cuts the episodes.

Protocol (docs/DESIGN.md, "Cold-start users"; docs/cold-start.md). Users held out of training entirely
(``PreparedDataset.cold_users``) reveal the first n items of their sequence, the **support**, and the model
ranks the item that follows, the **query**, against all items. n ∈ {1, 2, 3, 5}. Every n is measured on the
same users: those with at least ``max(n) + n_query`` items, so the curves over n compare like with like.
With ``n_query > 1`` the next few items are all queries, each ranked from the support alone, and a user's
metric is the mean over its queries (the bootstrap still resamples users).

Seen items: the cold-start protocol ranks only items outside the support by default (``exclude_seen=True``):
the recommender knows the support, showing it back is never useful in these catalogues, and without the
mask any method that personalises toward the support (an adapter fitted to it) would be charged for an
artefact rather than for its ranking of new items. The same mask is applied to every method, and it follows
the warm protocol's convention (`llmrec.eval.evaluate`): a query item that is already in the support is masked
with it and counts as a miss.

Episodes for meta-training come from **training** users only. An episode takes one sequence, a start s
(0 = the user's true beginning, the cold-start case), a support of n items ``seq[s : s+n]`` and a query of
the next q items ``seq[s+n : s+n+q]``. Support and query are disjoint ranges of positions with every support
position before every query position (tests/meta/test_tasks.py checks this with hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmrec.eval.cold_start import SUPPORT_SIZES  # the protocol's support sizes; its runner is llmrec.eval.cold_start

__all__ = ["Episode", "EpisodeSampler"]

IntArray = npt.NDArray[np.int64]


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
