"""Experiments end to end: train any registered model from config sections, evaluate any model artifact.

Model names (`--model`):
- ``next-item-lm``: the decoder-only next-item LM, full-softmax cross-entropy (defaults = best found on validation);
- ``sasrec``: SASRec as in its paper: the same transformer trained with binary cross-entropy, one negative;
- ``most-popular`` and ``item-knn``: the non-neural floors;
- ``t5-semantic``: generative retrieval, a T5 over semantic ids of the items' text embeddings (`fit_t5_semantic`).
Config sections: ``[model]`` (NextItemLMConfig fields, plus ``use_attributes``; for item-knn ``neighbours``,
``shrink``, ``decay``; for t5-semantic T5SemanticConfig fields plus ``n_levels``, ``codebook_size``,
``semantic_seed``, ``text_model``) and ``[train]`` (TrainConfig fields).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import build
from llmrec.data.dataset import PreparedDataset
from llmrec.eval.evaluate import EvalResult, compute_ranks, evaluate_split, paired_test, sampled_metrics, sampled_ranks
from llmrec.eval.metrics import ndcg_at_k, recall_at_k
from llmrec.eval.report import build_report, write_report
from llmrec.models.baselines import ItemKNN, MostPopular
from llmrec.models.next_item_lm import NextItemLMConfig
from llmrec.recommend import load_model
from llmrec.train import distributed
from llmrec.train.fit import fit, save_artifact
from llmrec.train.loop import TrainConfig

__all__ = ["MODEL_NAMES", "MODEL_PRESETS", "evaluate_model", "train_model"]

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
        build(NextItemLMConfig, {"n_items": 1, **params}, section="model", allowed_extra=("use_attributes",))
    elif model == "t5-semantic":
        from llmrec.models.seq2seq import T5SemanticConfig

        build(T5SemanticConfig, {"n_items": 1, "codebook_sizes": (1,), **params}, section="model", allowed_extra=_SEMANTIC_ID_KEYS)
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
) -> dict[str, Any]:
    """Train `model` on `dataset`, write the artifact to `out` (training state in out/train); return a summary."""
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
        distributed.barrier()
        nn_model, result, vocab = fit(
            dataset, params, train_cfg, use_attributes=use_attributes, run_dir=run_dir, resume=resume
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
    meta_path = out / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["prepared_path"] = str(dataset_dir)
    meta_path.write_text(json.dumps(meta, indent=2))
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    distributed.barrier()
    return summary


SEMANTIC_SOURCES = ("text", "collaborative", "text+collaborative")


def collaborative_item_embeddings(model_dir: str | Path, n_items: int) -> np.ndarray:
    """[n_items + 1, D] output item table of a trained next-item LM (ids + item features), for semantic ids.

    The collaborative source of TIGER-style ids: items that users consume together get nearby vectors, which
    anonymised or thin item text cannot give. The model must cover the same catalogue (same item indices), so
    train it on the same prepared dataset, and on training events only when the T5 is selected on validation.
    """
    import torch

    from llmrec.models.next_item_lm import NextItemLM

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model.collab_model: {path} is not a model directory (no config.json)")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type != "next-item-lm":
        raise ValueError(f"model.collab_model: {path} holds a {model_type!r} model; a next-item-lm is needed")
    lm = NextItemLM.from_pretrained(path).eval()
    if lm.config.n_items != n_items:
        raise ValueError(f"model.collab_model: {path} has {lm.config.n_items} items, the dataset has {n_items}: not the same catalogue")
    with torch.no_grad():
        return lm.item_table().float().cpu().numpy().copy()


def fit_t5_semantic(
    dataset: PreparedDataset,
    params: dict[str, Any],
    train_cfg: TrainConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    text_encoder: Any = None,
    text_cache_dir: Path | None = None,
    evaluate: Any = None,
    selected_epoch: int | None = None,
) -> tuple[Any, Any]:
    """Generative retrieval on `dataset`: semantic ids, then the T5 trained with early stopping on validation.

    Semantic ids quantise the text embeddings of the whole catalogue, cold items included (they need no
    interaction); params: T5SemanticConfig fields plus n_levels (3), codebook_size (64), semantic_seed (0),
    text_model (a local sentence-transformers path; default all-MiniLM-L6-v2), semantic_source ("text",
    "collaborative" or "text+collaborative": which item embeddings are quantised) and collab_model (a trained
    next-item-lm directory, for the collaborative sources). Every event after a user's first is one
    training example. Items that are never a training target are marked cold (see T5SemanticConfig.cold_weight).
    evaluate: the early-stopping metric function (default: all validation targets). With train_cfg.refit_on_valid, a
    fresh model is then trained on train + valid events for the selected number of epochs, as `train.fit.fit` does.
    selected_epoch: the epoch count already chosen on validation by an earlier run with the same settings (e.g. its
    `best_epoch`): the selection run is skipped, and the model trains for exactly that many epochs of the
    `train_cfg.epochs` schedule, on train + valid events with refit_on_valid, else on train events.
    Returns (model, TrainResult of the selection run, or of the only run when selected_epoch is given).
    """
    import torch

    if selected_epoch is not None and not 1 <= selected_epoch <= train_cfg.epochs:
        raise ValueError(f"selected_epoch: {selected_epoch} is outside the schedule's 1..{train_cfg.epochs} epochs (train.epochs)")
    from llmrec.data.registry import cache_dir
    from llmrec.index import SentenceTransformerEncoder, build_semantic_ids, encode_items
    from llmrec.models.seq2seq import T5SemanticConfig, T5SemanticRecommender, prefix_windows
    from llmrec.train.fit import validation_evaluator
    from llmrec.train.loop import train

    params = dict(params)
    n_levels, codebook_size = int(params.pop("n_levels", 3)), int(params.pop("codebook_size", 64))
    semantic_seed, text_model = int(params.pop("semantic_seed", 0)), params.pop("text_model", None)
    source, collab_model = str(params.pop("semantic_source", "text")), params.pop("collab_model", None)
    parts: list[np.ndarray] = []
    if source not in SEMANTIC_SOURCES:
        raise ValueError(f"model.semantic_source: {source!r} is not one of {', '.join(SEMANTIC_SOURCES)}")
    if source in ("text", "text+collaborative"):
        encoder = text_encoder if text_encoder is not None else SentenceTransformerEncoder(text_model)
        cache = text_cache_dir if text_cache_dir is not None else cache_dir() / "text-embeddings"
        parts.append(encode_items(dataset.items, dataset.domain, encoder, cache, progress=train_cfg.progress))  # [V+1, E]
    if source in ("collaborative", "text+collaborative"):
        if not collab_model:
            raise ValueError(f"model.semantic_source = {source!r} needs model.collab_model: a trained next-item-lm directory")
        parts.append(collaborative_item_embeddings(collab_model, dataset.n_items))  # [V+1, D]
    # each part L2-normalised per item, so text and collaborative weigh the same in the concatenation
    emb = np.concatenate([p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12) for p in parts], axis=1)
    ids = build_semantic_ids(emb, n_levels=n_levels, codebook_size=codebook_size, seed=semantic_seed)
    config = T5SemanticConfig(n_items=dataset.n_items, codebook_sizes=ids.codebook_sizes, **params)

    def build(sequences: list[np.ndarray]) -> tuple[T5SemanticRecommender, list[np.ndarray]]:
        torch.manual_seed(train_cfg.seed)
        model = T5SemanticRecommender(config, ids)
        seen = torch.zeros(dataset.n_items + 1, dtype=torch.bool)
        targets = [s[1:] for s in sequences if len(s) > 1]
        if targets:
            seen[torch.from_numpy(np.concatenate(targets))] = True
        model.set_seen_items(seen)
        return model, prefix_windows(sequences, config.max_seq_len)

    if selected_epoch is None:
        model, windows = build(dataset.train_sequences())
        evaluate = evaluate if evaluate is not None else validation_evaluator(dataset)
        result = train(model, windows, train_cfg, evaluate=evaluate, run_dir=run_dir, resume=resume)  # type: ignore[arg-type]
        if not (train_cfg.refit_on_valid and result.best_epoch > 0):
            return model, result
        epochs, fixed_dir = result.best_epoch, None if run_dir is None else Path(run_dir) / "refit"
        resume_fixed = resume and fixed_dir is not None and (fixed_dir / "checkpoint" / "state.json").exists()
    else:
        epochs, fixed_dir, resume_fixed = selected_epoch, run_dir, resume
    # A fixed number of epochs of the schedule: the refit after selection, or the only run when selected_epoch is given.
    model, windows = build(dataset.train_sequences(through="valid" if train_cfg.refit_on_valid else "train"))
    fixed = train(model, windows, train_cfg, run_dir=fixed_dir, resume=resume_fixed, stop_after=epochs)  # type: ignore[arg-type]
    return model, (fixed if selected_epoch is not None else result)


def evaluate_model(
    model_dir: Path,
    dataset: PreparedDataset,
    *,
    splits: tuple[str, ...] = ("valid", "test"),
    exclude_seen: bool = False,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    n_boot: int = 1000,
    sampled_negatives: int = 0,
    baseline_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Full-ranking evaluation of a model artifact on the prepared dataset's splits; returns the report dict.

    With `baseline_dir`, a second model is ranked on the same users and the report's ``extra.paired`` holds a
    paired test (bootstrap CI of the difference, sign-flip permutation p-value) for NDCG@10 and Recall@10.
    """
    score_fn = _score_fn(model_dir)

    pop = dataset.item_popularity()
    results: dict[str, EvalResult] = {}
    sampled: dict[str, dict[str, float]] = {}
    for split in splits:
        ex = dataset.eval_examples(split)
        results[split] = evaluate_split(
            score_fn,
            ex.histories,
            ex.targets,
            ks=ks,
            exclude_seen=exclude_seen,
            target_popularity=pop[ex.targets],
            n_boot=n_boot,
            progress=progress,
        )
        if sampled_negatives:
            r = sampled_ranks(score_fn, ex.histories, ex.targets, n_negatives=sampled_negatives, popularity=None)
            sampled[split] = sampled_metrics(r, n_negatives=sampled_negatives, ks=ks)
    extra: dict[str, Any] | None = None
    if baseline_dir is not None:
        base_fn = _score_fn(baseline_dir)
        extra = {"paired": {"baseline": str(baseline_dir)}}
        for split in splits:
            ex = dataset.eval_examples(split)
            base = compute_ranks(base_fn, ex.histories, ex.targets, exclude_seen=exclude_seen)
            ours = results[split].ranks
            extra["paired"][split] = {
                "ndcg@10": paired_test(ndcg_at_k(ours, 10), ndcg_at_k(base, 10)),
                "recall@10": paired_test(recall_at_k(ours, 10), recall_at_k(base, 10)),
            }
    training = json.loads((model_dir / "training.json").read_text()) if (model_dir / "training.json").exists() else {}
    refit = bool(training.get("train", {}).get("refit_on_valid", False))
    protocol = {
        # A refit model was retrained on train + valid events after selection: its valid numbers are not held out;
        # the held-out validation metric of the selection run is `selection_valid`.
        "valid_held_out": not refit,
        **({"selection_valid": {training["train"].get("metric", "ndcg@10"): training.get("best_valid")}} if refit else {}),
        "split": dataset.manifest.get("split", {}).get("protocol", "loo"),
        "exclude_seen": exclude_seen,
        "ranking": "full",
        "ks": list(ks),
    }
    config = json.loads((model_dir / "config.json").read_text())
    model_name = training.get("model", config.get("model_type"))  # names presets such as "sasrec"
    return build_report(
        results,
        model_name=str(model_name),
        dataset=str(dataset.manifest.get("source", {}).get("dataset", dataset.manifest.get("source", {}))),
        protocol=protocol,
        sampled=sampled or None,
        extra=extra,
    )


def _score_fn(model_dir: Path) -> Any:
    """Batch of internal-id histories -> [B, V+1] scores, for any model type."""
    from llmrec.data.sequences import pad_left

    model = load_model(model_dir)
    max_len = int(getattr(getattr(model, "config", None), "max_seq_len", 0) or getattr(model, "max_seq_len", 50))

    def score_fn(histories: list[np.ndarray]) -> Any:
        return model.score(pad_left(histories, max_len))

    return score_fn


def write_evaluation(report: dict[str, Any], out_json: Path, model_dir: Path) -> list[Path]:
    csv = model_dir / "train" / "metrics.csv"
    return write_report(report, out_json, training_log_csv=csv if csv.exists() else None)
