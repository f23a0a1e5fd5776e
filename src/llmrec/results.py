"""What `llmrec.recommend.Recommender` returns: a ranked item, a history item's contribution, an explanation.

Plain frozen dataclasses with raw ids, no torch; `llmrec.recommend` re-exports them (``from llmrec.recommend
import Recommendation`` keeps working).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Contribution", "Explanation", "Recommendation"]


@dataclass(frozen=True)
class Recommendation:
    item_id: str  # raw item id
    score: float
    rank: int  # 1-based
    title: str | None = None


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
