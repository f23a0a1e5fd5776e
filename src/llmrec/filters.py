"""Business rules on a ranking: which items may be recommended, applied as one score mask before top-k.

    rec.recommend(user="42", exclude_items=["B7"], include_categories=["kitchen"])
    ItemFilter(exclude_items=("B7",), include_categories=("kitchen",))   # the same rule, for recommend_batch

An `ItemFilter` keeps an item when it passes every rule given: in ``include_items`` (when given), not in
``exclude_items``, in at least one of ``include_categories`` (when given), in none of ``exclude_categories``, and
available (the catalogue's ``available`` column; ``include_unavailable=True`` lifts that rule). Ids and categories
the catalogue does not know are ignored: they name nothing that could be recommended.

`apply_masks` is the one place where a score row loses items: the user's history (the seen-item rule, through
`llmrec.eval.seen_items.seen_mask`, as evaluation applies it) and the filter's blocked items become ``-inf`` before
top-k, so a filtered top-k is the unfiltered full ranking with the blocked items removed (never a cut of an
over-fetched list).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service builds ItemFilters without importing torch; masks import it when made
    import numpy as np
    import polars as pl
    import torch

__all__ = ["ItemFilter", "ItemMasks", "apply_masks", "read_id_file"]


def _ids(value: Iterable[str] | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a list of ids, e.g. [{value!r}], not the string {value!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class ItemFilter:
    """Which items a ranking may contain (see the module docstring); None = no such rule."""

    include_items: tuple[str, ...] | None = None
    exclude_items: tuple[str, ...] | None = None
    include_categories: tuple[str, ...] | None = None
    exclude_categories: tuple[str, ...] | None = None
    include_unavailable: bool = False

    @classmethod
    def of(
        cls,
        include_items: Iterable[str] | None = None,
        exclude_items: Iterable[str] | None = None,
        include_categories: Iterable[str] | None = None,
        exclude_categories: Iterable[str] | None = None,
        include_unavailable: bool = False,
    ) -> ItemFilter:
        """From lists (or any iterables of ids; a bare string is a TypeError, never read as its characters)."""
        return cls(
            _ids(include_items, "include_items"),
            _ids(exclude_items, "exclude_items"),
            _ids(include_categories, "include_categories"),
            _ids(exclude_categories, "exclude_categories"),
            bool(include_unavailable),
        )


class ItemMasks:
    """A catalogue's lookups for filters: raw id -> internal id, category -> internal ids, unavailable items."""

    def __init__(self, items: pl.DataFrame) -> None:
        import torch

        items = items.sort("item_idx")
        self.n_items = items.height
        self.index = {str(raw): i + 1 for i, raw in enumerate(items["item"].to_list())}
        self.by_category: dict[str, list[int]] = {}
        if "categories" in items.columns:
            for i, cats in enumerate(items["categories"].to_list(), start=1):
                for c in cats or ():
                    self.by_category.setdefault(str(c), []).append(i)
        self.unavailable = torch.zeros(self.n_items + 1, dtype=torch.bool)  # [V+1]
        if "available" in items.columns:
            available = items["available"].fill_null(True).to_numpy().astype(bool)  # a missing value: available
            self.unavailable[1:] = torch.from_numpy(~available)
        self.any_unavailable = bool(self.unavailable.any())

    def _rows(self, ids: Sequence[str]) -> list[int]:
        return [self.index[i] for i in ids if i in self.index]

    def _in_categories(self, categories: Sequence[str]) -> list[int]:
        return [i for c in categories for i in self.by_category.get(c, ())]

    def blocked(self, f: ItemFilter | None) -> torch.Tensor | None:
        """[V+1] True where `f` (None: the default rule, unavailable items only) blocks an item; None: nothing."""
        import torch

        if f is None:
            return self.unavailable if self.any_unavailable else None
        blocked = torch.zeros(self.n_items + 1, dtype=torch.bool)  # [V+1]
        if not f.include_unavailable:
            blocked |= self.unavailable
        for include, rows in ((f.include_items, self._rows), (f.include_categories, self._in_categories)):
            if include is not None:  # only these may come: block the rest
                keep = torch.zeros_like(blocked)
                keep[rows(include)] = True
                blocked |= ~keep
        if f.exclude_items:
            blocked[self._rows(f.exclude_items)] = True
        if f.exclude_categories:
            blocked[self._in_categories(f.exclude_categories)] = True
        blocked[0] = False  # the padding column is -inf already
        return blocked if bool(blocked.any()) else None


def apply_masks(
    scores: torch.Tensor, histories: Sequence[np.ndarray], excluded: Sequence[bool], blocked: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """Set to -inf, in place, each row's history items (where `excluded`: the seen-item rule,
    `llmrec.eval.seen_items.seen_mask`, as evaluation applies it) and its blocked items; returns `scores`.

    scores [B, V+1]; histories: internal ids per row; blocked: per row a [V+1] bool mask or None."""
    from llmrec.eval.seen_items import seen_mask

    scores.masked_fill_(seen_mask(histories, scores.shape[1] - 1, excluded=excluded, device=scores.device), float("-inf"))
    for i, mask in enumerate(blocked):
        if mask is not None:
            scores[i].masked_fill_(mask.to(scores.device), float("-inf"))
    return scores


def read_id_file(path: str) -> list[str]:
    """A text file of ids, one per line (blank lines and surrounding spaces ignored); UTF-8."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file of item ids")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text; save the item ids as UTF-8, one per line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
