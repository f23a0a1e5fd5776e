"""Model selection then refit, the one fitting recipe of every trainable model (next-item LM, SASRec, T5).

1. Selection: a fresh model trained on the training events, early-stopped on validation; its best epoch is the
   selected number of epochs.
2. Refit (``train.refit_on_valid``, the default), on train + valid events; test targets stay unseen, and the
   refit model's validation numbers are no longer held out, so the selection run's metric is what is reported.
   ``train.refit = "scratch"``: a fresh model, same seed and learning-rate schedule, trained for exactly the
   selected number of epochs. ``"continue"``: the selection run's best model trains on for ``refit_epochs``
   more epochs (a fresh optimizer, peak learning rate ``refit_lr`` x ``lr`` with the usual warm-up and cosine
   decay), a few epochs instead of the whole schedule again.

With ``selected_epoch`` (chosen by an earlier run with the same settings, e.g. its ``best_epoch``), there is no
validation: with ``refit = "scratch"`` the only run trains for that many epochs of the ``epochs`` schedule, on
train + valid events with refit_on_valid, else on training events; with ``"continue"`` (and refit_on_valid) it
trains that many epochs on training events, as the selection run did up to its best epoch, then continues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from llmrec.training.loop import Callback, TrainConfig, TrainResult, train_loop

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.models.base import Trainable

__all__ = ["select_then_refit"]

M = TypeVar("M", bound="Trainable")


def select_then_refit(
    build: Callable[[list[np.ndarray]], tuple[M, Sequence[np.ndarray]]],
    dataset: PreparedDataset,
    config: TrainConfig,
    *,
    evaluate: Callable[[M], dict[str, float]],
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    selected_epoch: int | None = None,
) -> tuple[M, TrainResult]:
    """Fit a model by selection on validation, then refit (see the module docstring); return it with a TrainResult.

    build: training sequences -> (a fresh, seeded model, its training examples); called once per run.
    evaluate: the validation metrics of the selection run (early stopping). The TrainResult is the selection
    run's, or the only run's when `selected_epoch` is given. State of the refit goes to ``<run_dir>/refit``.
    callbacks: called after every epoch of the selection run (of the only run with `selected_epoch`).
    """
    if selected_epoch is not None and not 1 <= selected_epoch <= config.epochs:
        raise ValueError(f"selected_epoch: {selected_epoch} is outside the schedule's 1..{config.epochs} epochs (train.epochs)")
    cont = config.refit == "continue" and config.refit_on_valid
    if selected_epoch is None or cont:
        model, examples = build(dataset.train_sequences())
        fixed_selection = selected_epoch is not None
        result = train_loop(
            model,
            examples,
            config,
            evaluate=None if fixed_selection else evaluate,
            run_dir=run_dir,
            resume=resume,
            callbacks=callbacks,
            stop_after=selected_epoch,
        )
        if not (config.refit_on_valid and result.best_epoch > 0):
            return model, result
        epochs, fixed_dir = result.best_epoch, None if run_dir is None else Path(run_dir) / "refit"
        resume_fixed = resume and fixed_dir is not None and (fixed_dir / "checkpoint" / "state.json").exists()
        fixed_callbacks: Sequence[Callback] = ()
        if cont:
            return _continue(model, build, dataset, config, fixed_dir, resume_fixed), result
    else:
        epochs, fixed_dir, resume_fixed, fixed_callbacks = (
            selected_epoch,
            None if run_dir is None else Path(run_dir),
            resume,
            callbacks,
        )
    model, examples = build(dataset.train_sequences(through="valid" if config.refit_on_valid else "train"))
    fixed = train_loop(
        model, examples, config, run_dir=fixed_dir, resume=resume_fixed, stop_after=epochs, callbacks=fixed_callbacks
    )
    return model, (fixed if selected_epoch is not None else result)


def _continue(
    selected: M,
    build: Callable[[list[np.ndarray]], tuple[M, Sequence[np.ndarray]]],
    dataset: PreparedDataset,
    config: TrainConfig,
    run_dir: Path | None,
    resume: bool,
) -> M:
    """The "continue" refit: the selected weights in a model built on train + valid events, trained
    `config.refit_epochs` more epochs at `config.refit_lr` x lr (fresh optimizer, warm-up, cosine decay)."""
    model, examples = build(dataset.train_sequences(through="valid"))
    model.load_state_dict(selected.state_dict())
    tail = replace(config, epochs=config.refit_epochs, lr=config.lr * config.refit_lr, selected_epoch=0)
    train_loop(model, examples, tail, run_dir=run_dir, resume=resume, stop_after=config.refit_epochs)
    return model
