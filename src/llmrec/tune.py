"""Hyperparameter search with Optuna on the validation metric (never the test targets).

Each trial trains a next-item LM with sampled hyperparameters on the training events and scores it on the
validation targets only (`fit` reads `train_sequences()` and `eval_examples("valid")`; a test with poisoned test
targets checks that nothing else is read). Trials skip the refit on train + valid: the objective is the selection
run's validation metric, and the refit would double each trial's cost; the written config keeps the base
``refit_on_valid``. The validation metric is reported to Optuna after every epoch so the median pruner stops poor
trials early. The study runs until `n_trials` or the
wall-time budget is spent, and the best parameters are written as a TOML file that `llmrec train --config`
takes. ``on_trial`` hears one line per finished trial (its number, value or pruning, the best so far, seconds and
parameters): what ``llmrec tune`` prints on stderr as the search goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from llmrec.atomic import atomic_write
from llmrec.config import check_range, dump_toml
from llmrec.data.dataset import PreparedDataset
from llmrec.models.base import Trainable
from llmrec.training.fit import fit
from llmrec.training.loop import TrainConfig
from llmrec.training.memory import check_training_memory, estimate_lm_run
from llmrec.training.recipes import RECIPES

__all__ = ["SEARCH_SPACE", "tune"]

# name -> (section, kind, choices or (low, high)); kept small: each trial is a full training run.
SEARCH_SPACE: dict[str, tuple[str, str, Any]] = {
    "d_model": ("model", "categorical", [64, 128]),
    "n_layers": ("model", "categorical", [1, 2, 3]),
    "dropout": ("model", "float", (0.1, 0.5)),
    "emb_dropout": ("model", "float", (0.1, 0.6)),
    "lr": ("train", "log", (3e-4, 5e-3)),
    "weight_decay": ("train", "log", (1e-4, 0.3)),
}


class _PruneCallback:
    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Trainable) -> None:
        import optuna

        self.trial.report(logs[f"valid_{self.metric}"], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()


def tune(
    dataset: PreparedDataset,
    *,
    base_model: dict[str, Any] | None = None,
    base_train: TrainConfig | None = None,
    n_trials: int = 20,
    budget_minutes: float = 60.0,
    seed: int = 0,
    out: str | Path | None = None,
    use_attributes: bool = True,
    force: bool = False,
    on_trial: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the study; returns {"best_value", "best_params", "trials"} and writes `out` (TOML) when given.

    n_trials (1..100,000) and budget_minutes (> 0) are checked first, then the peak memory of the largest
    trial the search space allows against the machine's (`llmrec.training.memory`; force: search anyway).
    """
    check_range("n_trials", n_trials, 1, 100_000)
    check_range("budget_minutes", budget_minutes, 0.0, low_open=True)
    import optuna

    base_model = dict(base_model or {})
    base_train = base_train or TrainConfig()
    largest = {k: max(spec) for k, (section, kind, spec) in SEARCH_SPACE.items() if kind == "categorical"}
    largest.update(n_heads=2, d_ff=4 * int(largest["d_model"]), use_attributes=use_attributes)
    RECIPES["next-item-lm"].check({**base_model, **largest})  # unknown or out-of-range [model] keys, by name
    device = "cuda" if torch.cuda.is_available() else "cpu"
    estimate = estimate_lm_run(dataset, {**base_model, **largest}, base_train, device=device)
    check_training_memory(estimate, device=device, force=force)
    metric = base_train.metric
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        model_p = dict(base_model)
        train_p: dict[str, Any] = {}
        for name, (section, kind, spec) in SEARCH_SPACE.items():
            if kind == "categorical":
                v = trial.suggest_categorical(name, spec)
            elif kind == "log":
                v = trial.suggest_float(name, spec[0], spec[1], log=True)
            else:
                v = trial.suggest_float(name, spec[0], spec[1])
            (model_p if section == "model" else train_p)[name] = v
        model_p["n_heads"] = 2
        model_p["d_ff"] = 4 * int(model_p["d_model"])
        remaining = budget_minutes - (time.perf_counter() - started) / 60
        cfg = replace(base_train, **train_p, progress=False, max_minutes=max(0.5, remaining), refit_on_valid=False)
        _, result, _ = fit(dataset, model_p, cfg, use_attributes=use_attributes, callbacks=[_PruneCallback(trial, metric)])
        return result.best_metric

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # before create_study, which logs at INFO
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial_line(study, trial, n_trials, metric, time.perf_counter() - started))

    study.optimize(objective, n_trials=n_trials, timeout=budget_minutes * 60, callbacks=[report])
    best = study.best_trial.params
    model_best = {k: v for k, v in best.items() if SEARCH_SPACE[k][0] == "model"}
    model_best.update({k: v for k, v in base_model.items() if k not in model_best})
    model_best.update(n_heads=2, d_ff=4 * int(best["d_model"]))
    train_best = {**{k: v for k, v in asdict(base_train).items() if k not in ("progress", "max_minutes")}}
    train_best.update({k: v for k, v in best.items() if SEARCH_SPACE[k][0] == "train"})
    summary = {
        "best_value": study.best_value,
        "best_params": {"model": model_best, "train": train_best},
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials],
    }
    if out is not None:
        header = (
            f"Written by `llmrec tune` ({len(study.trials)} trials, {time.strftime('%Y-%m-%d')}).\n"
            f"Best validation {metric}: {study.best_value:.4f}\n"
            f"Settings of the next-item LM: llmrec train --model next-item-lm --config {Path(out).name}"
        )
        atomic_write(out, dump_toml({"model": model_best, "train": train_best}, header=header).encode())
    return summary


def trial_line(study: Any, trial: Any, n_trials: int, metric: str, elapsed: float) -> str:
    """One trial as a line: ``trial 3/20 valid ndcg@10 0.0712 (best 0.0750, trial 1) 41 s, 2.3 min in; lr=...``."""
    seconds = trial.duration.total_seconds() if trial.duration is not None else float("nan")
    state = trial.state.name
    if state == "COMPLETE":
        outcome = f"valid {metric} {trial.value:.4f}"
    elif state == "PRUNED":
        outcome = f"pruned after epoch {trial.last_step}" if trial.last_step is not None else "pruned"
    else:
        outcome = state.lower()
    try:
        best = f" (best {study.best_value:.4f}, trial {study.best_trial.number + 1})"
    except ValueError:  # no trial has completed yet
        best = ""
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    return f"trial {trial.number + 1}/{n_trials} {outcome}{best} {seconds:.0f} s, {elapsed / 60:.1f} min in; {params}"
