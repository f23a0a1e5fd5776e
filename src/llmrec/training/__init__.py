"""Training: the loop (hooks, early stopping, checkpoints, resume), selection + refit (`refit`), and fitting each
trainable model on a dataset (`fit`: the next-item LM; `semantic`: the T5 over semantic ids).

The one-call door from Python is the function ``llmrec.train`` (`llmrec.api.train`), which uses this package.
"""

from llmrec.training.fit import (
    ScoreFn,
    build_model,
    fit,
    make_score_fn,
    save_artifact,
    validation_evaluator,
)
from llmrec.training.loop import Callback, TrainConfig, TrainResult, train_loop
from llmrec.training.refit import select_then_refit

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
    "train_loop",
    "validation_evaluator",
]
