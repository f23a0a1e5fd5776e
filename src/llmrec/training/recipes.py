"""How each ``--model`` name is trained: the registry behind `llmrec.experiment.train_model` and ``llmrec train``.

``RECIPES`` maps a training name to a `Recipe`: a model type of ``llmrec.models.MODELS`` and, for a preset,
its name (``sasrec`` is a preset of ``next-item-lm`` and writes a ``next-item-lm`` artifact). Everything else
comes from the model's spec (`llmrec.models.spec.ModelSpec`): the typed config that checks the ``[model]``
settings once (`model_settings`), the examples it trains on, whether it trains data-parallel and has its memory
estimated. Every neural model is trained by one generic fit (`llmrec.training.fit.fit_spec`: selection then
refit); a model with its own ``fit`` (most-popular, item-kNN, the T5) goes through the same door
(`Recipe.fit`), which writes the artifact and moves the training state into it. A new model needs no edit here.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.artifact import save_artifact
from llmrec.config import build
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import as_os_error, read_json
from llmrec.models import PRESETS, model_spec, training_names
from llmrec.models.spec import DERIVED_SIZES, ModelSpec
from llmrec.training import distributed
from llmrec.training.distributed import DistContext
from llmrec.training.loop import Callback, TrainConfig, TrainResult
from llmrec.training.memory import MemoryEstimate, estimate_lm_run

if TYPE_CHECKING:
    from llmrec.index.text_encoder import TextEncoder

__all__ = ["RECIPES", "FitRequest", "ModelSettings", "Recipe", "model_settings", "recipe"]


@dataclass(frozen=True)
class FitRequest:
    """What a fit gets: the data, the merged ``[model]`` parameters, the ``[train]`` config, where to write the
    artifact, the run options, and the folder for training state (None for a model that keeps none)."""

    dataset: PreparedDataset
    params: dict[str, Any]
    train: TrainConfig
    out: Path
    resume: bool = False
    callbacks: Sequence[Callback] = ()
    run_dir: Path | None = None
    settings: ModelSettings | None = None  # `params` checked into the spec's typed config (made here when None)


@dataclass(frozen=True)
class ModelSettings:
    """The ``[model]`` section of a neural model, typed: its config (placeholder sizes until the dataset's
    metadata sizes it) and which item features it is built with."""

    config: Any  # the spec's frozen config dataclass
    use_attributes: bool = True  # item categories (a no-op when the catalogue has none)
    item_text: bool | str = False  # frozen text embeddings of the items: true (MiniLM), "auto", "llm" or an encoder path


def model_settings(spec: ModelSpec, params: Mapping[str, Any]) -> ModelSettings | None:
    """Check `params` (the merged ``[model]`` section) against `spec`, naming a bad key: the typed config for a
    neural model (its range checks run here, once), else the spec's own check (None is returned then)."""
    if spec.config is None or spec.build is None:
        if spec.check is not None:
            spec.check(dict(params))
        elif params:
            raise ValueError(f"{spec.model_type} takes no [model] keys, got {', '.join(params)}")
        return None
    from llmrec.training.fit import check_model_params

    params = dict(params)
    check_model_params(params)  # a derived size names the key and what to use instead
    extra = ("use_attributes", "item_text") if spec.features else ()
    names = {f.name for f in fields(spec.config)}
    derived = {k: v for k, v in DERIVED_SIZES.items() if k in names}
    config = build(spec.config, params, section="model", allowed_extra=extra, derived=derived)
    return ModelSettings(config, bool(params.get("use_attributes", True)), params.get("item_text", spec.text_default))


