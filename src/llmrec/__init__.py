"""llmrec: LLM-style generative recommendation.

    import llmrec
    data = llmrec.prepare(raw, llmrec.PrepareConfig(split="loo"))
    model, result, _ = llmrec.fit(data, {"d_model": 64}, llmrec.TrainConfig(epochs=50))
    llmrec.Recommender.load("runs/model").recommend(history=["1", "5"], k=10)

``import llmrec`` is cheap: the names below are imported on first use (PEP 562 module ``__getattr__``), so the
CLI, the service and ``llmrec.__version__`` never pay for torch or polars before they need them.

The training loop itself is ``llmrec.train.train``: the name ``train`` is the ``llmrec.train`` subpackage and
is not re-exported here, because importing any submodule of it rebinds ``llmrec.train`` to the package, so a
lazily exported function of the same name would depend on import order.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.data import PrepareConfig, PreparedDataset, prepare
    from llmrec.models import NextItemLM, NextItemLMConfig
    from llmrec.recommend import Recommendation, Recommender
    from llmrec.train import TrainConfig, fit

__version__ = "0.1.0"

__all__ = [
    "NextItemLM",
    "NextItemLMConfig",
    "PrepareConfig",
    "PreparedDataset",
    "Recommendation",
    "Recommender",
    "TrainConfig",
    "__version__",
    "fit",
    "prepare",
]

# Public name -> the module that defines it (a literal table: no scanning).
_LAZY: dict[str, str] = {
    "NextItemLM": "llmrec.models",
    "NextItemLMConfig": "llmrec.models",
    "PrepareConfig": "llmrec.data",
    "PreparedDataset": "llmrec.data",
    "Recommendation": "llmrec.recommend",
    "Recommender": "llmrec.recommend",
    "TrainConfig": "llmrec.train",
    "fit": "llmrec.train",
    "prepare": "llmrec.data",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
