"""How each ``--model`` name is trained: the registry behind `llmrec.experiment.train_model` and ``llmrec train``.

``RECIPES`` maps a training name to a `Recipe`: the presets laid under the user's ``[model]`` section, a check
that refuses unknown ``[model]`` keys before anything is written, and a ``fit`` that trains the model and writes
its artifact. Training names are not model types: ``sasrec`` is a preset of the next-item LM and writes a
``next-item-lm`` artifact (``llmrec.models.MODELS`` is keyed by the artifact's ``model_type``). A new model is
one file in ``llmrec/models`` (the model, with its own ``fit`` when it is a simple one), one line in
``llmrec.models.MODELS`` to load it, and one entry here to train it; the command line, the service and the
evaluators need no edit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.artifact import save_artifact
from llmrec.config import MAX_SEQ_LEN, build, check_range
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import read_json
from llmrec.models.next_item_lm import NextItemLMConfig
from llmrec.train import distributed
from llmrec.train.loop import Callback, TrainConfig, TrainResult
from llmrec.train.memory import MemoryEstimate, estimate_lm_run

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RECIPES", "FitRequest", "Recipe"]


@dataclass(frozen=True)
class FitRequest:
    """What a recipe's ``fit`` gets: the data, the merged ``[model]`` parameters, the ``[train]`` config, where to
    write the artifact, and the run options."""

    dataset: PreparedDataset
    params: dict[str, Any]
    train: TrainConfig
    out: Path
    resume: bool = False
    callbacks: Sequence[Callback] = ()


@dataclass(frozen=True)
class Recipe:
    """One trainable name. ``fit`` writes the artifact to ``request.out`` (rank 0 only under DDP) and returns the
    summary fields it adds (best epoch and the like); ``distributed``: whether it runs under torchrun/accelerate;
    ``estimate``: its peak memory, checked against the machine before it starts (`llmrec.train.memory`)."""

    check: Callable[[dict[str, Any]], None]
    fit: Callable[[FitRequest], dict[str, Any]]
    presets: dict[str, Any] = field(default_factory=dict)
    distributed: bool = False
    # (dataset, [model] params, [train] config, device type) -> the run's estimated peak memory; None: not checked
    estimate: Callable[[PreparedDataset, dict[str, Any], TrainConfig, str], MemoryEstimate] | None = None


# ---- checks of the [model] section ------------------------------------------------------------------------------
def _check_lm(params: dict[str, Any]) -> None:
    from llmrec.train.fit import DERIVED_MODEL_KEYS, check_model_params

    check_model_params(params)  # names the key and what to use instead
    sizes = {"n_items": 1, **dict.fromkeys(DERIVED_MODEL_KEYS[1:], 0)}
    build(NextItemLMConfig, params, section="model", allowed_extra=("use_attributes", "item_text"), derived=sizes)


def _check_bsarec(params: dict[str, Any]) -> None:
    from llmrec.models.bsarec import BSARecConfig
    from llmrec.train.fit import DERIVED_MODEL_KEYS, check_model_params

    check_model_params(params)
    sizes = {"n_items": 1, **dict.fromkeys(DERIVED_MODEL_KEYS[1:], 0)}
    build(BSARecConfig, params, section="model", allowed_extra=("use_attributes", "item_text"), derived=sizes)


# [model] keys of t5-semantic that choose its semantic ids rather than the T5 (defaults in fit_t5_semantic).
_SEMANTIC_ID_KEYS = ("n_levels", "codebook_size", "semantic_seed", "text_model", "semantic_source", "collab_model")


def _check_t5(params: dict[str, Any]) -> None:
    from llmrec.models.seq2seq import T5SemanticConfig

    t5_sizes: dict[str, Any] = {"n_items": 1, "codebook_sizes": (1,)}
    build(T5SemanticConfig, params, section="model", allowed_extra=_SEMANTIC_ID_KEYS, derived=t5_sizes)


_KNN_KEYS = ("neighbours", "shrink", "decay", "max_seq_len")


def _check_knn(params: dict[str, Any]) -> None:
    """Known keys, then ranges: neighbours 1..1,048,576, shrink >= 0, decay in (0, 1], max_seq_len 1..MAX_SEQ_LEN."""
    unknown = [k for k in params if k not in _KNN_KEYS]
    if unknown:
        raise ValueError(f"unknown config key(s) for item-knn: {', '.join('model.' + k for k in unknown)}")
    for key, value in params.items():
        whole = key in ("neighbours", "max_seq_len")
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            raise ValueError(f"model.{key}: expected {'int' if whole else 'float'}, got {value!r}")
    ranges = {"neighbours": (1, 1 << 20), "shrink": (0.0, None), "decay": (0.0, 1.0), "max_seq_len": (1, MAX_SEQ_LEN)}
    for key, value in params.items():
        check_range(f"model.{key}", value, *ranges[key], low_open=key == "decay")


def _check_no_keys(params: dict[str, Any]) -> None:
    if params:
        raise ValueError(f"most-popular takes no [model] keys, got {', '.join(params)}")


# ---- fits ---------------------------------------------------------------------------------------------------------
def _selection_summary(result: TrainResult, train_cfg: TrainConfig) -> dict[str, Any]:
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        # a fixed-length run (train.selected_epoch) validated nothing: its "best metric" is only the last epoch
        "best_valid": None if train_cfg.selected_epoch else result.best_metric,
        "stopped_early": result.stopped_early,
        "train": asdict(train_cfg),
    }


def _run_dir(req: FitRequest, is_main: bool) -> Path:
    """Training state lives beside the artifact (``.<out>.train``) until the artifact is complete; under --resume
    a finished run's state is copied back from out/train (the artifact stays intact until replaced)."""
    out = req.out
    run_dir = out.parent / f".{out.name}.train"
    if is_main and req.resume and not (run_dir / "checkpoint").is_dir() and (out / "train" / "checkpoint").is_dir():
        shutil.copytree(out / "train", run_dir, dirs_exist_ok=True)
    if is_main:
        _same_dataset_on_resume(run_dir, req.dataset, req.resume)
    return run_dir