@dataclass(frozen=True)
class Recipe:
    """One trainable name: a model type, or a preset of one (`ModelSpec.presets`)."""

    name: str
    model_type: str

    @property
    def spec(self) -> ModelSpec:
        return model_spec(self.model_type)

    @property
    def presets(self) -> Mapping[str, Any]:
        return self.spec.presets.get(self.name, {})

    @property
    def distributed(self) -> bool:
        return self.spec.distributed

    @property
    def estimate(self) -> Callable[[PreparedDataset, dict[str, Any], TrainConfig, str], MemoryEstimate] | None:
        """The run's peak memory (dataset, [model] params, [train] config, device type), or None: not checked."""
        return _estimate_lm if self.spec.estimate_memory else None

    def check(self, params: dict[str, Any]) -> None:
        model_settings(self.spec, params)

    def fit(self, req: FitRequest) -> dict[str, Any]:
        """Train, write the artifact to ``req.out`` (rank 0 only under DDP) and move the training state into it;
        returns the summary fields it adds (best epoch and the like)."""
        spec = self.spec
        if spec.fit is None:
            from llmrec.training.fit import check_examples

            check_examples(spec, req.train.examples)  # before anything is written
        ctx = distributed.current()
        trains = "Trainable" in spec.capabilities()
        kept = trains and _run_path(req.out).exists()  # an interrupted run's state, for --resume: never removed here
        run_dir = _run_dir(req, ctx.is_main) if trains else None
        try:
            return self._fit(req, ctx, run_dir)
        except Exception as e:
            error = as_os_error(e, req.out)  # a full disk names --out, not a checkpoint or a temporary
            if error is None:
                raise
            if ctx.is_main and run_dir is not None and not kept and error.errno in (errno.ENOSPC, errno.EDQUOT):
                shutil.rmtree(run_dir, ignore_errors=True)  # the disk is full: no half-written run stays in the way
            if error is e:
                raise
            raise error from e

    def _fit(self, req: FitRequest, ctx: DistContext, run_dir: Path | None) -> dict[str, Any]:
        spec = self.spec
        distributed.barrier()
        settings = req.settings if req.settings is not None else model_settings(spec, req.params)
        req = FitRequest(req.dataset, req.params, req.train, req.out, req.resume, req.callbacks, run_dir, settings)
        vocab: list[str] = []
        encoder: TextEncoder | None = None
        if spec.fit is not None:
            model, summary = spec.fit(req)
        else:
            from llmrec.training.fit import fit_spec, resolve_item_text, text_encoder_for

            assert settings is not None
            item_text = resolve_item_text(settings.item_text, req.dataset) if spec.features else False
            encoder = text_encoder_for(item_text)
            model, result, vocab = fit_spec(
                spec,
                req.dataset,
                settings.config,
                req.train,
                use_attributes=settings.use_attributes,
                use_text=bool(item_text),
                text_encoder=encoder,
                run_dir=run_dir,
                resume=req.resume,
                callbacks=req.callbacks,
                selected_epoch=req.train.selected_epoch or None,
            )
            summary = selection_summary(result, req.train)
            if spec.features:  # what the model read besides ids ("auto" resolved against this catalogue)
                summary["item_text"] = item_text
        if ctx.is_main:
            write: Callable[[Path], None] | None = None
            if spec.features:
                from llmrec.training.fit import store_item_text

                def store(folder: Path) -> None:
                    store_item_text(model, req.dataset, folder, text_encoder=encoder)  # a query encodes only itself

                write = store
            save_artifact(model, req.dataset, req.out, attributes=vocab, write=write)
            if run_dir is not None:
                run_dir.replace(req.out / "train")
        return summary


def selection_summary(result: TrainResult, train_cfg: TrainConfig) -> dict[str, Any]:
    """The summary fields of a selection + refit run."""
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        # a fixed-length run (train.selected_epoch) validated nothing: its "best metric" is only the last epoch
        "best_valid": None if train_cfg.selected_epoch else result.best_metric,
        "stopped_early": result.stopped_early,
        "train": asdict(train_cfg),
    }


def _run_path(out: Path) -> Path:
    return out.parent / f".{out.name}.train"


def _run_dir(req: FitRequest, is_main: bool) -> Path:
    """Training state lives beside the artifact (``.<out>.train``) until the artifact is complete; under --resume
    a finished run's state is copied back from out/train (the artifact stays intact until replaced)."""
    out = req.out
    run_dir = _run_path(out)
    if is_main and req.resume and not (run_dir / "checkpoint").is_dir() and (out / "train" / "checkpoint").is_dir():
        shutil.copytree(out / "train", run_dir, dirs_exist_ok=True)
    if is_main:
        _same_dataset_on_resume(run_dir, req.dataset, req.resume)
    return run_dir


def _estimate_lm(dataset: PreparedDataset, params: dict[str, Any], train: TrainConfig, device: str) -> MemoryEstimate:
    return estimate_lm_run(dataset, params, train, device=device)


class _Recipes(Mapping[str, Recipe]):
    """Every training name, in the registry's order (each model type, then its presets), read from the registry
    each time (a model type registered after import trains and is listed too; one unregistered is gone)."""

    def __getitem__(self, name: str) -> Recipe:
        if name not in training_names():
            raise KeyError(name)
        return Recipe(name, PRESETS.get(name, name))

    def __iter__(self) -> Iterator[str]:
        return iter(training_names())

    def __len__(self) -> int:
        return len(training_names())


RECIPES: Mapping[str, Recipe] = _Recipes()


def recipe(name: str) -> Recipe:
    """The recipe of training name `name` (a registered model type or preset); ValueError naming the known ones."""
    if name not in training_names():
        raise ValueError(f"unknown model {name!r}; one of {', '.join(training_names())}")
    return Recipe(name, PRESETS.get(name, name))


def _same_dataset_on_resume(run_dir: Path, dataset: PreparedDataset, resume: bool) -> None:
    """Record the dataset's identity in the run folder; under --resume, refuse a checkpoint of another dataset."""
    from llmrec.atomic import atomic_write
    from llmrec.identity import dataset_identity

    path = run_dir / "dataset_identity.json"
    here = dataset_identity(dataset)
    if resume:
        checkpoint_config = run_dir / "checkpoint" / "config.json"
        if not path.is_file():
            # A checkpoint written before identities were recorded: record this dataset's from now on, when its
            # catalogue size fits (else train() refuses the checkpoint and nothing is written). No checkpoint at
            # all: train() says so, and nothing is written either.
            if checkpoint_config.is_file() and read_json(checkpoint_config).get("n_items") == here["n_items"]:
                atomic_write(path, json.dumps(here, indent=2).encode())
            return
        saved = read_json(path)
        for key, what in (("n_items", "items"), ("item_ids_sha256", "item ids"), ("manifest_sha256", "prepared files")):
            if saved.get(key) and here[key] and saved[key] != here[key]:
                raise ValueError(
                    f"--resume: checkpoint was trained on another dataset (other {what}); resume with the same --dataset"
                )
        return
    atomic_write(path, json.dumps(here, indent=2).encode())
