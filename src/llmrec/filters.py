"""Business rules on a ranking: which items may be recommended, applied as one score mask before top-k.

    rec.recommend(user="42", exclude_items=["B7"], include_categories=["kitchen"])
    ItemFilter(exclude_items=("B7",), include_categories=("kitchen",))   # the same rule, for recommend_batch

An `ItemFilter` keeps an item when it passes every rule given: in ``include_items`` (when given), not in
``exclude_items``, in at least one of ``include_categories`` (when given), in none of ``exclude_categories``, and
available (the catalogue's ``available`` column; ``include_unavailable=True`` lifts that rule). Category names match
whatever their case (``horror`` finds the catalogue's ``Horror``). Ids and categories the catalogue does not know
name nothing that could be recommended: they are left out of the rule and reported (`ItemMasks.unknown_categories`;
`Recommender.recommend` warns with `UnknownCategoryWarning`, the service answers ``ignored_categories``).

`apply_masks` is the one place where a score row loses items: the user's history (the seen-item rule,
`seen_matrix`, which evaluation applies too through `llmrec.eval.seen_items.seen_mask`) and the filter's blocked
items become ``-inf`` before top-k, so a filtered top-k is the unfiltered full ranking with the blocked items removed
(never a cut of an over-fetched list). It takes a torch tensor (`Recommender`) or a numpy array (the exported ONNX
scorer, `llmrec.onnx_scorer`).

This module needs only the standard library and numpy (torch and polars are imported where a caller brings them):
`llmrec export --onnx` ships a copy of it beside ``onnx_scorer.py``, so that the ONNX scorer applies these very rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    import polars as pl

__all__ = [
    "ItemFilter",
    "ItemMasks",
    "UnknownCategoryWarning",
    "UnknownIdWarning",
    "apply_masks",
    "new_item_quota",
    "read_id_file",
    "seen_matrix",
]


class UnknownIdWarning(UserWarning):
    """A raw user id (or history item id) the model does not know: skipped, or the popular items served instead."""


class UnknownCategoryWarning(UserWarning):
    """A category in include/exclude_categories that no catalogue item has: the rule names nothing."""


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

    @property
    def categories(self) -> tuple[str, ...]:
        """Every category the filter names (include, then exclude)."""
        return (*(self.include_categories or ()), *(self.exclude_categories or ()))


class ItemMasks:
    """A catalogue's lookups for filters: raw id -> internal id, category -> internal ids, unavailable items.

    raw_ids: the catalogue in internal-id order (internal id i + 1 is raw_ids[i]); categories: per item its
    category names; available: per item True / False / None (None: available)."""

    def __init__(
        self,
        raw_ids: Sequence[str],
        categories: Sequence[Iterable[str] | None] | None = None,
        available: Sequence[bool | None] | None = None,
    ) -> None:
        self.n_items = len(raw_ids)
        self.index = {str(raw): i + 1 for i, raw in enumerate(raw_ids)}
        self.by_category: dict[str, list[int]] = {}  # casefolded name -> internal ids
        for i, cats in enumerate(categories or (), start=1):
            for c in dict.fromkeys(str(c).casefold() for c in cats or ()):
                self.by_category.setdefault(c, []).append(i)
        self.unavailable = np.zeros(self.n_items + 1, dtype=bool)  # [V+1]
        if available is not None:
            if len(available) != self.n_items:
                raise ValueError(f"available has {len(available)} entries for {self.n_items} items")
            self.unavailable[1:] = [a is not None and not a for a in available]
        self.any_unavailable = bool(self.unavailable.any())

    @classmethod
    def of_items(cls, items: pl.DataFrame) -> ItemMasks:
        """From a catalogue table (item_idx, item [, categories] [, available]), as `Artifact.items` holds it."""
        items = items.sort("item_idx")
        cats = items["categories"].to_list() if "categories" in items.columns else None
        available = items["available"].to_list() if "available" in items.columns else None
        return cls([str(i) for i in items["item"].to_list()], cats, available)

    def _rows(self, ids: Sequence[str]) -> list[int]:
        return [self.index[i] for i in ids if i in self.index]

    def _in_categories(self, categories: Sequence[str]) -> list[int]:
        return [i for c in categories for i in self.by_category.get(c.casefold(), ())]

    def unknown_categories(self, f: ItemFilter | None) -> list[str]:
        """The categories `f` names that no item has (compared without case), in the order given."""
        if f is None:
            return []
        return list(dict.fromkeys(c for c in f.categories if c.casefold() not in self.by_category))

    def blocked(self, f: ItemFilter | None) -> npt.NDArray[np.bool_] | None:
        """[V+1] True where `f` (None: the default rule, unavailable items only) blocks an item; None: nothing."""
        if f is None:
            return self.unavailable if self.any_unavailable else None
        blocked = np.zeros(self.n_items + 1, dtype=bool)  # [V+1]
        if not f.include_unavailable:
            blocked |= self.unavailable
        for include, rows in ((f.include_items, self._rows), (f.include_categories, self._in_categories)):
            if include is not None:  # only these may come: block the rest
                keep = np.zeros_like(blocked)
                keep[rows(include)] = True
                blocked |= ~keep
        if f.exclude_items:
            blocked[self._rows(f.exclude_items)] = True
        if f.exclude_categories:
            blocked[self._in_categories(f.exclude_categories)] = True
        blocked[0] = False  # the padding column is -inf already
        return blocked if bool(blocked.any()) else None


def seen_matrix(
    histories: Sequence[npt.NDArray[np.int64]], n_items: int, excluded: Sequence[bool] | None = None
) -> npt.NDArray[np.bool_]:
    """The seen-item rule: [B, V+1] True where row b's history takes item v out of the ranking (`excluded`: per row
    whether the rule applies; None: every row). With the rule every history item leaves the ranking, a target that
    is itself in the history included (RecBole's convention). History ids outside 0..n_items are a ValueError."""
    flags = [True] * len(histories) if excluded is None else list(excluded)
    if len(flags) != len(histories):
        raise ValueError(f"{len(flags)} seen-item flags for {len(histories)} histories")
    mask = np.zeros((len(histories), n_items + 1), dtype=bool)
    kept = [(b, np.asarray(h, dtype=np.int64)) for b, (h, on) in enumerate(zip(histories, flags, strict=True)) if on and len(h)]
    if kept:
        cols = np.concatenate([h for _, h in kept])
        if cols.min() < 0 or cols.max() > n_items:
            raise ValueError(f"history item ids must lie in 0..{n_items}")
        mask[np.repeat([b for b, _ in kept], [len(h) for _, h in kept]), cols] = True
    return mask


def apply_masks(
    scores: Any,
    histories: Sequence[npt.NDArray[np.int64]],
    excluded: Sequence[bool],
    blocked: Sequence[npt.NDArray[np.bool_] | None],
) -> Any:
    """Set to -inf, in place, each row's history items (where `excluded`: `seen_matrix`) and its blocked items
    (`ItemMasks.blocked`); returns `scores`, a torch tensor or a numpy array [B, V+1]."""
    if len(blocked) != len(histories):
        raise ValueError(f"{len(blocked)} filter masks for {len(histories)} histories")
    mask = seen_matrix(histories, int(scores.shape[1]) - 1, excluded)  # [B, V+1]
    for i, row in enumerate(blocked):
        if row is not None:
            mask[i] |= row
    if isinstance(scores, np.ndarray):
        scores[mask] = -np.inf
    else:  # a torch tensor, on any device
        import torch

        scores.masked_fill_(torch.from_numpy(mask).to(scores.device), float("-inf"))
    return scores


def new_item_quota(
    row: npt.NDArray[np.floating[Any]],
    k: int,
    new_items: int,
    is_new: npt.NDArray[np.bool_],
    order: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """The item columns of one top-k list that keeps its last `new_items` positions for new items (TIGER's
    cold-item quota; Rajput et al. 2023, https://arxiv.org/abs/2305.05065): positions 1..k-n are the ranking's
    first k-n items (`order`, default the row by score, ties the lower id first), positions k-n+1..k the n
    best-scored `is_new` items that those positions do not already hold, in score order. Items at -inf (masked
    by `apply_masks`) are never listed; when fewer than n new items are left, the ranking fills their places.

    row: one masked score row [V+1]; is_new: [V+1] bool (column 0 False); order: a ranking of item columns (the
    diversity re-ranking's), at least k long when it has k items to give."""
    is_listed = np.isfinite(row)  # [V+1]
    by_score = np.argsort(-row, kind="stable")  # [V+1] best first, ties: the lower item id first
    ranking = by_score if order is None else np.asarray(order, dtype=np.int64)
    ranking = ranking[is_listed[ranking]]
    head = ranking[: k - new_items]
    candidates = by_score[is_listed[by_score] & is_new[by_score]]
    quota = candidates[~np.isin(candidates, head)][:new_items]  # [<= n] best-scored new items outside the head
    rest = ranking[~np.isin(ranking, quota)][: k - len(quota)]
    return np.concatenate([rest, quota]).astype(np.int64)


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
