"""Training: the loop (hooks, early stopping, checkpoints, resume) and the dataset→model wiring."""

from llmrec.train.fit import ScoreFn, build_model, fit, make_score_fn, save_artifact, validation_evaluator
from llmrec.train.loop import Callback, TrainConfig, TrainResult, train

__all__ = [
    "Callback",
    "ScoreFn",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "fit",
    "make_score_fn",
    "save_artifact",
    "train",
    "validation_evaluator",
]
