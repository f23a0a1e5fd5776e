"""Non-neural baselines with the same scoring surface as the language models: `score(item_ids [B, L]) -> [B, V+1]`.

- MostPopular: the training popularity of each item, the same list for everyone.
- ItemKNN: item-to-item cosine similarity of co-occurrence in training sequences (Sarwar et al., WWW 2001),
  scored as the recency-weighted sum of the similarities to the items in the history — the usual strong
  "sequential kNN" floor for session-based and sequential recommendation.

Both are saved as safetensors + JSON like the neural models.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmrec.config import MAX_SEQ_LEN, check_range
from llmrec.models.spec import ModelSpec
from llmrec.types import PAD_ID

if TYPE_CHECKING:
    from llmrec.models.base import RecModel
    from llmrec.models.spec import FitInput

__all__ = ["ITEM_KNN", "MOST_POPULAR", "ItemKNN", "MostPopular"]


class MostPopular:
    """Ranks items by how often they occur in training; ignores the history."""

    model_type = "most-popular"
    max_seq_len = 50  # the history is ignored; histories are padded to this length like any model's

    def __init__(self, counts: torch.Tensor) -> None:
        self.counts = counts.float()  # [V+1]
        self.n_items = counts.shape[0] - 1

    @classmethod
    def fit(cls, train_sequences: Sequence[np.ndarray], n_items: int) -> MostPopular:
        flat = np.concatenate(list(train_sequences)) if len(train_sequences) else np.zeros(0, dtype=np.int64)
        return cls(torch.from_numpy(np.bincount(flat, minlength=n_items + 1)).float())

    @torch.no_grad()
    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        s = self.counts.unsqueeze(0).expand(item_ids.shape[0], -1).clone()  # [B, V+1]
        s[:, PAD_ID] = float("-inf")
        return s

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"model_type": self.model_type, "n_items": self.n_items}))
        save_file({"counts": self.counts.contiguous()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MostPopular:
        return cls(load_file(str(Path(path) / "model.safetensors"))["counts"])


class ItemKNN:
    """Sequential item-kNN: score(j | h) = Σ_t decay^(T-t) · cos(h_t, j) over the last `max_seq_len` history items."""

    model_type = "item-knn"

    def __init__(self, sim: torch.Tensor, *, decay: float = 0.8, max_seq_len: int = 50) -> None:
        self.sim = sim.coalesce()  # sparse [V+1, V+1], top-n neighbours per row
        # S^T in CSR, built once: CSR @ dense is a fast kernel; transposing COO per batch was the bottleneck.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self._sim_t_csr = self.sim.t().coalesce().to_sparse_csr()
        self.n_items = sim.shape[0] - 1
        self.decay = decay
        self.max_seq_len = max_seq_len

    @classmethod
    def fit(
        cls,
        train_sequences: Sequence[np.ndarray],
        n_items: int,
        *,
        neighbours: int = 200,
        shrink: float = 10.0,
        decay: float = 0.8,
        max_seq_len: int = 50,
    ) -> ItemKNN:
        """Cosine of the user×item incidence columns, shrunk by n_ij / (n_ij + shrink), top `neighbours` per item."""
        V = n_items + 1
        if not len(train_sequences):
            raise ValueError("ItemKNN.fit: no training sequences")
        rows = np.concatenate([np.full(len(np.unique(s)), u) for u, s in enumerate(train_sequences)])
        cols = np.concatenate([np.unique(s) for s in train_sequences])
        X = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([rows, cols])), torch.ones(len(rows)), (len(train_sequences), V), check_invariants=True
        ).coalesce()  # [U, V]
        with warnings.catch_warnings():  # sparse @ sparse goes through CSR internally, which warns that it is "beta"
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            co = torch.sparse.mm(X.t().coalesce(), X).coalesce()  # [V, V] co-occurrence counts
        i, j = co.indices()
        n_ij = co.values()
        n = torch.from_numpy(np.bincount(cols, minlength=V)).float()  # [V] users per item
        keep = i != j
        i, j, n_ij = i[keep], j[keep], n_ij[keep]
        sim = n_ij / (torch.sqrt(n[i] * n[j]) + 1e-9) * (n_ij / (n_ij + shrink))
        # keep the `neighbours` most similar items of each row: sort by (row, -sim), rank within the row
        order = torch.from_numpy(np.lexsort((-sim.numpy(), i.numpy())))
        i, j, sim = i[order], j[order], sim[order]
        rank = torch.arange(len(i)) - torch.searchsorted(i, i)
        k = rank < neighbours
        S = torch.sparse_coo_tensor(torch.stack([i[k], j[k]]), sim[k].float(), (V, V), check_invariants=True)
        return cls(S, decay=decay, max_seq_len=max_seq_len)

    @torch.no_grad()
    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        ids = item_ids[:, -self.max_seq_len :]  # [B, L]
        B, L = ids.shape
        w = self.decay ** torch.arange(L - 1, -1, -1, dtype=torch.float32)  # [L], most recent = 1
        w = w.expand(B, L) * (ids != PAD_ID)
        q = torch.zeros(B, self.n_items + 1).scatter_add_(1, ids, w)  # [B, V+1] weighted history
        s = (self._sim_t_csr @ q.t()).t()  # [B, V+1] = q @ S
        s[:, PAD_ID] = float("-inf")
        return s

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"model_type": self.model_type, "n_items": self.n_items, "decay": self.decay, "max_seq_len": self.max_seq_len}
        (path / "config.json").write_text(json.dumps(cfg))
        save_file(
            {"indices": self.sim.indices().contiguous(), "values": self.sim.values().contiguous()},
            str(path / "model.safetensors"),
        )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ItemKNN:
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        t = load_file(str(path / "model.safetensors"))
        V = cfg["n_items"] + 1
        S = torch.sparse_coo_tensor(t["indices"], t["values"], (V, V), check_invariants=True)  # indices come from a file
        return cls(S, decay=cfg["decay"], max_seq_len=cfg["max_seq_len"])


# ---- specs: no gradient training, each its own fit on the training sequences ---------------------------------
def _fit_most_popular(req: FitInput) -> tuple[RecModel, dict[str, Any]]:
    return MostPopular.fit(req.dataset.train_sequences(), req.dataset.n_items), {}


_KNN_KEYS = ("neighbours", "shrink", "decay", "max_seq_len")


def _check_knn(params: dict[str, Any]) -> None:
    """Known keys, then ranges: neighbours 1..1,048,576, shrink >= 0, decay in (0, 1], max_seq_len 1..MAX_SEQ_LEN."""
    unknown = [k for k in params if k not in _KNN_KEYS]
    if unknown:
        raise ValueError(f"unknown config key(s) for item-knn: {', '.join('model.' + k for k in unknown)}")
    for key, value in params.items():
        whole = key in ("neighbours", "max_seq_len")
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            raise ValueError(f"model.{key}: expected {'int' if whole else 'float'}, got {value!r}")
    ranges = {"neighbours": (1, 1 << 20), "shrink": (0.0, None), "decay": (0.0, 1.0), "max_seq_len": (1, MAX_SEQ_LEN)}
    for key, value in params.items():
        check_range(f"model.{key}", value, *ranges[key], low_open=key == "decay")


def _fit_item_knn(req: FitInput) -> tuple[RecModel, dict[str, Any]]:
    return ItemKNN.fit(req.dataset.train_sequences(), req.dataset.n_items, **req.params), {}


MOST_POPULAR = ModelSpec("most-popular", MostPopular, examples=(), fit=_fit_most_popular, popularity_baseline=True)
ITEM_KNN = ModelSpec("item-knn", ItemKNN, examples=(), fit=_fit_item_knn, check=_check_knn)
