"""Experiments end to end: train any model by name from config sections into an artifact.

Model names (`--model`) are the keys of `llmrec.training.recipes.RECIPES` (the registered model types and presets):
- ``tvrec`` (the default, `llmrec.models.DEFAULT_MODEL`): TV-Rec's time-variant filters, trained with its recipe
  (the spec's ``train_defaults``); ``bsarec``: BSARec;
- ``next-item-lm``: the decoder-only next-item LM, full-softmax cross-entropy (defaults = best found on validation);
- ``sasrec``: SASRec as in its paper: the same transformer trained with binary cross-entropy, one negative;
- ``most-popular`` and ``item-knn``: the non-neural floors;
- ``t5-semantic``: generative retrieval, a T5 over semantic ids of the items' text embeddings
  (`llmrec.training.semantic.fit_t5_semantic`).
Config sections, checked once into a typed `RunSettings` by `check_settings`: ``[model]`` (the model config's fields except the sizes taken from the data, plus ``use_attributes``
and ``item_text``; for item-knn ``neighbours``,
``shrink``, ``decay``; for t5-semantic T5SemanticConfig fields plus ``n_levels``, ``codebook_size``,
``semantic_seed``, ``text_model``) and ``[train]`` (TrainConfig fields).

`run_training` is ``llmrec train`` as one call: threads, the process group of a torchrun/accelerate launch, the
dataset (a registry name is prepared by rank 0 while the others wait), an experiment tracker, `train_model`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmrec.artifact import write_training
from llmrec.config import build
from llmrec.data import open_dataset
from llmrec.data.dataset import PreparedDataset

# Evaluation of an artifact and the T5's fitting live in llmrec.eval and llmrec.training; re-exported for callers.
from llmrec.eval.leave_one_out import dataset_name, evaluate_model, write_evaluation
from llmrec.models import PRESETS, training_names
from llmrec.training import distributed
from llmrec.training.loop import Callback, TrainConfig
from llmrec.training.memory import check_training_memory
from llmrec.training.recipes import RECIPES, ModelSettings, model_settings, recipe
from llmrec.training.semantic import SEMANTIC_SOURCES, collaborative_item_embeddings, fit_t5_semantic
from llmrec.training.tracking import TRACKERS, Tracker

__all__ = [
    "MODEL_NAMES",
    "MODEL_PRESETS",
    "SEMANTIC_SOURCES",
    "RunSettings",
    "TrainingRun",
    "check_settings",
    "collaborative_item_embeddings",
    "dataset_name",
    "evaluate_model",
    "fit_t5_semantic",
    "open_dataset_once",
    "run_training",
    "train_model",
    "write_evaluation",
]

MODEL_NAMES = tuple(RECIPES)
# Presets applied under the user's [model] section (SASRec's paper settings; declared by the model specs).
MODEL_PRESETS: dict[str, dict[str, Any]] = {name: dict(RECIPES[name].presets) for name in PRESETS}

Status = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True)
class RunSettings:
    """A run's settings, checked and typed: what `check_settings` makes of the ``[model]`` / ``[train]`` sections
    of a TOML file and ``--set`` overrides, and what `train_model` and each fit read (never the raw sections)."""

    model: str  # the training name (a model type or a preset)
    params: dict[str, Any]  # the merged [model] section: presets under the user's keys (an artifact records them)
    settings: ModelSettings | None  # the model's typed config and item features (None: a model without a config class)
    train: TrainConfig

    def tracked(self) -> dict[str, Any]:
        """What an experiment tracker logs: the name, the [model] keys as given, the whole [train] config."""
        return {"model_type": self.model, "model": dict(self.params), "train": asdict(self.train)}


def check_settings(model: str, sections: Mapping[str, Mapping[str, Any]], *, progress: bool = True) -> RunSettings:
    """Every setting of a run checked before any data is read or anything is written: the model name, the
    sections, the ``[model]`` keys and their ranges, the ``[train]`` config; a bad one is a ValueError naming its
    key."""
    chosen = recipe(model)  # an unknown name is refused, naming the known ones
    unknown_sections = set(sections) - {"model", "train"}
    if unknown_sections:
        raise ValueError(f"unknown config section(s): {', '.join(sorted(unknown_sections))}; known: model, train")
    params = {**chosen.presets, **sections.get("model", {})}
    spec = chosen.spec
    settings = model_settings(spec, params)
    examples = {"examples": spec.examples[0]} if spec.examples else {}  # its own kind unless [train] says otherwise
    recipe_train = {**examples, **spec.train_defaults}  # the model's own recipe, under the user's [train] keys
    train = build(TrainConfig, {"progress": progress, **recipe_train, **sections.get("train", {})}, section="train")
    return RunSettings(model, params, settings, train)


def train_model(
    dataset: PreparedDataset,
    dataset_dir: Path,
    run: RunSettings,
    out: Path,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    force: bool = False,
) -> dict[str, Any]:
    """Train `run.model` on `dataset` with the checked settings `run` (`check_settings`), write the artifact to
    `out` (training state in out/train); return a summary.

    callbacks: called after every selection epoch of next-item-lm / sasrec (e.g. an experiment tracker).
    Before anything is written the run's peak memory is estimated and a run that would not fit is refused
    (`llmrec.training.memory.MemoryLimitError`); force: train anyway.
    """
    model, params, train_cfg = run.model, run.params, run.train
    chosen = recipe(model)
    ctx = distributed.current()
    if chosen.estimate is not None:
        estimate = chosen.estimate(dataset, params, train_cfg, ctx.device.type)
        check_training_memory(estimate, device=ctx.device.type, force=force)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"model": model, "params": params}
    if ctx.enabled and not chosen.distributed:
        distributed_names = " and ".join(name for name in training_names() if recipe(name).distributed)
        raise ValueError(f"model {model!r} trains in a single process; distributed training supports {distributed_names}")
    from llmrec.training.recipes import FitRequest

    summary.update(
        chosen.fit(FitRequest(dataset, params, train_cfg, out, resume=resume, callbacks=callbacks, settings=run.settings))
    )
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    import torch

    summary["threads"] = torch.get_num_threads()  # what was used, also when the setting was 0 (leave as is)
    if ctx.is_main:
        summary.update(_popularity_check(dataset, model, out, train_cfg, summary, ctx.device))
        from llmrec.eval.seen_rule import seen_rule_of_artifact

        summary.update(seen_rule_of_artifact(out, dataset, summary, ctx.device))  # the served seen-item rule
    summary["dataset"] = str(dataset_dir)
    if ctx.enabled:
        summary["world_size"] = ctx.world_size
    if not ctx.is_main:
        distributed.barrier()  # rank 0 finishes writing the artifact before any rank returns
        return summary
    write_training(out, summary, prepared_path=dataset_dir)
    distributed.barrier()
    return summary


def _popularity_check(
    dataset: PreparedDataset, model: str, out: Path, train_cfg: TrainConfig, summary: dict[str, Any], device: Any
) -> dict[str, Any]:
    """The trained model against most-popular on the validation split (`llmrec.eval.popularity`): summary keys
    ``most_popular`` and ``warnings``. A model refit on train + valid events has no held-out validation item: its
    selection run's best weights (``train/best``, the epoch the refit copied) are checked instead. Skipped for
    most-popular itself and when there is nothing held out to check."""
    weights = out
    if summary.get("train", {}).get("refit_on_valid"):
        weights = out / "train" / "best"
    from llmrec.artifact import Artifact, has_model

    if model == "most-popular" or not has_model(weights):
        return {}
    from llmrec.eval.popularity import popularity_warnings, validation_check
    from llmrec.eval.scoring import score_fn

    check = validation_check(score_fn(Artifact(weights).model(device)), dataset, exclude_seen=train_cfg.valid_exclude_seen)
    return {"most_popular": check, "warnings": popularity_warnings(check)}


def open_dataset_once(dataset: str, prepared_root: Path, *, status: Status = nullcontext) -> tuple[PreparedDataset, Path]:
    """`llmrec.data.open_dataset` in every process of a run: rank 0 prepares a registry dataset (showing `status`)
    while the other ranks wait at a barrier, then they read what it wrote. A single process just opens it."""
    ctx = distributed.current()
    if ctx.is_main:
        opened = open_dataset(dataset, prepared_root, status=status)
    distributed.barrier()
    if not ctx.is_main:
        opened = open_dataset(dataset, prepared_root)
    return opened


@dataclass(frozen=True)
class TrainingRun:
    """What `run_training` did: the training summary, and whether this process is rank 0 (the one that reports)."""

    summary: dict[str, Any]
    is_main: bool


def run_training(
    dataset: str,
    out: Path,
    model: str,
    sections: dict[str, dict[str, Any]],
    *,
    resume: bool = False,
    device: str = "auto",
    threads: int = 0,
    track: str | None = None,
    track_uri: str | None = None,
    status: Status = nullcontext,
    note: Callable[[str], None] = lambda _: None,
    force: bool = False,
) -> TrainingRun:
    """``llmrec train``: train `model` on `dataset` (a prepared folder or a registry name, prepared with the defaults
    into ``<out>/../<name>-data``) into the artifact folder `out`.

    Runs data-parallel when launched by torchrun / accelerate (`llmrec.training.distributed`); only rank 0 writes.
    threads: torch threads (0 = leave as is). track / track_uri: log the run to TensorBoard or MLflow
    (`llmrec.training.tracking`; a failed run is marked failed there). status: a context manager factory shown while
    a registry dataset is prepared; note: called with one line of information (where the tracker logs).
    force: train even when the estimated peak memory exceeds what is available (`train_model`).
    """
    if track is not None and track not in TRACKERS:
        raise ValueError(f"--track must be tensorboard or mlflow, got {track!r}")
    run = check_settings(model, sections)  # before a registry dataset is prepared or anything is written
    from llmrec.outputs import check_replaceable, refuse_current_folder, resolve

    refuse_current_folder(resolve(out))
    check_replaceable(out, "model")  # before training: never after an hour's work
    import torch

    if threads:
        torch.set_num_threads(threads)
    ctx = distributed.init_from_env(device)
    try:
        prepared, prepared_dir = open_dataset_once(dataset, out.parent / f"{dataset}-data", status=status)
        tracker: Tracker | None = None
        if ctx.is_main and track is not None:
            tracker = _start_tracker(track, track_uri, out, {**run.tracked(), "dataset": prepared.name}, note)
        try:
            summary = train_model(
                prepared,
                prepared_dir,
                run,
                out,
                resume=resume,
                callbacks=[tracker] if tracker else [],
                force=force,
            )
        except BaseException:
            if tracker is not None:
                tracker.finish(None)  # the run is marked failed
            raise
        if tracker is not None:
            tracker.finish(summary)
    finally:
        distributed.shutdown()
    return TrainingRun(summary, ctx.is_main)


def _start_tracker(track: str, uri: str | None, out: Path, params: dict[str, Any], note: Callable[[str], None]) -> Tracker:
    """A started TensorBoard / MLflow tracker (`llmrec.training.tracking`); a missing optional extra is a ValueError."""
    from llmrec.training.tracking import make_tracker

    try:
        tracker = make_tracker(track, uri=uri, run_name=out.name)
    except ImportError as e:  # the optional `track` extra is not installed
        raise ValueError(str(e)) from None
    tracker.start(params)
    note(f"tracking with {track}: {getattr(tracker, 'uri', None) or getattr(tracker, 'log_dir', '')}")
    return tracker
