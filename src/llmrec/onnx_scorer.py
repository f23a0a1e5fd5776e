"""Serve an exported ``scorer.onnx`` from raw ids with onnxruntime: no torch, the same rules as `llmrec recommend`.

``llmrec export --onnx`` copies this file into the export folder as ``onnx_scorer.py``, beside ``scorer.onnx``,
``onnx.json`` (the graph's shapes), ``onnx_items.json`` (the raw item ids, in the graph's column order),
``onnx_rules.json`` (what the serving rules need: each item's categories and availability, the model's seen-item
rule, the stored histories and the popularity ranking) and ``onnx_filters.py`` (a copy of `llmrec.filters`, the
rules themselves, used where llmrec is not installed). It needs only the standard library, numpy and onnxruntime::

    from onnx_scorer import OnnxScorer              # or: from llmrec.onnx_scorer import OnnxScorer

    scorer = OnnxScorer("deploy/model")
    scorer.recommend(["50", "181"], k=10)           # [("172", 9.81), ...]: raw id and score, best first
    scorer.recommend(user="42", k=10, exclude_categories=["horror"])
    scorer.recommend_batch([["50"], ["1", "7"]], k=5, exclude_seen=False)
    scorer.recommend_batch(users=["42", "43"], k=5)
    scorer.scores([["50", "181"]])                  # [B, n_items + 1] float32; column 0 is padding (-inf)

It does what the graph leaves to the caller, as `llmrec.recommend.Recommender` does: raw ids to the graph's item
ids (an unknown history id is skipped, an unknown user has an empty history; both with an ``UnknownIdWarning``,
``strict=True`` refuses them with a KeyError), the most recent ``max_seq_len`` items kept, left padding with 0; an
empty history ranks the items by popularity (ties: the catalogue's order); then the history's own items (the
model's seen-item rule unless ``exclude_seen`` says otherwise), unavailable items and the business filters
(include/exclude items and categories, categories in any case) are masked out before top-k, by the same
``apply_masks`` as the Recommender's. ``new_items=n`` keeps the last n places of each list for the best-scored
new items (no event in the stored histories, or held out of training by a cold-item split), as ``Recommender.recommend(new_items=n)`` (``new_item_quota``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FILTERS_FILE", "ITEMS_FILE", "RULES_FILE", "OnnxScorer"]

ITEMS_FILE = "onnx_items.json"  # raw item ids; the id at position i is the graph's item i + 1 (0 is padding)
RULES_FILE = "onnx_rules.json"  # categories, availability, seen-item rule, histories, popularity
FILTERS_FILE = "onnx_filters.py"  # the export's copy of llmrec.filters


def _filters() -> ModuleType:
    """The rules: `llmrec.filters` where llmrec is installed (its ItemFilter and warning classes are then the ones
    a caller already holds), else the export's copy beside this file."""
    try:
        from llmrec import filters

        return filters
    except ImportError:
        pass
    copy = Path(__file__).with_name(FILTERS_FILE)
    name = "onnx_filters"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(copy):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, copy)
    if spec is None or spec.loader is None or not copy.is_file():
        raise ImportError(f"{copy}: missing; export the model again with `llmrec export --onnx`")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


