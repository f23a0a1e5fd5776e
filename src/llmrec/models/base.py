"""The model contract: what training, evaluation, serving and explanation may ask of any model.

Every model type satisfies ``RecModel`` (score every item for a batch of histories, save and load itself as a
self-describing folder). Optional abilities are separate protocols, checked with ``isinstance`` on the protocol
(structural, ``runtime_checkable``), so a door asks "can this model do X?" instead of "is this model class Y?":

- ``Trainable``: ``forward(batch).loss`` — the training loop (`llmrec.training.loop.train_loop`) needs nothing else.
- ``ItemEmbeddingModel``: a dot-product scorer with an item table and history encoder — approximate retrieval
  (FAISS), diversity features, per-user adaptation (`llmrec.models.adapter`, meta-training) and collaborative
  semantic ids need these.
- ``Adaptable``: a ``RecModel`` that is also an ``ItemEmbeddingModel`` — what a per-user adapter
  (`llmrec.models.adapter`) and meta-training (`llmrec.meta.training`) need.
- ``ColdItemMappable``: an ``Adaptable`` model whose item rows can be set — cold-item mapping
  (`llmrec.models.cold_items`, ``llmrec map-cold-items``) writes text-mapped vectors into them.

The next-item LM and BSARec satisfy all of them; the T5 and the baselines only ``RecModel`` (the T5 also ``Trainable``).
No package outside ``models/`` asks a model's class or ``model_type`` to decide what it may do.

The shapes follow DESIGN.md: histories are left-padded internal ids ``[B, L]`` (0 = padding); scores are
``[B, V+1]`` with column 0 (padding) at -inf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import torch

from llmrec.types import SeqBatch

__all__ = [
    "Adaptable",
    "ColdItemMappable",
    "GradientAttributable",
    "ItemEmbeddingModel",
    "ModelConfig",
    "OnnxExportable",
    "RecModel",
    "Trainable",
    "TrainOutput",
]


@runtime_checkable
class RecModel(Protocol):
    """Any recommendation model: exact full-ranking scores plus a safetensors + JSON folder format."""

    model_type: str  # the artifact's config.json "model_type", the key of ``llmrec.models.MODELS``

    @property
    def max_seq_len(self) -> int:
        """The longest history the model reads; callers left-pad histories to this length."""
        ...

    @property
    def n_items(self) -> int:
        """Catalogue size V (items 1..V; 0 is padding)."""
        ...

    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded histories -> [B, V+1] next-item scores (column 0 = -inf)."""
        ...

    def save_pretrained(self, path: str | Path) -> None: ...

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Self: ...


class TrainOutput(Protocol):
    loss: torch.Tensor | None


class ModelConfig(Protocol):
    """A model's frozen config dataclass, as far as training needs it: what a checkpoint records."""

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Trainable(Protocol):
    """A model the training loop can fit: a torch module whose forward returns an output with a loss.

    ``config.to_dict()`` is what a checkpoint records; ``--resume`` refuses a checkpoint whose config differs."""

    @property
    def config(self) -> ModelConfig: ...  # the frozen config dataclass (read-only here: a subclass narrows its type)

    def forward(self, batch: SeqBatch) -> Any: ...  # an output object with `.loss` (RecOutput, Seq2SeqOutput)

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...

    def save_pretrained(self, path: str | Path) -> None: ...


@runtime_checkable
class ItemEmbeddingModel(Protocol):
    """A dot-product scorer: score = encode(history)[:, -1] @ item_table().T."""

    @property
    def max_seq_len(self) -> int: ...

    def item_table(self) -> torch.Tensor:
        """[V+1, D] output embedding of every item (row 0 = padding)."""
        ...

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] -> hidden states [B, L, D]; the last position is the query vector."""
        ...


@runtime_checkable
class Adaptable(RecModel, ItemEmbeddingModel, Protocol):
    """A model a per-user adapter can sit on: it scores like any RecModel and exposes encode() and item_table()."""


@runtime_checkable
class ColdItemMappable(RecModel, ItemEmbeddingModel, Protocol):
    """A model with item embeddings whose item table has one free row per item, which cold-item mapping may set."""

    def set_item_rows(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        """Make ``item_table()[items] == vectors`` (items [M] ids in 1..V, vectors [M, D]); no other row changes."""
        ...


@runtime_checkable
class GradientAttributable(ItemEmbeddingModel, Protocol):
    """A dot-product scorer whose token representations enter one module, which gradient × input hooks."""

    def token_input_module(self) -> torch.nn.Module | None:
        """The module whose first input is the [B, L, D] token representation of a history; None when the model
        has none (then only occlusion explains it)."""
        ...


@runtime_checkable
class OnnxExportable(RecModel, Protocol):
    """A model whose `score` is plain tensor code that torch's ONNX exporter traces (``llmrec export --onnx``)."""

    def onnx_module(self) -> torch.nn.Module:
        """A module whose forward(item_ids [B, L]) -> [B, V+1] computes `score`; what the exporter traces."""
        ...
