"""The seen-item rule applied: which items a user's history takes out of a ranking.

One rule, applied the same way by every door: with ``exclude_seen`` every item of the user's history leaves the
ranking, a target that is itself in the history included (RecBole's convention; evaluation counts it as a miss).
`seen_mask` is that rule as a score mask for evaluation (`llmrec.eval.ranking`), a torch view of
`llmrec.filters.seen_matrix`, which `Recommender` and the ONNX scorer apply (`llmrec.filters.apply_masks`); `seen_items` is the same rule as id lists, for the FAISS path
(`llmrec.retrieval.ann_candidates`), which cannot mask a full score row. Whether a model excludes seen items by
default is decided at training time (`llmrec.eval.seen_rule`).

This module imports only numpy, torch and `llmrec.filters` (numpy only), so evaluation and the recommendation facade both import it without
bending the import direction (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["seen_items", "seen_mask"]


def seen_items(histories: Sequence[npt.NDArray[np.int64]], excluded: Sequence[bool]) -> list[npt.NDArray[np.int64] | None]:
    """Per row, the internal item ids its history takes out of the ranking (None: nothing, the history is kept)."""
    if len(excluded) != len(histories):
        raise ValueError(f"{len(excluded)} seen-item flags for {len(histories)} histories")
    return [h if is_excluded and len(h) else None for h, is_excluded in zip(histories, excluded, strict=True)]


def seen_mask(
    histories: Sequence[npt.NDArray[np.int64]],
    n_items: int,
    *,
    excluded: Sequence[bool] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """[B, V+1] bool, True where row b's history takes item v out of the ranking (`excluded`: per row whether the
    rule applies; None: every row). Column 0 (padding) is left as the histories have it: a caller ranks from 1.
    History ids outside 0..n_items are a ValueError."""
    from llmrec.filters import seen_matrix  # the rule itself, in numpy (the exported ONNX scorer applies it too)

    return torch.from_numpy(seen_matrix(histories, n_items, excluded)).to(device)
