"""Meta-training end to end: from a base model artifact and a cold-user dataset to a meta-trained artifact.

The output is a model artifact like its base (it loads, scores and serves the same way) plus, for adapter
methods, ``adapter.json`` + ``adapter.safetensors`` (used by ``Recommender.recommend(..., adapt=True)``), and
``meta.json``: the method, every config, the validation history and the seconds spent.

Methods:
- ``finetune``: per-user fine-tuning of the adapter from u₀ = 0, no meta-training; the step size and the number
  of steps are chosen on cold-start validation users from a small grid;
- ``maml``: the adapter meta-trained by first-order MAML (`llmrec.meta.maml`), the LM frozen;
- ``in-context``: the whole LM fine-tuned on short-context episodes (`llmrec.meta.in_context`); no adapter;
- ``in-context+maml``: both, the adapter meta-trained on top of the episodic LM.

Every choice (early stopping, grid points) is made on validation data: the ``cold_valid`` users, and for the
in-context LM also the warm users' validation targets (an epoch that costs them more than
``episodic.warm_tolerance`` of their NDCG@10 is never kept). ``cold_test`` and the test targets are never read here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.artifact import copy_with_weights, open_artifact
from llmrec.config import build
from llmrec.data.dataset import PreparedDataset
from llmrec.eval.cold_start import SUPPORT_SIZES, ColdStartResult, cold_start_table, evaluate_cold_start
from llmrec.eval.scoring import ScoreFn, score_fn
from llmrec.meta.in_context import EPISODIC_TRAIN_DEFAULTS, EpisodicConfig, constrained_metric, episodic_finetune
from llmrec.meta.maml import AdapterConfig, MetaConfig, UserAdapter, meta_train
from llmrec.models.base import Adaptable, RecModel, Trainable
from llmrec.training.fit import validation_evaluator
from llmrec.training.loop import TrainConfig

__all__ = [
    "FINETUNE_GRID",
    "METHODS",
    "cold_start_table",
    "cold_valid_score",
    "meta_train_model",
    "tune_finetune",
]

METHODS = ("finetune", "maml", "in-context", "in-context+maml")
SECTIONS = ("adapter", "meta", "episodic", "train")
# (inner_lr, inner_steps) points tried for the no-meta-training fine-tune baseline.
FINETUNE_GRID: tuple[tuple[float, int], ...] = tuple((lr, k) for lr in (0.1, 0.3, 1.0, 3.0, 10.0) for k in (1, 3, 5, 10))


def cold_valid_score(result: ColdStartResult, metric: str = "ndcg@10") -> float:
    """The one number every cold-start choice maximises: `metric` averaged over the support sizes."""
    return float(np.mean([result.metrics[n][metric] for n in result.support_sizes]))


def _cold_sequences(dataset: PreparedDataset, role: str) -> list[np.ndarray]:
    _, sequences = dataset.cold_users(role)
    if not sequences:
        raise ValueError(f"the dataset has no {role} users: prepare it with --split cold-user")
    return sequences


def tune_finetune(
    model: Adaptable, adapter_config: AdapterConfig, valid: list[np.ndarray], *, support_sizes: tuple[int, ...] = SUPPORT_SIZES
) -> tuple[UserAdapter, list[dict[str, float]]]:
    """The fine-tune baseline: u₀ = 0, (inner_lr, inner_steps) = the best FINETUNE_GRID point on `valid` users."""
    history = []
    best: tuple[float, UserAdapter] | None = None
    for lr, steps in FINETUNE_GRID:
        adapter = UserAdapter(replace(adapter_config, inner_lr=lr, inner_steps=steps))
        res = evaluate_cold_start(score_fn(model, adapter=adapter), valid, support_sizes=support_sizes, n_boot=0)
        score = cold_valid_score(res)
        history.append({"inner_lr": lr, "inner_steps": float(steps), "valid": score})
        if best is None or score > best[0]:
            best = (score, adapter)
    assert best is not None
    return best[1], history


def meta_train_model(
    dataset: PreparedDataset,
    base_dir: Path,
    out: Path,
    method: str,
    sections: dict[str, dict[str, Any]],
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Meta-train `method` on top of the base artifact in `base_dir`; write the artifact to `out`; return a summary."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown config section(s): {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    from llmrec.identity import check_model_dataset

    model = open_artifact(base_dir).model()  # a damaged artifact: ArtifactError naming the file
    # What each method needs of the model, asked of its capabilities (llmrec.models.base), never of its class:
    # the adapter reads encode() and item_table(); the in-context methods also train every weight (Trainable).
    if not isinstance(model, Adaptable):
        raise ValueError(f"{base_dir}: --base must be a model with item embeddings (e.g. next-item-lm, bsarec)")
    if method.startswith("in-context") and not isinstance(model, Trainable):
        raise ValueError(f"{base_dir}: --method {method} fine-tunes the model, and this one is not trainable")
    check_model_dataset(base_dir, dataset)
    train_sequences = dataset.train_sequences()
    valid = _cold_sequences(dataset, "cold_valid")
    adapter_config = build(AdapterConfig, {"d_model": _width(model), **sections.get("adapter", {})}, section="adapter")
    meta_config = build(MetaConfig, sections.get("meta", {}), section="meta")
    sizes = tuple(meta_config.support_sizes)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"method": method, "base": str(base_dir), "adapter": asdict(adapter_config)}

    def valid_of(fn: ScoreFn) -> float:
        return cold_valid_score(evaluate_cold_start(fn, valid, support_sizes=sizes, n_boot=0))

    warm_of = validation_evaluator(dataset, ks=(10,))  # warm users' leave-one-out validation targets
    summary["valid_zero_shot"] = valid_of(score_fn(model))
    summary["warm_valid_base"] = warm_of(model)["ndcg@10"]
    if method.startswith("in-context"):
        assert isinstance(model, Trainable)  # checked before any work
        train_config = build(
            TrainConfig, {**EPISODIC_TRAIN_DEFAULTS, "progress": progress, **sections.get("train", {})}, section="train"
        )
        episodic = build(EpisodicConfig, sections.get("episodic", {}), section="episodic")

        def evaluate(m: RecModel) -> dict[str, float]:
            cold, warm = valid_of(score_fn(m)), warm_of(m)["ndcg@10"]
            kept = constrained_metric(cold, warm, summary["warm_valid_base"], episodic.warm_tolerance)
            return {train_config.metric: kept, "cold_start": cold, "warm_ndcg@10": warm}

        result = episodic_finetune(model, train_sequences, train_config, episodic, evaluate=evaluate)
        summary.update(
            train=asdict(train_config),
            episodic=asdict(episodic),
            in_context={"best_epoch": result.best_epoch, "valid": result.best_metric, "history": result.history},
        )
    adapter: UserAdapter | None = None
    if method == "finetune":
        adapter, grid = tune_finetune(model, adapter_config, valid, support_sizes=sizes)
        summary["finetune_grid"] = grid
    elif method.endswith("maml"):
        adapter = UserAdapter(adapter_config)
        res = meta_train(model, adapter, train_sequences, meta_config, evaluate=lambda a: valid_of(score_fn(model, adapter=a)))
        summary.update(
            meta=asdict(meta_config), maml={"best_step": res.best_step, "valid": res.best_metric, "history": res.history}
        )
    if adapter is not None:
        summary["adapter"] = {**asdict(adapter.config), "learned_inner_lr": adapter.inner_lr}
    # The artifact as it will be used: cold-start users adapted (when it has an adapter), warm users as they are.
    summary["valid"] = valid_of(score_fn(model, adapter=adapter))
    summary["warm_valid"] = warm_of(model)["ndcg@10"]
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    _write_artifact(base_dir, out, model, adapter, summary)
    return summary


def _width(model: Adaptable) -> int:
    """D, the width of the model's hidden states and item table: the size of the adapter's user vector."""
    import torch

    with torch.no_grad():
        return int(model.item_table().shape[-1])


def _write_artifact(base_dir: Path, out: Path, model: RecModel, adapter: UserAdapter | None, summary: dict[str, Any]) -> None:
    """Copy the base artifact (not its training state), replace the weights, add the adapter; atomic rename."""
    from llmrec.outputs import check_replaceable

    check_replaceable(out, "model")
    copy_with_weights(
        base_dir,
        out,
        model,
        write=None if adapter is None else adapter.save_pretrained,
        extra={"meta.json": json.dumps(summary, indent=2, default=str)},
        drop_prefixes=("adapter.",),
        base_argument="--base",
    )
