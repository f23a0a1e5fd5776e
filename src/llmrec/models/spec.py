"""`ModelSpec`: what a model type declares about itself, the unit of registration in `llmrec.models.MODELS`.

Each model file ends with one ``SPEC = ModelSpec(...)``; ``llmrec.models.MODELS`` maps the artifact's
``model_type`` to a (lazy) loader of it. Training, evaluation, serving and explanation ask the spec and the
protocols of `llmrec.models.base`, never a class or a name:

- ``config``: the frozen config dataclass, checked once when it is built from the user's ``[model]`` settings
  (its ``__post_init__`` range checks) with placeholder sizes; training then sizes it from the dataset's metadata
  (`DatasetMeta`: item count, attribute matrix, text embeddings) with `sized`, which re-runs the same checks.
- ``build(config, meta)``: a fresh model from its config and the dataset's metadata (never a dataset object).
- ``examples``: the training examples it accepts (``"windows"`` causal multi-target windows, ``"prefixes"`` one
  target per example); the first is its default.
- ``presets``: named settings laid under the user's (``sasrec`` is a preset of ``next-item-lm``).
- ``train_defaults``: the ``[train]`` settings the model is trained with unless the user sets them (its recipe: batch
  size, learning rate, optimizer, horizon), laid over the library's `TrainConfig` defaults and under the user's
  ``[train]`` section, so that ``llmrec train --model NAME`` alone runs the recipe its numbers were measured with.
- ``search_space``: what ``llmrec tune`` searches for this model (setting name -> `SearchParam`: its section, kind
  and range or choices), and ``search_derived``: the ``[model]`` settings that follow from a sampled point (the LM's
  d_ff = 4 × d_model, TV-Rec's emb_dropout = dropout); a model without a search space is refused by tune.
- ``fit``: for models that are not trained by gradient descent (most-popular, item-kNN) or train their own way
  (the T5 with its semantic ids), their own fit; ``None`` means the generic fit (`llmrec.training.recipes`), which
  selects the epoch count on validation and refits (`llmrec.training.refit.select_then_refit`).
- ``capabilities``: derived from the class, by the protocols of `llmrec.models.base` it satisfies.

Importing this module imports no torch (the registry and ``llmrec --help`` stay light).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import torch
    from _typeshed import DataclassInstance

    from llmrec.data.dataset import PreparedDataset
    from llmrec.models.base import RecModel

__all__ = ["DERIVED_SIZES", "DatasetMeta", "Examples", "FitInput", "ModelSpec", "SearchParam", "SearchValue", "sized"]

Examples = Literal["windows", "prefixes"]
C = TypeVar("C", bound="DataclassInstance")

SearchValue = bool | int | float | str  # a value a searched setting takes (a TOML scalar)


@dataclass(frozen=True)
class SearchParam:
    """One setting ``llmrec tune`` searches: the config section it belongs to, and its range or choices.

    ``kind`` "float" draws from [low, high], "int" an integer from [low, high] (``log``: uniformly in log space, low
    > 0), "categorical" one of ``choices``. Checked when declared, so a model file with a bad space fails on import.
    """

    section: Literal["model", "train"]  # [model] (the config dataclass) or [train] (`TrainConfig`)
    kind: Literal["float", "int", "categorical"]
    low: float = 0.0  # "float" / "int": the range's ends (closed)
    high: float = 0.0
    log: bool = False  # sample uniformly in log space (learning rates, weight decay)
    choices: tuple[SearchValue, ...] = ()  # "categorical": the values tried

    def __post_init__(self) -> None:
        if self.section not in ("model", "train"):
            raise ValueError(f"search section must be 'model' or 'train', got {self.section!r}")
        if self.kind == "categorical":
            if not self.choices or self.log:
                raise ValueError("a categorical search needs choices (and no log)")
        elif self.kind in ("float", "int"):
            if self.choices or not self.low <= self.high or (self.log and self.low <= 0):
                raise ValueError(f"a {self.kind} search needs low <= high (low > 0 with log), got {self.low}..{self.high}")
            if self.kind == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
                raise ValueError(f"an int search needs whole ends, got {self.low}..{self.high}")
        else:
            raise ValueError(f"search kind must be float, int or categorical, got {self.kind!r}")

    def edges(self) -> tuple[SearchValue, ...]:
        """The values at the space's edges: the two ends of a range, every choice (what a validity check tries)."""
        if self.kind == "categorical":
            return self.choices
        if self.kind == "int":
            return (int(self.low), int(self.high))
        return (self.low, self.high)

    def largest(self) -> SearchValue | None:
        """The largest value of a size-like setting (int ranges, numeric choices; what the memory check assumes), None
        for a float range or non-numeric choices."""
        if self.kind == "int":
            return int(self.high)
        numbers = [c for c in self.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        return max(numbers) if self.kind == "categorical" and len(numbers) == len(self.choices) else None


# Config fields that come from the dataset's metadata, never from a user (placeholders while settings are checked).
DERIVED_SIZES: dict[str, int] = {"n_items": 1, "n_attributes": 0, "max_item_attributes": 0, "text_dim": 0}


class FitInput(Protocol):
    """What a spec's own `fit` reads (`llmrec.training.recipes.FitRequest` provides it): declared here so that a
    model file names no type of the training layer above it (imports point down: data <- models <- train)."""

    @property
    def dataset(self) -> PreparedDataset: ...
    @property
    def params(self) -> dict[str, Any]: ...  # the merged [model] section
    @property
    def train(self) -> Any: ...  # the [train] config (llmrec.training.TrainConfig)
    @property
    def out(self) -> Path: ...
    @property
    def resume(self) -> bool: ...
    @property
    def run_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class DatasetMeta:
    """What a model may know of its dataset: sizes and item-side features (none when a model does not use them)."""

    n_items: int  # catalogue size V (items 1..V, 0 is padding)
    attributes: torch.Tensor | None = None  # [V+1, A] attribute ids per item (0 = none), when used
    attribute_vocab: tuple[str, ...] = ()  # attribute id i <-> attribute_vocab[i - 1]
    text: torch.Tensor | None = None  # [V+1, text_dim] frozen text embeddings, when used
    popularity: np.ndarray | None = None  # [V+1] training counts per item (a sampled softmax's proposal; the long tail)

    def sizes(self) -> dict[str, int]:
        """The derived config fields (`DERIVED_SIZES`) this metadata sets."""
        a = self.attributes
        return {
            "n_items": self.n_items,
            "n_attributes": len(self.attribute_vocab) if a is not None and self.attribute_vocab else 0,
            "max_item_attributes": int(a.shape[1]) if a is not None and self.attribute_vocab else 0,
            "text_dim": int(self.text.shape[1]) if self.text is not None else 0,
        }


def sized(config: C, meta: DatasetMeta) -> C:
    """`config` (a frozen dataclass) with the fields of `DERIVED_SIZES` it has taken from `meta` (checked again)."""
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in meta.sizes().items() if k in names})


