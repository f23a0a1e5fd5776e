"""What `llmrec.recommend.Recommender` returns: a ranked item, a history item's contribution, an explanation.

Plain frozen dataclasses with raw ids, no torch; `llmrec.recommend` re-exports them (``from llmrec.recommend
import Recommendation`` keeps working).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Contribution", "Explanation", "Recommendation", "Recommendations"]


@dataclass(frozen=True)
class Recommendation:
    item_id: str  # raw item id
    score: float
    rank: int  # 1-based
    title: str | None = None
    categories: tuple[str, ...] = ()  # the catalogue's categories of the item


class Recommendations(list[Recommendation]):
    """`Recommender.recommend`'s answer: the ranked list, plus what was done with input it could not use.

    ignored_items: history ids the model does not know, skipped (the default; ``strict=True`` refuses them).
    fallback: "popular" when there was nothing to go on (an unknown user, or no known history item): the list is
    the popularity ranking of the stored histories; None otherwise."""

    ignored_items: list[str]
    fallback: str | None

    def __init__(
        self, items: Iterable[Recommendation] = (), ignored_items: Iterable[str] = (), fallback: str | None = None
    ) -> None:
        super().__init__(items)
        self.ignored_items = list(ignored_items)
        self.fallback = fallback


@dataclass(frozen=True)
class Contribution:
    """How much one history item raised (> 0) or lowered (< 0) a recommended item's score."""

    item_id: str  # raw item id
    weight: float  # attribution in score units (occlusion: the score drop when the item is removed)
    title: str | None = None


@dataclass(frozen=True)
class Explanation:
    recommendation: Recommendation
    contributions: list[Contribution]  # the history items with the largest attributions, largest first
    text: str  # a short reason in words (llmrec.explain.text)