def _fit_lm(req: FitRequest) -> dict[str, Any]:
    from llmrec.train.fit import fit, store_item_text

    ctx = distributed.current()
    params = dict(req.params)
    use_attributes = bool(params.pop("use_attributes", True))  # a no-op when the catalogue has no categories
    run_dir = _run_dir(req, ctx.is_main)
    distributed.barrier()
    model, result, vocab = fit(
        req.dataset,
        params,
        req.train,
        use_attributes=use_attributes,
        run_dir=run_dir,
        resume=req.resume,
        callbacks=req.callbacks,
        selected_epoch=req.train.selected_epoch or None,
    )
    if ctx.is_main:
        save_artifact(model, req.dataset, req.out, attributes=vocab)
        store_item_text(model, req.dataset, req.out)  # a query then encodes only itself
        run_dir.replace(req.out / "train")
    return _selection_summary(result, req.train)


def _fit_bsarec(req: FitRequest) -> dict[str, Any]:
    """BSARec sized and featured for the dataset by the LM's `build_model`, trained on prefix examples (its
    filter is not causal: one target per example, at the last position)."""
    if req.train.examples != "prefixes":
        raise ValueError(
            f"train.examples = {req.train.examples!r}: bsarec is not causal (its Fourier filter mixes all positions) "
            'and trains on one target per example; set train.examples = "prefixes"'
        )
    from llmrec.data.sequences import prefix_examples
    from llmrec.models.bsarec import BSARec, BSARecConfig
    from llmrec.train.fit import build_model, store_item_text, validation_evaluator
    from llmrec.train.refit import select_then_refit

    params = dict(req.params)
    use_attributes = bool(params.pop("use_attributes", True))  # a no-op when the catalogue has no categories
    own_fields = {f.name for f in fields(BSARecConfig)} - {f.name for f in fields(NextItemLMConfig)}  # alpha, c
    own = {k: params.pop(k) for k in own_fields if k in params}
    vocab: list[str] = []

    def build_bsarec(sequences: list[np.ndarray]) -> tuple[BSARec, list[np.ndarray]]:
        lm, vocab[:] = build_model(req.dataset, params, use_attributes=use_attributes, seed=req.train.seed)
        model = BSARec.from_next_item_lm(lm, **own)
        return model, prefix_examples(sequences, model.max_seq_len)

    run_dir = _run_dir(req, True)
    model, result = select_then_refit(
        build_bsarec,
        req.dataset,
        req.train,
        evaluate=validation_evaluator(req.dataset, exclude_seen=req.train.valid_exclude_seen),
        run_dir=run_dir,
        resume=req.resume,
        callbacks=req.callbacks,
        selected_epoch=req.train.selected_epoch or None,
    )
    save_artifact(model, req.dataset, req.out, attributes=vocab)
    store_item_text(model, req.dataset, req.out)  # a query then encodes only itself
    run_dir.replace(req.out / "train")
    return _selection_summary(result, req.train)


def _fit_t5(req: FitRequest) -> dict[str, Any]:
    from llmrec.train.semantic import fit_t5_semantic

    run_dir = _run_dir(req, True)
    model, result = fit_t5_semantic(
        req.dataset,
        dict(req.params),
        req.train,
        run_dir=run_dir,
        resume=req.resume,
        selected_epoch=req.train.selected_epoch or None,
    )
    save_artifact(model, req.dataset, req.out)
    run_dir.replace(req.out / "train")
    return {**_selection_summary(result, req.train), "semantic_ids": model.semantic_ids.stats()}


def _fit_most_popular(req: FitRequest) -> dict[str, Any]:
    from llmrec.models.baselines import MostPopular

    save_artifact(MostPopular.fit(req.dataset.train_sequences(), req.dataset.n_items), req.dataset, req.out)
    return {}


def _fit_item_knn(req: FitRequest) -> dict[str, Any]:
    from llmrec.models.baselines import ItemKNN

    save_artifact(ItemKNN.fit(req.dataset.train_sequences(), req.dataset.n_items, **req.params), req.dataset, req.out)
    return {}


# SASRec follows its paper (Kang & McAuley 2018): one head, point-wise feed-forward of width d, binary
# cross-entropy with one sampled negative, dropout 0.5 on sparse data.
_SASREC_PRESETS: dict[str, Any] = {
    "loss": "bce",
    "n_heads": 1,
    "d_ff": 64,
    "dropout": 0.5,
    "emb_dropout": 0.5,
    "pos_encoding": "learned",
    "use_attributes": False,  # the paper's SASRec sees item ids only
}


def _estimate_lm(dataset: PreparedDataset, params: dict[str, Any], train: TrainConfig, device: str) -> MemoryEstimate:
    return estimate_lm_run(dataset, params, train, device=device)


RECIPES: dict[str, Recipe] = {
    "next-item-lm": Recipe(_check_lm, _fit_lm, distributed=True, estimate=_estimate_lm),
    "sasrec": Recipe(_check_lm, _fit_lm, presets=_SASREC_PRESETS, distributed=True, estimate=_estimate_lm),
    # needs train.examples = "prefixes" (refused otherwise)
    "bsarec": Recipe(_check_bsarec, _fit_bsarec, estimate=_estimate_lm),
    "most-popular": Recipe(_check_no_keys, _fit_most_popular),
    "item-knn": Recipe(_check_knn, _fit_item_knn),
    "t5-semantic": Recipe(_check_t5, _fit_t5),
}


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
