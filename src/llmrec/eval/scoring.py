"""The one scoring function every evaluation, training selection and the Recommender use.

`score_fn(model)` turns any `llmrec.models.base.RecModel` into a ``ScoreFn``: B histories (1-D int64 arrays of
internal item ids, oldest first, any length) -> [B, V+1] scores on the CPU (column 0 = padding = -inf). The
histories are left-padded to the model's ``max_seq_len`` and moved to the device of its weights. With an
``adapter`` (the per-user `llmrec.models.adapter.UserAdapter` of a meta-trained artifact), each history first fits
its user vector (the inner loop), which is how cold-start users are scored. Evaluation never imports
`llmrec.meta` (meta-learning imports evaluation, not the reverse): the adapter and its inner loop are model code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from llmrec.data.sequences import pad_left

if TYPE_CHECKING:
    from llmrec.models.adapter import UserAdapter
    from llmrec.models.base import RecModel

__all__ = ["ScoreFn", "model_device", "resolve_device", "score_fn"]

ScoreFn = Callable[[list[npt.NDArray[np.int64]]], torch.Tensor]


def resolve_device(device: str) -> torch.device:
    """ "auto" | "cpu" | "cuda" -> a torch device; "cuda" without a CUDA device is a ValueError (a user error)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (use --device cpu, or auto)")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def model_device(model: Any) -> torch.device:
    """Where a model's weights are (the CPU for a model that is not a torch module, or has no tensors)."""
    if not isinstance(model, torch.nn.Module):
        return torch.device("cpu")
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def score_fn(model: RecModel, *, adapter: UserAdapter | None = None, max_seq_len: int | None = None) -> ScoreFn:
    """histories -> [B, V+1] CPU scores of `model` (see the module docstring).

    adapter: a `UserAdapter` of a meta-trained artifact; each history is adapted to first (the model must be an
    `ItemEmbeddingModel` on the CPU). max_seq_len: pad to this length instead of the model's own (it reads at most its
    own either way)."""
    length = int(max_seq_len if max_seq_len is not None else model.max_seq_len)
    if adapter is not None:
        from llmrec.models.adapter import make_adapted_score_fn  # the adapter's inner loop
        from llmrec.models.base import ItemEmbeddingModel

        if not isinstance(model, ItemEmbeddingModel):
            raise ValueError(f"adapt=True needs a model with item embeddings; this model is {type(model).__name__}")
        if model_device(model).type != "cpu":
            raise ValueError("adapt=True runs on the CPU: load the model with device='cpu'")
        return make_adapted_score_fn(model, adapter, max_seq_len=length)

    def score(histories: list[npt.NDArray[np.int64]]) -> torch.Tensor:
        device = model_device(model)
        scores = model.score(pad_left(histories, length).to(device))
        return scores if scores.device.type == "cpu" else scores.cpu()

    return score
