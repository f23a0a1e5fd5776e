"""Experiments end to end: train any model by name from config sections into an artifact.

Model names (`--model`):
- ``next-item-lm``: the decoder-only next-item LM, full-softmax cross-entropy (defaults = best found on validation);
- ``sasrec``: SASRec as in its paper: the same transformer trained with binary cross-entropy, one negative;
- ``most-popular`` and ``item-knn``: the non-neural floors;
- ``t5-semantic``: generative retrieval, a T5 over semantic ids of the items' text embeddings
  (`llmrec.train.semantic.fit_t5_semantic`).
Config sections: ``[model]`` (NextItemLMConfig fields except the sizes taken from the data, plus ``use_attributes``
and ``item_text``; for item-knn ``neighbours``,
``shrink``, ``decay``; for t5-semantic T5SemanticConfig fields plus ``n_levels``, ``codebook_size``,
``semantic_seed``, ``text_model``) and ``[train]`` (TrainConfig fields).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmrec.artifact import save_artifact, write_training
from llmrec.config import build
from llmrec.data.dataset import PreparedDataset
from llmrec.errors import read_json

# Evaluation of an artifact and the T5's fitting live in llmrec.eval and llmrec.train; re-exported for callers.
from llmrec.eval.leave_one_out import dataset_name, evaluate_model, write_evaluation
from llmrec.models.baselines import ItemKNN, MostPopular
from llmrec.models.next_item_lm import NextItemLMConfig
from llmrec.train import distributed
from llmrec.train.fit import fit
from llmrec.train.loop import Callback, TrainConfig
from llmrec.train.semantic import SEMANTIC_SOURCES, collaborative_item_embeddings, fit_t5_semantic

__all__ = [
    "MODEL_NAMES",
    "MODEL_PRESETS",
    "SEMANTIC_SOURCES",
    "collaborative_item_embeddings",
    "dataset_name",
    "evaluate_model",
    "fit_t5_semantic",
    "train_model",
    "write_evaluation",
]

# Presets applied under the user's [model] section. SASRec follows its paper (Kang & McAuley 2018): one head,
# point-wise feed-forward of width d, binary cross-entropy with one sampled negative, dropout 0.5 on sparse data.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "next-item-lm": {},
    "sasrec": {
        "loss": "bce",
        "n_heads": 1,
        "d_ff": 64,
        "dropout": 0.5,
        "emb_dropout": 0.5,
        "pos_encoding": "learned",
        "use_attributes": False,  # the paper's SASRec sees item ids only
    },
}
MODEL_NAMES = ("next-item-lm", "sasrec", "most-popular", "item-knn", "t5-semantic")
_KNN_KEYS = ("neighbours", "shrink", "decay", "max_seq_len")
# [model] keys of t5-semantic that choose its semantic ids rather than the T5 (defaults in fit_t5_semantic).
_SEMANTIC_ID_KEYS = ("n_levels", "codebook_size", "semantic_seed", "text_model", "semantic_source", "collab_model")


def _check_model_keys(model: str, params: dict[str, Any]) -> None:
    if model in ("next-item-lm", "sasrec"):
        from llmrec.train.fit import DERIVED_MODEL_KEYS, check_model_params

        check_model_params(params)  # names the key and what to use instead
        sizes = {"n_items": 1, **dict.fromkeys(DERIVED_MODEL_KEYS[1:], 0)}
        build(NextItemLMConfig, params, section="model", allowed_extra=("use_attributes", "item_text"), derived=sizes)
    elif model == "t5-semantic":
        from llmrec.models.seq2seq import T5SemanticConfig

        t5_sizes: dict[str, Any] = {"n_items": 1, "codebook_sizes": (1,)}
        build(T5SemanticConfig, params, section="model", allowed_extra=_SEMANTIC_ID_KEYS, derived=t5_sizes)
    elif model == "item-knn":
        unknown = [k for k in params if k not in _KNN_KEYS]
        if unknown:
            raise ValueError(f"unknown config key(s) for item-knn: {', '.join('model.' + k for k in unknown)}")
    elif params:
        raise ValueError(f"most-popular takes no [model] keys, got {', '.join(params)}")


def train_model(
    dataset: PreparedDataset,
    dataset_dir: Path,
    model: str,
    out: Path,
    sections: dict[str, dict[str, Any]],
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train `model` on `dataset`, write the artifact to `out` (training state in out/train); return a summary.

    callbacks: called after every selection epoch of next-item-lm / sasrec (e.g. an experiment tracker).
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; one of {', '.join(MODEL_NAMES)}")
    unknown_sections = set(sections) - {"model", "train"}
    if unknown_sections:
        raise ValueError(f"unknown config section(s): {', '.join(sorted(unknown_sections))}; known: model, train")
    params = {**MODEL_PRESETS.get(model, {}), **sections.get("model", {})}
    _check_model_keys(model, params)
    train_cfg = build(TrainConfig, {"progress": progress, **sections.get("train", {})}, section="train")
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"model": model, "params": params}
    ctx = distributed.current()
    if ctx.enabled and model not in ("next-item-lm", "sasrec"):
        raise ValueError(f"model {model!r} trains in a single process; distributed training supports next-item-lm and sasrec")
    if model in ("next-item-lm", "sasrec"):
        use_attributes = bool(params.pop("use_attributes", True))  # a no-op when the catalogue has no categories
        run_dir = out.parent / f".{out.name}.train"  # training state lives beside the artifact until it is complete
        if ctx.is_main and resume and not (run_dir / "checkpoint").is_dir() and (out / "train" / "checkpoint").is_dir():
            # A finished run keeps its state in out/train; copy it back (the artifact stays intact until replaced).
            shutil.copytree(out / "train", run_dir, dirs_exist_ok=True)
        if ctx.is_main:
            _same_dataset_on_resume(run_dir, dataset, resume)
        distributed.barrier()
        nn_model, result, vocab = fit(
            dataset, params, train_cfg, use_attributes=use_attributes, run_dir=run_dir, resume=resume, callbacks=callbacks
        )
        if ctx.is_main:
            save_artifact(nn_model, dataset, out, attributes=vocab)
            run_dir.replace(out / "train")
        summary.update(
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            best_valid=result.best_metric,
            stopped_early=result.stopped_early,
            train=asdict(train_cfg),
        )
    elif model == "t5-semantic":
        run_dir = out.parent / f".{out.name}.train"
        if resume and not (run_dir / "checkpoint").is_dir() and (out / "train" / "checkpoint").is_dir():
            shutil.copytree(out / "train", run_dir, dirs_exist_ok=True)
        _same_dataset_on_resume(run_dir, dataset, resume)
        t5_model, result = fit_t5_semantic(dataset, params, train_cfg, run_dir=run_dir, resume=resume)
        save_artifact(t5_model, dataset, out)
        run_dir.replace(out / "train")
        summary.update(
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            best_valid=result.best_metric,
            stopped_early=result.stopped_early,
            semantic_ids=t5_model.semantic_ids.stats(),
            train=asdict(train_cfg),
        )
    elif model == "most-popular":
        save_artifact(MostPopular.fit(dataset.train_sequences(), dataset.n_items), dataset, out)
    else:
        save_artifact(ItemKNN.fit(dataset.train_sequences(), dataset.n_items, **params), dataset, out)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["dataset"] = str(dataset_dir)
    if ctx.enabled:
        summary["world_size"] = ctx.world_size
    if not ctx.is_main:
        distributed.barrier()  # rank 0 finishes writing the artifact before any rank returns
        return summary
    write_training(out, summary, prepared_path=dataset_dir)
    distributed.barrier()
    return summary


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
                raise ValueError(f"--resume: checkpoint was trained on another dataset (other {what}); resume with the same --dataset")
        return
    atomic_write(path, json.dumps(here, indent=2).encode())