def _protocol_members(proto: type) -> set[str]:
    members: set[str] = set()
    for klass in proto.__mro__:
        if klass is object or not getattr(klass, "_is_protocol", False) or klass.__name__ in ("Protocol", "Generic"):
            continue
        members |= {n for n in vars(klass) if not n.startswith("_")} | set(getattr(klass, "__annotations__", {}))
    return members


@dataclass(frozen=True)
class ModelSpec:
    """One model type (see the module docstring)."""

    model_type: str  # config.json "model_type" of its artifacts
    model_class: type[RecModel]  # loads its artifacts (from_pretrained)
    config: type[Any] | None = None  # the frozen config dataclass (None: settings checked by `check`)
    build: Callable[[Any, DatasetMeta], RecModel] | None = None  # (sized config, metadata) -> a fresh model
    examples: tuple[Examples, ...] = ("windows", "prefixes")  # accepted training examples, the default first
    features: bool = False  # reads item attributes / text: accepts [model] use_attributes and item_text
    text_default: bool | str = False  # [model] item_text when unset ("auto": the catalogue's titles when it has them)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # training name -> settings under the user's
    train_defaults: Mapping[str, Any] = field(default_factory=dict)  # [train] settings under the user's (its recipe)
    # its own fit -> (the model, summary fields); None: the generic neural fit (`llmrec.training.fit.fit_spec`)
    fit: Callable[[FitInput], tuple[RecModel, dict[str, Any]]] | None = None
    check: Callable[[dict[str, Any]], None] | None = None  # settings check when there is no `config` class
    distributed: bool = False  # trains under torchrun / accelerate (data parallel)
    estimate_memory: bool = False  # its peak memory is estimated before training (`llmrec.training.memory`)
    popularity_baseline: bool = False  # it is the most-popular ranking: evaluation does not compare it with itself
    search_space: Mapping[str, SearchParam] = field(default_factory=dict)  # what `llmrec tune` searches ({}: refused)
    # [model] settings that follow from a sampled point, laid over it (None: nothing follows)
    search_derived: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None

    def capabilities(self) -> tuple[str, ...]:
        """Names of the `llmrec.models.base` protocols the class provides every member of."""
        from llmrec.models import base

        protocols = ("Trainable", "ItemEmbeddingModel", "Adaptable", "ColdItemMappable", "GradientAttributable", "OnnxExportable")
        cls = self.model_class
        declared = {n for k in cls.__mro__ for n in getattr(k, "__annotations__", {})}  # e.g. `config: XxxConfig`

        def has(member: str) -> bool:
            return hasattr(cls, member) or member in declared

        return tuple(p for p in protocols if all(has(m) for m in _protocol_members(getattr(base, p))))
