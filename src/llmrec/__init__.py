"""llmrec: LLM-style generative recommendation.

    import llmrec
    rec = llmrec.train("ml-100k", out="runs/ml100k", epochs=3)   # the CLI's `llmrec train`, same defaults
    rec.recommend(history=["1", "5"], k=10)
    report = llmrec.evaluate(rec)                                 # the CLI's `llmrec evaluate`, as a dict
    llmrec.Recommender.load("runs/ml100k").recommend(user="7", k=10)

``import llmrec`` is cheap: the names below are imported on first use (PEP 562 module ``__getattr__``), so the
CLI, the service and ``llmrec.__version__`` never pay for torch or polars before they need them.

``llmrec.train`` is a plain function (`llmrec.api.train`) returning a `Recommender`; the training machinery
(the loop, selection and refit, each model's fit) is the subpackage ``llmrec.training``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.api import evaluate, prepare, train
    from llmrec.batch import write_recommendations
    from llmrec.data import PrepareConfig, PreparedDataset
    from llmrec.export import export_artifact
    from llmrec.filters import UnknownCategoryWarning, UnknownIdWarning
    from llmrec.models import NextItemLM, NextItemLMConfig
    from llmrec.recommend import Recommendation, Recommender
    from llmrec.training.fit import fit
    from llmrec.training.loop import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "NextItemLM",
    "NextItemLMConfig",
    "PrepareConfig",
    "PreparedDataset",
    "Recommendation",
    "Recommender",
    "TrainConfig",
    "UnknownCategoryWarning",
    "UnknownIdWarning",
    "__version__",
    "evaluate",
    "export_artifact",
    "fit",
    "prepare",
    "train",
    "write_recommendations",
]

# Public name -> the module that defines it (a literal table: no scanning).
_LAZY: dict[str, str] = {
    "NextItemLM": "llmrec.models",
    "NextItemLMConfig": "llmrec.models",
    "PrepareConfig": "llmrec.data",
    "PreparedDataset": "llmrec.data",
    "Recommendation": "llmrec.recommend",
    "Recommender": "llmrec.recommend",
    "TrainConfig": "llmrec.training",
    "UnknownCategoryWarning": "llmrec.filters",
    "UnknownIdWarning": "llmrec.filters",
    "evaluate": "llmrec.api",
    "export_artifact": "llmrec.export",
    "fit": "llmrec.training",
    "prepare": "llmrec.api",
    "train": "llmrec.api",
    "write_recommendations": "llmrec.batch",
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
