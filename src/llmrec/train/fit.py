"""Wiring a PreparedDataset to a model: item features, the scoring function, fitting and the model artifact.

A model artifact directory is self-describing (no other file and no network needed to load it)::

    config.json, model.safetensors   the model (safetensors + JSON, no pickle)
    items.parquet                    item_idx ↔ raw id, title, text, categories (for output and explanations)
    histories.parquet                raw user id → full item sequence (for `recommend --user`)
    attributes.json                  attribute vocabulary when the model uses item attributes
    dataset.json                     domain, source and statistics of the data it was trained on
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from llmrec.atomic import atomic_directory
from llmrec.data.dataset import PreparedDataset
from llmrec.data.registry import cache_dir
from llmrec.data.sequences import pad_left, training_windows
from llmrec.eval.evaluate import compute_ranks
from llmrec.eval.metrics import summarize
from llmrec.index.text_encoder import SentenceTransformerEncoder, TextEncoder, encode_items
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
from llmrec.train import distributed
from llmrec.train.loop import Callback, TrainConfig, TrainResult, train

__all__ = [
    "ScoreFn",
    "attribute_matrix",
    "build_model",
    "fit",
    "make_score_fn",
    "save_artifact",
    "validation_evaluator",
]

ScoreFn = Callable[[list[np.ndarray]], torch.Tensor]


def attribute_matrix(items: pl.DataFrame, max_attributes: int = 8) -> tuple[torch.Tensor, list[str]]:
    """Item categories as an id matrix [V+1, A] (0 = none) and the vocabulary (id i ↔ vocab[i-1])."""
    cats: list[list[str] | None] = items.sort("item_idx")["categories"].to_list()
    vocab = sorted({c for cs in cats if cs for c in cs})
    index = {c: i + 1 for i, c in enumerate(vocab)}
    width = max(1, min(max_attributes, max((len(cs) for cs in cats if cs), default=1)))
    mat = torch.zeros(len(cats) + 1, width, dtype=torch.long)
    for row, cs in enumerate(cats, start=1):
        for j, c in enumerate((cs or [])[:width]):
            mat[row, j] = index[c]
    return mat, vocab


def build_model(
    dataset: PreparedDataset,
    params: dict[str, Any] | None = None,
    *,
    use_attributes: bool = False,
    use_text: bool = False,
    text_encoder: TextEncoder | None = None,
    text_cache_dir: str | Path | None = None,
    seed: int = 0,
) -> tuple[NextItemLM, list[str]]:
    """A NextItemLM sized for `dataset` (n_items and feature sizes come from the data, the rest from params).

    use_text: add frozen text embeddings of the catalogue (`text_encoder`, default all-MiniLM-L6-v2), cached in
    `text_cache_dir` (default ``<llmrec cache>/text-embeddings``); they travel in the model's state dict.
    """
    params = dict(params or {})
    vocab: list[str] = []
    attrs = None
    if use_attributes:
        attrs, vocab = attribute_matrix(dataset.items)
        if vocab:
            params.update(n_attributes=len(vocab), max_item_attributes=attrs.shape[1])
    text = None
    if use_text:
        encoder = text_encoder if text_encoder is not None else SentenceTransformerEncoder()
        cache = text_cache_dir if text_cache_dir is not None else cache_dir() / "text-embeddings"
        text = torch.from_numpy(encode_items(dataset.items, dataset.domain, encoder, cache))  # [V+1, text_dim]
        params.update(text_dim=text.shape[1])
    torch.manual_seed(seed)
    model = NextItemLM(NextItemLMConfig(n_items=dataset.n_items, **params))
    if attrs is not None and vocab:
        model.set_item_attributes(attrs)
    if text is not None:
        model.set_item_text(text)
    if model.config.loss == "sampled":
        model.set_item_popularity(torch.from_numpy(dataset.item_popularity()))
    return model, vocab


def make_score_fn(model: NextItemLM) -> ScoreFn:
    def score(histories: list[np.ndarray]) -> torch.Tensor:
        device = next(model.parameters()).device
        scores = model.score(pad_left(histories, model.config.max_seq_len).to(device))
        return scores if device.type == "cpu" else scores.cpu()

    return score


def validation_evaluator(dataset: PreparedDataset, ks: Sequence[int] = (10, 20)) -> Callable[[NextItemLM], dict[str, float]]:
    """Full-ranking metrics on the validation targets (never the test targets), for early stopping.

    Under data-parallel training each rank ranks its share of the users and the ranks are gathered, so every
    process computes the same metrics as a single process would.
    """
    ex = dataset.eval_examples("valid")

    def evaluate(model: NextItemLM) -> dict[str, float]:
        ctx = distributed.current()
        part = distributed.shard_rows(len(ex.targets), ctx)
        local = compute_ranks(make_score_fn(model), ex.histories[part], ex.targets[part])
        ranks = np.asarray(distributed.gather_in_order(local.tolist(), len(ex.targets), ctx), dtype=local.dtype)
        m = summarize(ranks, ks)
        return {k: m[k] for k in m if k.startswith(("ndcg@", "recall@"))}

    return evaluate


def fit(
    dataset: PreparedDataset,
    params: dict[str, Any] | None,
    train_config: TrainConfig,
    *,
    use_attributes: bool = False,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[NextItemLM, TrainResult, list[str]]:
    """Build a model for `dataset`, train it with early stopping on validation, return it with the best weights."""
    model, vocab = build_model(dataset, params, use_attributes=use_attributes, seed=train_config.seed)
    windows = training_windows(dataset.train_sequences(), model.config.max_seq_len)
    result = train(
        model,
        windows,
        train_config,
        evaluate=validation_evaluator(dataset),
        run_dir=run_dir,
        resume=resume,
        callbacks=callbacks,
    )
    if train_config.refit_on_valid and result.best_epoch > 0:
        # Standard refit after model selection: a fresh model (same seed and schedule) trained on train + valid
        # events for the selected number of epochs. Test targets stay unseen; valid numbers of the refit model
        # are no longer held-out, so the selection run's validation metric is what `result` reports.
        model, _ = build_model(dataset, params, use_attributes=use_attributes, seed=train_config.seed)
        refit_windows = training_windows(dataset.train_sequences(through="valid"), model.config.max_seq_len)
        refit_dir = None if run_dir is None else Path(run_dir) / "refit"
        resume_refit = resume and refit_dir is not None and (refit_dir / "checkpoint" / "state.json").exists()
        train(model, refit_windows, train_config, run_dir=refit_dir, resume=resume_refit, stop_after=result.best_epoch)
    return model, result, vocab


class _Saveable(Protocol):
    def save_pretrained(self, path: str | Path) -> None: ...


def save_artifact(model: _Saveable, dataset: PreparedDataset, out: str | Path, *, attributes: list[str] | None = None) -> Path:
    """Write the self-describing model directory atomically (temporary sibling, then rename)."""
    with atomic_directory(out, marker="config.json") as tmp:
        model.save_pretrained(tmp)
        dataset.items.write_parquet(tmp / "items.parquet")
        pl.DataFrame(
            {"user": dataset.users["user"], "items": [s.astype(np.int32) for s in dataset.sequences]},
            schema={"user": pl.String, "items": pl.List(pl.Int32)},
        ).write_parquet(tmp / "histories.parquet")
        if attributes:
            (tmp / "attributes.json").write_text(json.dumps(attributes))
        meta = {k: dataset.manifest.get(k) for k in ("domain", "source", "stats", "split")}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return Path(out)

