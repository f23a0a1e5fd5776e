"""Shared tensor containers and id conventions.

Item ids inside llmrec are contiguous integers 1..n_items; 0 is padding (PAD_ID). Sequences are left-padded
(right-aligned), so the most recent item of every row sits in the last column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PAD_ID", "SeqBatch"]

PAD_ID = 0


@dataclass
class SeqBatch:
    """A batch of item sequences.

    item_ids: [B, L] item ids, left-padded with PAD_ID.
    targets:  [B, L] next-item id at each position (PAD_ID where there is none); None at inference.
    """

    item_ids: torch.Tensor
    targets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> SeqBatch:
        return SeqBatch(
            item_ids=self.item_ids.to(device),
            targets=None if self.targets is None else self.targets.to(device),
        )
