"""Hyperparameter search with Optuna on the validation metric (never the test targets), for any model that
declares what to search.

A model file declares its search space (`llmrec.models.spec.ModelSpec.search_space`: setting name ->
`SearchParam`, its section, kind and range or choices; ``search_derived``: the settings that follow from a sampled
point). The default TV-Rec searches its hidden dropout (emb_dropout follows), basis kernels, history length
(max_seq_len), learning rate and cosine horizon (epochs); BSARec its mix α, cut-off c, dropout and learning rate;
the next-item LM (and its sasrec preset) its width, depth, dropouts, learning rate and weight decay; a model
without a space (most-popular, item-knn, the T5) is refused, naming those that have one (`tunable_models`).

Each trial trains the model with the sampled settings, laid over the base config and the model's recipe (its
presets and `ModelSpec.train_defaults`, layered as ``llmrec train`` does: `llmrec.experiment.check_settings`), on
the training events, and scores it on the validation targets only (`fit` reads `train_sequences()` and
`eval_examples("valid")`; a test with poisoned test targets checks that nothing else is read). Trials skip the
refit on train + valid: the objective is the selection run's validation metric, and the refit would double each
trial's cost; the written config keeps the base ``refit_on_valid``. The validation metric is reported to Optuna
after every epoch so the median pruner stops poor trials early. The study runs until `n_trials` or the wall-time
budget is spent (a trial is given what is left of the budget as its ``max_minutes``), and the best parameters are
written as a TOML file that ``llmrec train --model NAME --config`` takes. ``on_trial`` hears one line per finished
trial (its number, value or pruning, the best so far, seconds and parameters): what ``llmrec tune`` prints on
stderr as the search goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from llmrec.atomic import atomic_write
from llmrec.config import check_range, dump_toml
from llmrec.data.dataset import PreparedDataset
from llmrec.models import DEFAULT_MODEL, training_names
from llmrec.models.base import Trainable
from llmrec.models.spec import SearchParam, SearchValue
from llmrec.training.fit import check_examples, fit
from llmrec.training.loop import TrainConfig
from llmrec.training.memory import check_training_memory
from llmrec.training.recipes import recipe

__all__ = ["search_space", "trial_line", "tunable_models", "tune"]


class _PruneCallback:
    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Trainable) -> None:
        import optuna

        self.trial.report(logs[f"valid_{self.metric}"], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()


def search_space(model: str) -> Mapping[str, SearchParam]:
    """The search space that training name `model` declares (its spec's `search_space`); a ValueError naming the
    models that have one when it declares none or cannot be tuned (a model with its own fit)."""
    spec = recipe(model).spec  # an unknown name is refused, naming the known ones
    if not _tunable(model):
        raise ValueError(f"model {model!r} declares no search space for llmrec tune; tunable: {', '.join(tunable_models())}")
    return spec.search_space


def tunable_models() -> list[str]:
    """The training names `llmrec tune` accepts: those whose model file declares a search space and that the generic
    loop trains."""
    return [name for name in training_names() if _tunable(name)]


def _tunable(name: str) -> bool:
    spec = recipe(name).spec
    return bool(spec.search_space) and spec.fit is None and spec.build is not None


def _point(space: Mapping[str, SearchParam], values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sampled values split by section: {"model": {...}, "train": {...}}."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for name, value in values.items():
        out[space[name].section][name] = value
    return out


@dataclass(frozen=True)
class _Search:
    """What a trial's settings are made of: the searched space laid over the base settings, the [model] settings that
    follow from a point (`ModelSpec.search_derived`), unless the base holds them fixed."""

    model: str
    space: Mapping[str, SearchParam]
    base_model: dict[str, Any]  # the model's presets under the user's [model] keys
    base_train: TrainConfig
    derive: Callable[[Mapping[str, Any]], dict[str, Any]]
    fixed: frozenset[str]  # base keys the user set: neither searched nor derived

    def settings(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
        """The [model] settings and the [train] config of a point (setting name -> value)."""
        point = _point(self.space, values)
        derived = {k: v for k, v in self.derive(point["model"]).items() if k not in self.fixed}
        return {**self.base_model, **point["model"], **derived}, replace(self.base_train, **point["train"])

    def check(self, check_model: Callable[[dict[str, Any]], None]) -> tuple[dict[str, Any], TrainConfig]:
        """Every edge of every searched setting (the ends of a range, each choice) with the base settings passes the
        config checks, so no trial fails on a setting; returns the largest point's [model] settings and [train]
        config (every size at its largest: what the memory check assumes)."""

        def checked(values: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
            try:
                params, train = self.settings(values)  # TypeError: a [train] name TrainConfig lacks
                check_model(params)  # unknown or out-of-range [model] keys, by name
            except (TypeError, ValueError) as err:
                raise ValueError(f"{self.model} search space with the base settings, at {_show(values)}: {err}") from None
            return params, train

        for name, param in self.space.items():
            for value in param.edges():
                checked({name: value})
        return checked({name: v for name, p in self.space.items() if (v := p.largest()) is not None})


def _nothing(_point: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _show(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()) or "the base"


def _suggest(trial: Any, name: str, param: SearchParam) -> SearchValue:
    """The trial's value of one setting (Optuna's suggest_* for the parameter's kind)."""
    if param.kind == "categorical":
        value: SearchValue = trial.suggest_categorical(name, list(param.choices))
    elif param.kind == "int":
        value = trial.suggest_int(name, int(param.low), int(param.high), log=param.log)
    else:
        value = trial.suggest_float(name, param.low, param.high, log=param.log)
    return value


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
    space: Mapping[str, SearchParam] | None = None,
    fixed: Collection[str] = (),
) -> dict[str, Any]:
    """Run the study for training name `model`; returns {"model", "best_value", "best_params", "trials"} and writes
    `out` (TOML) when given.

    base_train: the [train] config the searched keys override (None: the model's recipe, as ``llmrec train``
    would run it; to change some keys of the recipe pass ``check_settings(model, {"train": {...}}).train`` from
    `llmrec.experiment`). base_model: [model] keys kept unless searched (the model's presets lie under them).
    space: the search space (None: the one `model` declares, `search_space`). fixed: settings held at their base
    value, neither searched nor derived (``llmrec tune`` passes the keys its --config / --set name).
    n_trials (1..100,000) and budget_minutes (> 0) are checked first, then every edge of the space with the base
    settings, then the largest point's peak memory against the machine's (`llmrec.training.memory`; force:
    search anyway).
    """
    check_range("n_trials", n_trials, 1, 100_000)
    check_range("budget_minutes", budget_minutes, 0.0, low_open=True)
    import optuna

    chosen = recipe(model)
    spec = chosen.spec
    declared = search_space(model)  # refuses a model that cannot be tuned, naming those that can
    given = declared if space is None else space
    space = {k: p for k, p in given.items() if k not in fixed}
    if not space:
        raise ValueError(f"the base config fixes every setting {model} searches ({', '.join(given)}): nothing to search")
    base_model = {**chosen.presets, **(base_model or {})}
    if base_train is None:
        from llmrec.experiment import check_settings

        base_train = check_settings(model, {"model": base_model}, progress=False).train
    check_examples(spec, base_train.examples)  # e.g. TV-Rec trains on prefixes only (its recipe says so)
    search = _Search(model, space, base_model, base_train, spec.search_derived or _nothing, frozenset(fixed))
    worst, worst_train = search.check(lambda params: chosen.check({**params, "use_attributes": use_attributes}))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if chosen.estimate is not None:
        worst = {**worst, "use_attributes": use_attributes}
        check_training_memory(chosen.estimate(dataset, worst, worst_train, device), device=device, force=force)
    metric = base_train.metric
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        model_p, train = search.settings({name: _suggest(trial, name, param) for name, param in space.items()})
        remaining = budget_minutes - (time.perf_counter() - started) / 60
        cfg = replace(train, progress=False, max_minutes=max(0.5, remaining), refit_on_valid=False)
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
    model_best, train = search.settings(study.best_trial.params)
    train_best = {k: v for k, v in asdict(train).items() if k not in ("progress", "max_minutes")}
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
