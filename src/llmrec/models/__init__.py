"""Recommendation models and their registry.

``MODELS`` is an explicit registry: config.json ``model_type`` -> a loader of the model file's `ModelSpec`
(`llmrec.models.spec`): its class, typed config, how it is built from the dataset's metadata, the examples it
trains on, its presets and capabilities. A new model is one file in this package (ending with its ``SPEC``) plus
one line here; training (``llmrec train --model``), `load_model`, the `Recommender`, the evaluators, the
explainers and the service then work with it through the contract in `llmrec.models.base`.

Importing this package imports no torch: the loaders import a model file when asked for (the T5 needs
transformers, a heavy import the other models never need), and ``PRESETS`` names the presets of the specs so
that ``llmrec --help`` lists every training name (a test checks it against the specs). The classes re-exported
here (``NextItemLM``, ``RecModel``, ...) are imported on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from llmrec.errors import ArtifactError
from llmrec.models.spec import ModelSpec

if TYPE_CHECKING:
    from llmrec.models.base import ItemEmbeddingModel, RecModel, Trainable
    from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig, RecOutput

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "PRESETS",
    "ItemEmbeddingModel",
    "ModelSpec",
    "NextItemLM",
    "NextItemLMConfig",
    "RecModel",
    "RecOutput",
    "Trainable",
    "load_model",
    "model_class",
    "model_spec",
    "training_names",
]


def _spec(module: str, name: str = "SPEC") -> Callable[[], ModelSpec]:
    """A loader of ``llmrec.models.<module>.<name>`` (the model file is imported when the loader is called)."""

    def load() -> ModelSpec:
        spec = getattr(importlib.import_module(f"llmrec.models.{module}"), name)
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"llmrec.models.{module}.{name} is not a ModelSpec")
        return spec

    return load


# One line a model type: its config.json "model_type" -> the spec at the end of its file.
MODELS: dict[str, Callable[[], ModelSpec]] = {
    "next-item-lm": _spec("next_item_lm"),
    "bsarec": _spec("bsarec"),
    "tvrec": _spec("tvrec"),
    "t5-semantic": _spec("seq2seq"),
    "most-popular": _spec("baselines", "MOST_POPULAR"),
    "item-knn": _spec("baselines", "ITEM_KNN"),
}

# The presets of the specs (training name -> model type), named here so the CLI lists them without importing torch.
PRESETS: dict[str, str] = {"sasrec": "next-item-lm"}

# What ``llmrec train`` and ``llmrec.train`` train without ``--model`` / ``model=``: TV-Rec with its recipe (the
# spec's ``train_defaults``), chosen on validation of beauty, lastfm and ml-100k (docs/benchmarks.md, "The default
# model"); ``llmrec tune`` tunes it too without ``--model`` (any model whose spec declares a ``search_space``).
# ``next-item-lm`` is the transformer LM that the sasrec preset builds on.
DEFAULT_MODEL = "tvrec"


def training_names() -> tuple[str, ...]:
    """Every ``--model`` name: the model types, each followed by its presets."""
    return tuple(n for t in MODELS for n in (t, *(p for p, of in PRESETS.items() if of == t)))


def model_spec(model_type: str) -> ModelSpec:
    """The spec registered as `model_type` (imports its file); ValueError naming the known types otherwise."""
    if model_type not in MODELS:
        raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(MODELS)}")
    return MODELS[model_type]()


def model_class(model_type: str) -> type[RecModel]:
    """The class registered as `model_type` (imports it); ValueError naming the known types otherwise."""
    return model_spec(model_type).model_class


def load_model(path: str | Path) -> RecModel:
    """Load any llmrec model directory by its config.json `model_type` (safetensors + JSON, no pickle).

    The one place where model files are read: a missing, truncated or garbage file, or weights that do not fit
    config.json, raise ``llmrec.errors.ArtifactError`` naming the file (the CLI prints it and exits with 2).
    """
    from llmrec.artifact import check_finite, check_weights, model_type

    path = Path(path)
    cfg_path = path / "config.json"
    kind = model_type(path)
    if not isinstance(kind, str) or kind not in MODELS:
        raise ArtifactError(cfg_path, f"unknown model_type {kind!r}; known: {', '.join(MODELS)}")
    check_weights(path)
    weights = path / "model.safetensors"
    try:
        model = MODELS[kind]().model_class.from_pretrained(path)
    except ArtifactError:
        raise
    except (TypeError, ValueError) as e:  # the config's fields (the weights' header was read above)
        raise ArtifactError(cfg_path, f"damaged or incomplete ({e})") from e
    except Exception as e:  # noqa: BLE001 - tensors of other names or shapes than config.json says, or unreadable
        raise ArtifactError(
            weights, f"damaged or incomplete (does not fit {cfg_path.name}: {str(e).strip().splitlines()[0][:200]})"
        ) from e
    import torch

    # NaN or infinite weights would answer nan scores: checked on the module's tensors (no second read of the
    # file), or on the file for a model that is no torch module
    check_finite(weights, model.state_dict() if isinstance(model, torch.nn.Module) else None)
    return model


def __getattr__(name: str) -> object:
    """The model classes re-exported above, imported on first access (this package imports no torch)."""
    if name in ("NextItemLM", "NextItemLMConfig", "RecOutput"):
        from llmrec.models import next_item_lm

        return getattr(next_item_lm, name)
    if name in ("ItemEmbeddingModel", "RecModel", "Trainable"):
        from llmrec.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'llmrec.models' has no attribute {name!r}")