class OnnxScorer:
    """Raw-id histories (or stored users) in, scores or top-k raw ids out, through onnxruntime on an export folder."""

    def __init__(self, folder: str | Path, *, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        meta = json.loads((folder / "onnx.json").read_text(encoding="utf-8"))
        self.max_seq_len = int(meta["max_seq_len"])
        self.raw_ids: list[str] = [str(i) for i in json.loads((folder / ITEMS_FILE).read_text(encoding="utf-8"))]
        self.item_index = {raw: i + 1 for i, raw in enumerate(self.raw_ids)}
        self.input_name = str(meta["input"]["name"])
        self.output_name = str(meta["output"]["name"])
        self.session: Any = ort.InferenceSession(str(folder / meta["file"]), providers=list(providers))
        rules_file = folder / RULES_FILE  # exports from before the rules travelled: no catalogue rules, seen left out
        rules: dict[str, Any] = json.loads(rules_file.read_text(encoding="utf-8")) if rules_file.is_file() else {}
        self.filters = _filters()
        self.masks = self.filters.ItemMasks(self.raw_ids, rules.get("categories"), rules.get("available"))
        self.exclude_seen_default = bool(rules.get("exclude_seen", True))
        self.histories = {str(u): np.asarray(h, dtype=np.int64) for u, h in rules.get("histories", {}).items()}
        popularity = rules.get("popularity")
        self.popularity = None if popularity is None else np.array([-np.inf, *popularity], dtype=np.float32)  # [V+1]
        # new items (`new_items`): no stored event, or held out of training by a cold-item split; None: unknown
        is_cold = rules.get("is_cold")
        self.is_new: npt.NDArray[np.bool_] | None = None
        if self.popularity is not None or is_cold is not None:
            self.is_new = np.zeros(self.n_items + 1, dtype=bool) if self.popularity is None else self.popularity == 0
            if is_cold is not None:
                self.is_new[1:] |= np.asarray(is_cold, dtype=bool)

    @property
    def n_items(self) -> int:
        return len(self.raw_ids)

    def _check(self, histories: Sequence[Sequence[str]]) -> None:
        if isinstance(histories, str) or any(isinstance(h, str) for h in histories):
            raise TypeError("histories is a list of histories, each a list of raw item ids (not a bare string)")

    def resolve(
        self, history: Sequence[str] | None = None, user: str | None = None, *, strict: bool = False
    ) -> tuple[npt.NDArray[np.int64], list[str], str | None]:
        """(the graph's item ids, skipped unknown raw ids, "popular" when there is nothing to go on) for one raw
        history or one stored user, as `Recommender.resolve_history`; strict: unknown ids are a KeyError."""
        if (history is None) == (user is None):
            raise ValueError("give exactly one of history= or user=")
        if history is None:
            if str(user) not in self.histories and strict:
                raise KeyError(f"unknown user id(s): {user}")
            ids = self.histories.get(str(user), np.zeros(0, dtype=np.int64))
            ignored: list[str] = []
        else:
            self._check([history])
            raw = [str(h) for h in history]
            ignored = list(dict.fromkeys(h for h in raw if h not in self.item_index))
            if ignored and strict:
                raise KeyError(f"unknown item id(s): {', '.join(ignored[:10])}")
            ids = np.array([self.item_index[h] for h in raw if h in self.item_index], dtype=np.int64)
        return ids, ignored, ("popular" if not len(ids) and self.popularity is not None else None)

    def _padded(self, histories: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
        """The graph's input [B, max_seq_len]: each history's most recent items, left-padded with 0."""
        out = np.zeros((len(histories), self.max_seq_len), dtype=np.int64)
        for row, ids in enumerate(histories):
            ids = ids[-self.max_seq_len :]
            if len(ids):
                out[row, -len(ids) :] = ids
        return out

    def encode(self, histories: Sequence[Sequence[str]]) -> npt.NDArray[np.int64]:
        """Raw-id histories (oldest first; unknown ids skipped) -> the graph's input [B, max_seq_len]."""
        self._check(histories)
        return self._padded(
            [np.array([self.item_index[str(h)] for h in hist if str(h) in self.item_index]) for hist in histories]
        )

    def _scores(self, histories: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        result = self.session.run([self.output_name], {self.input_name: self._padded(histories)})[0]
        scores = np.array(result, dtype=np.float32)  # [B, V+1], a copy the masks may write to
        for row, ids in enumerate(histories):
            if not len(ids) and self.popularity is not None:  # nothing to go on: the most popular items
                scores[row] = self.popularity
        return scores

    def scores(self, histories: Sequence[Sequence[str]]) -> npt.NDArray[np.float32]:
        """[B, n_items + 1] the graph's scores; column i is item ``raw_ids[i - 1]``, column 0 (padding) is -inf."""
        result = self.session.run([self.output_name], {self.input_name: self.encode(histories)})[0]
        return np.asarray(result, dtype=np.float32)

    def recommend_batch(
        self,
        histories: Sequence[Sequence[str]] | None = None,
        k: int = 10,
        *,
        users: Sequence[str] | None = None,
        exclude_seen: bool | None = None,
        filters: Any = None,
        strict: bool = False,
        new_items: int = 0,
    ) -> list[list[tuple[str, float]]]:
        """Top-k (raw id, score) per raw history or per stored user (`users`), best first. exclude_seen: None =
        the model's rule; filters: an ``ItemFilter`` of `llmrec.filters` (or of the export's ``onnx_filters``);
        new_items: the last n places hold the n best-scored new items (items with no stored event), 0 = off."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if isinstance(new_items, bool) or not isinstance(new_items, int) or not 0 <= new_items <= k:
            raise ValueError(f"new_items must be an int in 0..k ({k}), got {new_items!r}")
        if new_items and self.is_new is None:
            raise ValueError("new_items needs the stored histories (onnx_rules.json) to tell new items")
        if (histories is None) == (users is None):
            raise ValueError("give exactly one of histories or users=")
        if histories is not None:
            self._check(histories)
            resolved = [self.resolve(history=h, strict=strict) for h in histories]
        else:
            resolved = [self.resolve(user=str(u), strict=strict) for u in users or ()]
        ids = [r[0] for r in resolved]
        if ignored := list(dict.fromkeys(i for r in resolved for i in r[1])):
            shown = ", ".join(ignored[:10]) + (" …" if len(ignored) > 10 else "")
            warnings.warn(
                f"ignored unknown item ids: {shown} (skipped; strict=True refuses them)",
                self.filters.UnknownIdWarning,
                stacklevel=2,
            )
        if users is not None and (unknown := [str(u) for u in users if str(u) not in self.histories]):
            warnings.warn(
                f"{len(unknown)} unknown user id(s) ({', '.join(map(repr, unknown[:5]))}) got the popular items (fallback: popular)",
                self.filters.UnknownIdWarning,
                stacklevel=2,
            )
        if unknown_categories := self.masks.unknown_categories(filters):
            warnings.warn(
                f"ignored unknown categories: {', '.join(unknown_categories)} (no catalogue item has them)",
                self.filters.UnknownCategoryWarning,
                stacklevel=2,
            )
        rule = self.exclude_seen_default if exclude_seen is None else bool(exclude_seen)
        scores = self.filters.apply_masks(self._scores(ids), ids, [rule] * len(ids), [self.masks.blocked(filters)] * len(ids))
        out = []
        if new_items and self.is_new is not None:
            for row in scores:
                cols = self.filters.new_item_quota(row, k, new_items, self.is_new)
                out.append([(self.raw_ids[i - 1], float(row[i])) for i in cols])
            return out
        for row in scores:
            n = min(k, int(np.isfinite(row).sum()))
            top = np.argsort(-row, kind="stable")[:n]  # ties: the lower item id first
            out.append([(self.raw_ids[i - 1], float(row[i])) for i in top])
        return out

    def recommend(
        self,
        history: Sequence[str] | None = None,
        k: int = 10,
        *,
        user: str | None = None,
        exclude_seen: bool | None = None,
        strict: bool = False,
        include_items: Sequence[str] | None = None,
        exclude_items: Sequence[str] | None = None,
        include_categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
        include_unavailable: bool = False,
        new_items: int = 0,
    ) -> list[tuple[str, float]]:
        """Top-k (raw id, score) for one raw history (oldest first) or one stored user, best first, with the
        Recommender's options and business rules."""
        rules = self.filters.ItemFilter.of(
            include_items, exclude_items, include_categories, exclude_categories, include_unavailable
        )
        if user is not None and history is None:
            return self.recommend_batch(
                users=[user], k=k, exclude_seen=exclude_seen, filters=rules, strict=strict, new_items=new_items
            )[0]
        if history is None:
            raise ValueError("give exactly one of history or user=")
        if user is not None:
            raise ValueError("give exactly one of history or user=")
        return self.recommend_batch([history], k, exclude_seen=exclude_seen, filters=rules, strict=strict, new_items=new_items)[0]
