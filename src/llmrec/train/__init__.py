"""Training: the loop (hooks, early stopping, checkpoints, resume), selection + refit (`refit`), and fitting each
trainable model on a dataset (`fit`: the next-item LM; `semantic`: the T5 over semantic ids).

This package is also callable: ``llmrec.train(dataset, out, config, **overrides)`` runs `llmrec.api.train`
(the CLI's `llmrec train` from Python). A package and a top-level function cannot share the name ``train`` on
``llmrec`` otherwise: importing any ``llmrec.train.*`` module rebinds ``llmrec.train`` to this package.
"""

import sys
import types
from typing import Any

from llmrec.train.fit import (
    ScoreFn,
    build_model,
    fit,
    make_score_fn,
    save_artifact,
    validation_evaluator,
)
from llmrec.train.loop import Callback, TrainConfig, TrainResult, train
from llmrec.train.refit import select_then_refit

__all__ = [
    "Callback",
    "ScoreFn",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "fit",
    "make_score_fn",
    "save_artifact",
    "select_then_refit",
    "train",
    "validation_evaluator",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``llmrec.train(...)``: see `llmrec.api.train`."""
        from llmrec.api import train as train_recommender

        return train_recommender(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
