"""Hyperparameter search with Optuna on the validation metric (never the test targets), for any model that
declares what to search.

A model file declares its search space (`llmrec.models.spec.ModelSpec.search_space`: name -> section, kind, choices
or range; ``search_derived``: the settings that follow from a sampled point). The default TV-Rec searches its
hidden dropout, basis kernels, learning rate and cosine horizon; the next-item LM its width, depth, dropouts,
learning rate and weight decay. Each trial trains the model with the sampled settings, laid over the model's
recipe (`ModelSpec.train_defaults`) and the base config, on the training events, and scores it on the validation
targets only (`fit` reads `train_sequences()` and `eval_examples("valid")`; a test with poisoned test targets
checks that nothing else is read). Trials skip the refit on train + valid: the objective is the selection run's
validation metric, and the refit would double each trial's cost; the written config keeps the base
``refit_on_valid``. The validation metric is reported to Optuna after every epoch so the median pruner stops poor
trials early. The study runs until `n_trials` or the wall-time budget is spent (a trial is given what is left of
the budget as its ``max_minutes``), and the best parameters are written as a TOML file that ``llmrec train --model
NAME --config`` takes. ``on_trial`` hears one line per finished trial (its number, value or pruning, the best so
far, seconds and parameters): what ``llmrec tune`` prints on stderr as the search goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from llmrec.atomic import atomic_write
from llmrec.config import check_range, dump_toml
from llmrec.data.dataset import PreparedDataset
from llmrec.models import DEFAULT_MODEL, training_names
from llmrec.models.base import Trainable
from llmrec.models.next_item_lm import SEARCH_SPACE  # the LM's space (as before; each model file declares its own)
from llmrec.models.spec import SEARCH_KINDS, SearchDim
from llmrec.training.fit import fit
from llmrec.training.loop import TrainConfig
from llmrec.training.memory import check_training_memory
from llmrec.training.recipes import recipe

__all__ = ["SEARCH_SPACE", "search_space", "trial_line", "tune"]


class _PruneCallback:
    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Trainable) -> None:
        import optuna

        self.trial.report(logs[f"valid_{self.metric}"], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()


def search_space(model: str) -> Mapping[str, SearchDim]:
    """The search space that training name `model` declares (its spec's `search_space`); a ValueError naming the
    models that have one when it declares none or cannot be tuned (a model with its own fit)."""
    spec = recipe(model).spec  # an unknown name is refused, naming the known ones
    space = spec.search_space
    if not space or spec.fit is not None or spec.build is None:
        tunable = [n for n in training_names() if recipe(n).spec.search_space and recipe(n).spec.fit is None]
        raise ValueError(f"model {model!r} declares no search space for llmrec tune; tunable: {', '.join(tunable)}")
    for name, (section, kind, _) in space.items():
        if section not in ("model", "train") or kind not in SEARCH_KINDS:
            raise ValueError(f"{model} search space: {name} has section {section!r} / kind {kind!r}")
    return space


def _largest(space: Mapping[str, SearchDim]) -> dict[str, dict[str, Any]]:
    """The point with every categorical setting at its largest choice (the memory check's worst case)."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for name, (section, kind, spec) in space.items():
        if kind == "categorical":
            out[section][name] = max(spec)
    return out


def tune(
    dataset: PreparedDataset,
    *,
    model: str = DEFAULT_MODEL,
    base_model: dict[str, Any] | None = None,
    base_train: TrainConfig | None = None,
    n_trials: int = 20,
    budget_minutes: float = 60.0,
    seed: int = 0,
    out: str | Path | None = None,
    use_attributes: bool = True,
    force: bool = False,
    on_trial: Callable[[str], None] | None = None,
    space: Mapping[str, SearchDim] | None = None,
) -> dict[str, Any]:
    """Run the study for training name `model`; returns {"model", "best_value", "best_params", "trials"} and writes
    `out` (TOML) when given.

    base_train: the [train] config the searched keys override (None: the model's recipe, as ``llmrec train``
    would run it); base_model: [model] keys kept unless searched. space: the search space (None: the one `model`
    declares, `search_space`). n_trials (1..100,000) and budget_minutes (> 0) are checked first, then the
    settings of the largest point and its peak memory against the machine's (`llmrec.training.memory`; force:
    search anyway).
    """
    check_range("n_trials", n_trials, 1, 100_000)
    check_range("budget_minutes", budget_minutes, 0.0, low_open=True)
    import optuna

    chosen = recipe(model)
    spec = chosen.spec
    declared = search_space(model)
    space = declared if space is None else space
    derive = spec.search_derived or (lambda _point: {})
    base_model = {**chosen.presets, **(base_model or {})}
    if base_train is None:
        from llmrec.experiment import check_settings

        base_train = check_settings(model, {"model": base_model}, progress=False).train
    largest = _largest(space)
    worst = {**base_model, **largest["model"], **derive(largest["model"]), "use_attributes": use_attributes}
    chosen.check(worst)  # unknown or out-of-range [model] keys, by name
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if chosen.estimate is not None:
        worst_train = replace(base_train, **largest["train"])
        check_training_memory(chosen.estimate(dataset, worst, worst_train, device), device=device, force=force)
    metric = base_train.metric
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        point: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for name, (section, kind, choices) in space.items():
            if kind == "categorical":
                v = trial.suggest_categorical(name, choices)
            elif kind == "log":
                v = trial.suggest_float(name, choices[0], choices[1], log=True)
            else:
                v = trial.suggest_float(name, choices[0], choices[1])
            point[section][name] = v
        model_p = {**base_model, **point["model"], **derive(point["model"])}
        remaining = budget_minutes - (time.perf_counter() - started) / 60
        cfg = replace(base_train, **point["train"], progress=False, max_minutes=max(0.5, remaining), refit_on_valid=False)
        callbacks = [_PruneCallback(trial, metric)]
        _, result, _ = fit(dataset, model_p, cfg, model=spec.model_type, use_attributes=use_attributes, callbacks=callbacks)
        return result.best_metric

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial_line(study, trial, n_trials, metric, time.perf_counter() - started))

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # before create_study, which logs at INFO
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=n_trials, timeout=budget_minutes * 60, callbacks=[report])
    best = study.best_trial.params
    best_model = {k: v for k, v in best.items() if space[k][0] == "model"}
    model_best = {**base_model, **best_model, **derive(best_model)}
    train_best = {k: v for k, v in asdict(base_train).items() if k not in ("progress", "max_minutes")}
    train_best.update({k: v for k, v in best.items() if space[k][0] == "train"})
    summary = {
        "model": model,
        "best_value": study.best_value,
        "best_params": {"model": model_best, "train": train_best},
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials],
    }
    if out is not None:
        header = (
            f"Written by `llmrec tune --model {model}` ({len(study.trials)} trials, {time.strftime('%Y-%m-%d')}).\n"
            f"Best validation {metric}: {study.best_value:.4f}\n"
            f"Settings of {model}: llmrec train --model {model} --config {Path(out).name}"
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
