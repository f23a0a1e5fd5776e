"""Recommendation models and their registry.

``MODELS`` is an explicit registry: config.json ``model_type`` -> a loader of the model class. Heavy models are
imported only when asked for (the T5 needs transformers, a heavy import the other models never need). A new
model is one file in this package plus one line here; `load_model`, the `Recommender`, the evaluators and the
service then work with it through the contract in `llmrec.models.base`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmrec.artifact import check_weights, model_type
from llmrec.errors import ArtifactError
from llmrec.models.base import ItemEmbeddingModel, RecModel, Trainable
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig, RecOutput

__all__ = [
    "MODELS",
    "ItemEmbeddingModel",
    "NextItemLM",
    "NextItemLMConfig",
    "RecModel",
    "RecOutput",
    "Trainable",
    "load_model",
    "model_class",
]


def _next_item_lm() -> type[Any]:
    return NextItemLM


def _bsarec() -> type[Any]:
    from llmrec.models.bsarec import BSARec

    return BSARec


def _t5_semantic() -> type[Any]:
    from llmrec.models.seq2seq import T5SemanticRecommender

    return T5SemanticRecommender


def _most_popular() -> type[Any]:
    from llmrec.models.baselines import MostPopular

    return MostPopular


def _item_knn() -> type[Any]:
    from llmrec.models.baselines import ItemKNN

    return ItemKNN


MODELS: dict[str, Callable[[], type[Any]]] = {
    "next-item-lm": _next_item_lm,
    "bsarec": _bsarec,
    "t5-semantic": _t5_semantic,
    "most-popular": _most_popular,
    "item-knn": _item_knn,
}


def model_class(model_type: str) -> type[Any]:
    """The class registered as `model_type` (imports it); ValueError naming the known types otherwise."""
    if model_type not in MODELS:
        raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(MODELS)}")
    return MODELS[model_type]()


def load_model(path: str | Path) -> Any:
    """Load any llmrec model directory by its config.json `model_type` (safetensors + JSON, no pickle).

    The one place where model files are read: a missing, truncated or garbage file, or weights that do not fit
    config.json, raise ``llmrec.errors.ArtifactError`` naming the file (the CLI prints it and exits with 2).
    Returns a `RecModel`.
    """
    path = Path(path)
    cfg_path = path / "config.json"
    kind = model_type(path)
    if not isinstance(kind, str) or kind not in MODELS:
        raise ArtifactError(cfg_path, f"unknown model_type {kind!r}; known: {', '.join(MODELS)}")
    check_weights(path)
    weights = path / "model.safetensors"
    try:
        return MODELS[kind]().from_pretrained(path)
    except ArtifactError:
        raise
    except (TypeError, ValueError) as e:  # the config's fields (the weights' header was read above)
        raise ArtifactError(cfg_path, f"damaged or incomplete ({e})") from e
    except Exception as e:  # noqa: BLE001 - tensors of other names or shapes than config.json says, or unreadable
        raise ArtifactError(
            weights, f"damaged or incomplete (does not fit {cfg_path.name}: {str(e).strip().splitlines()[0][:200]})"
        ) from e
