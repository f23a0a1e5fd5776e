"""Approximate retrieval for `llmrec.recommend.Recommender`: the FAISS index part of the facade, as a mixin.

Large catalogues: above ``ANN_THRESHOLD`` items (or when asked, ``Recommender.load(path, ann="hnsw")`` / ``use_ann``)
the top-k come from a FAISS index over the item table (`llmrec.index.ann`); the free functions behind it are in
`llmrec.retrieval`. This mixin holds the methods that keep the index on the facade (its state: ``ann``).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from llmrec.models.base import ItemEmbeddingModel, RecModel
from llmrec.retrieval import (
    ANN_MODES,
    ANN_THRESHOLD,
    N_CANDIDATES,
    ann_candidates,
    calibration_queries,
    item_table,
    load_or_build_index,
)

if TYPE_CHECKING:
    from llmrec.index.ann import ItemIndex

__all__ = ["IndexedRetrieval"]

log = logging.getLogger("llmrec.recommend")


class IndexedRetrieval:
    """`use_ann` and the index path of `recommend_batch`; the Recommender provides the attributes below."""

    model: RecModel
    histories: dict[str, np.ndarray]
    raw_ids: list[str]
    ann: ItemIndex | None

    def _padded(self, histories: list[np.ndarray]) -> torch.Tensor:
        raise NotImplementedError

    def _mmr(self, values: torch.Tensor, indices: torch.Tensor, k: int, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def use_ann(
        self,
        mode: str = "auto",
        *,
        threshold: int = ANN_THRESHOLD,
        index_dir: str | Path | None = None,
        target_recall: float = 0.99,
    ) -> ItemIndex | None:
        """Retrieve top-k through a FAISS index instead of scoring every item; returns the index (None: off).

        mode: "off"; "auto" = an index of kind "auto" when the catalogue has more than `threshold` items and the
        model is a next-item LM (else off); "flat" | "ivf" | "hnsw" = that kind whatever the size. A saved index in
        `index_dir` is loaded when it was built from this model's item table (and is of the asked kind); otherwise
        one is built, its search parameter calibrated to `target_recall` recall@10 on the hidden states of up to
        1,000 stored users. The index is a snapshot of the item table: call again after changing the weights.
        """
        if mode not in ANN_MODES:
            raise ValueError(f"ann must be one of {', '.join(ANN_MODES)}; got {mode!r}")
        has_table = isinstance(self.model, ItemEmbeddingModel)
        blended = bool(getattr(self.model, "blends_text", False))  # scores add the title term: no dot product
        if mode == "off" or (mode == "auto" and (not has_table or blended or len(self.raw_ids) <= threshold)):
            self.ann = None
            return None
        if blended:
            raise ValueError(
                f"ann={mode}: this model's scores add the items' title similarity (model.text_blend), which an index "
                "of the item table cannot hold; use ann='off' (or a model trained with model.text_blend = 0)"
            )
        if not has_table:
            raise ValueError(
                f"ann={mode} needs a model with item embeddings (e.g. a next-item LM); this model is {type(self.model).__name__}"
            )
        if mode == "auto" and importlib.util.find_spec("faiss") is None:  # the optional extra is not installed
            log.warning(
                "%d items but faiss is not installed (pip install 'llmrec[scale]'): scoring every item", len(self.raw_ids)
            )
            self.ann = None
            return None
        assert isinstance(self.model, ItemEmbeddingModel)
        self.ann = load_or_build_index(
            self.model, mode, self._calibration_queries, index_dir=index_dir, target_recall=target_recall
        )
        return self.ann

    def _item_table(self) -> torch.Tensor:
        assert isinstance(self.model, ItemEmbeddingModel)
        return item_table(self.model)  # [V+1, D]

    def _calibration_queries(self, n: int = 1000, seed: int = 0) -> np.ndarray | None:
        """Last hidden states [Q, D] of up to n stored histories (seeded sample), the index's calibration queries."""
        if not isinstance(self.model, ItemEmbeddingModel):
            return None
        return calibration_queries(self.model, self.histories, self._padded, n, seed)

    def _retrieve(
        self, histories: list[np.ndarray], k: int, excluded: list[bool], diversity: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The index path of recommend_batch -> (scores, item ids) [B, K], like topk over the full scores
        (`llmrec.retrieval.ann_candidates`: index candidates re-scored exactly with the item table, sorted)."""
        assert self.ann is not None and isinstance(self.model, ItemEmbeddingModel)
        n_candidates = max(N_CANDIDATES, 5 * k) if diversity > 0.0 else k
        values, ids = ann_candidates(self.model, self.ann, self._padded(histories), histories, excluded, n_candidates)
        if diversity > 0.0:
            return self._mmr(values, ids, k, 1.0 - diversity)
        return values, ids
