"""What `llmrec.recommend.Recommender` returns: a ranked item, a history item's contribution, an explanation.

Plain frozen dataclasses with raw ids, no torch; `llmrec.recommend` re-exports them (``from llmrec.recommend
import Recommendation`` keeps working).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

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
    the popularity ranking of the stored histories; None otherwise. ignored_categories: filter categories no
    catalogue item has. user: the raw user id asked for (None for a history).

    ``to_frame()`` gives a pandas DataFrame (``to_polars()`` a Polars one): one row per item with the columns
    user, rank, item, title, score, fallback."""

    ignored_items: list[str]
    fallback: str | None
    ignored_categories: list[str]
    user: str | None

    def __init__(
        self,
        items: Iterable[Recommendation] = (),
        ignored_items: Iterable[str] = (),
        fallback: str | None = None,
        ignored_categories: Iterable[str] = (),
        *,
        user: str | None = None,
    ) -> None:
        super().__init__(items)
        self.ignored_items = list(ignored_items)
        self.fallback = fallback
        self.ignored_categories = list(ignored_categories)
        self.user = user

    def _columns(self) -> dict[str, list[Any]]:
        return {
            "user": [self.user] * len(self),
            "rank": [r.rank for r in self],
            "item": [r.item_id for r in self],
            "title": [r.title for r in self],
            "score": [r.score for r in self],
            "fallback": [self.fallback] * len(self),
        }

    def to_polars(self) -> pl.DataFrame:
        """One row per item: user, rank, item, title, score, fallback (a Polars DataFrame)."""
        import polars as pl

        schema = {"user": pl.String, "rank": pl.Int64, "item": pl.String, "title": pl.String, "score": pl.Float64}
        return pl.DataFrame(self._columns(), schema={**schema, "fallback": pl.String})

    def to_frame(self) -> Any:
        """One row per item: user, rank, item, title, score, fallback (a pandas DataFrame; needs pandas)."""
        import importlib

        try:
            pd = importlib.import_module("pandas")  # optional: not a dependency of llmrec
        except ImportError:
            raise ImportError("to_frame() needs pandas (pip install pandas); to_polars() needs only polars") from None
        return pd.DataFrame(self._columns())

    def __repr__(self) -> str:
        who = f"user={self.user!r}" if self.user is not None else "a history"
        notes = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("fallback", self.fallback),
                ("ignored_items", self.ignored_items),
                ("ignored_categories", self.ignored_categories),
            )
            if value
        )
        lines = [f"Recommendations for {who}: {len(self)} items{notes}"]
        lines += [f"  {r.rank:>3}  {r.item_id:<12} {r.score:>10.4f}  {r.title or ''}" for r in self[:20]]
        if len(self) > 20:
            lines.append(f"  ... {len(self) - 20} more")
        return "\n".join(lines)


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
    cited: tuple[str, ...] = ()  # raw ids of the history items the text names as the reason (none: a weak signal)
    written_by: str = "template"  # who wrote `text`: "template" | "llm" | "custom" (llmrec.explain.text.Rationale)
    fallback: str | None = None  # why an LLM's text was replaced by the template's (it failed the check), if it was
