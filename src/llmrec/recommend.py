"""Recommender: load a model artifact directory and recommend from a user id or a list of raw item ids.

    rec = Recommender.load("runs/beauty/model")
    rec.recommend(history=["1", "5", "9"], k=10)   # -> list[Recommendation]
    rec.recommend(user="42", k=10, exclude_seen=True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from llmrec.data.sequences import pad_left
from llmrec.models.baselines import ItemKNN, MostPopular
from llmrec.models.next_item_lm import NextItemLM

__all__ = ["Recommendation", "Recommender", "UnknownIdError", "load_model"]


class UnknownIdError(KeyError):
    """Raw user or item ids that the model does not know; `.ids` lists them."""

    def __init__(self, kind: str, ids: list[str]) -> None:
        self.kind = kind
        self.ids = ids
        shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
        super().__init__(f"unknown {kind} id(s): {shown}")

    def __str__(self) -> str:
        return str(self.args[0])


class _Scorer(Protocol):
    def score(self, item_ids: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Recommendation:
    item_id: str  # raw item id
    score: float
    rank: int  # 1-based
    title: str | None = None


def load_model(path: str | Path) -> Any:
    """Load any llmrec model directory by its config.json `model_type` (safetensors + JSON, no pickle)."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    model_type = json.loads(cfg_path.read_text()).get("model_type")
    loaders = {"next-item-lm": NextItemLM, "most-popular": MostPopular, "item-knn": ItemKNN}
    if model_type not in loaders:
        raise ValueError(f"{cfg_path}: unknown model_type {model_type!r}; known: {', '.join(loaders)}")
    return loaders[model_type].from_pretrained(path)


class Recommender:
    """Facade over a model artifact: raw ids in, ranked raw ids (with titles) out."""

    def __init__(self, model: _Scorer, items: pl.DataFrame, histories: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.model = model
        self.items = items.sort("item_idx")
        self.raw_ids: list[str] = self.items["item"].to_list()
        self.titles: list[str | None] = self.items["title"].to_list()
        self.item_index = {raw: i + 1 for i, raw in enumerate(self.raw_ids)}
        self.histories = histories
        self.meta = meta
        self.max_seq_len = int(getattr(getattr(model, "config", None), "max_seq_len", 0) or getattr(model, "max_seq_len", 50))

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        path = Path(path)
        model = load_model(path)
        items = pl.read_parquet(path / "items.parquet")
        histories: dict[str, np.ndarray] = {}
        if (path / "histories.parquet").exists():
            h = pl.read_parquet(path / "histories.parquet")
            histories = {u: np.asarray(s, dtype=np.int64) for u, s in zip(h["user"].to_list(), h["items"].to_list(), strict=True)}
        meta = json.loads((path / "dataset.json").read_text()) if (path / "dataset.json").exists() else {}
        return cls(model, items, histories, meta)

    @property
    def n_items(self) -> int:
        return len(self.raw_ids)

    def encode_history(self, history: list[str]) -> np.ndarray:
        unknown = [str(h) for h in history if str(h) not in self.item_index]
        if unknown:
            raise UnknownIdError("item", unknown)
        return np.array([self.item_index[str(h)] for h in history], dtype=np.int64)

    def user_history(self, user: str) -> np.ndarray:
        if str(user) not in self.histories:
            raise UnknownIdError("user", [str(user)])
        return self.histories[str(user)]

    def score_batch(self, histories: list[np.ndarray]) -> torch.Tensor:
        """[B, V+1] scores for internal-id histories (column 0 = -inf)."""
        return self.model.score(pad_left(histories, self.max_seq_len))

    def recommend_batch(
        self, histories: list[np.ndarray], k: int = 10, *, exclude_seen: bool = False
    ) -> list[list[Recommendation]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = self.score_batch(histories)
        if exclude_seen:
            for i, h in enumerate(histories):
                if len(h):
                    scores[i, torch.from_numpy(h)] = float("-inf")
        top = scores.topk(min(k, self.n_items), dim=1)
        out = []
        for vals, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            recs = [
                Recommendation(self.raw_ids[j - 1], float(v), r + 1, self.titles[j - 1])
                for r, (v, j) in enumerate(zip(vals, idx, strict=True))
                if v != float("-inf")
            ]
            out.append(recs)
        return out

    def recommend(
        self, *, history: list[str] | None = None, user: str | None = None, k: int = 10, exclude_seen: bool = False
    ) -> list[Recommendation]:
        """Top-k items for a raw history (oldest first) or a known raw user id."""
        if (history is None) == (user is None):
            raise ValueError("give exactly one of history= or user=")
        h = self.encode_history(history) if history is not None else self.user_history(str(user))
        return self.recommend_batch([h], k, exclude_seen=exclude_seen)[0]
