"""Generative retrieval fitting: semantic ids of the catalogue, then the T5 fitted by selection + refit.

The item vectors that are quantised into semantic ids come from the items' text (a sentence encoder), from a
trained model's item table (collaborative: any model with item embeddings), or both (`SEMANTIC_SOURCES`). The T5 is then fitted with
`llmrec.training.refit.select_then_refit`, the recipe every trainable model shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec import artifact
from llmrec.training.loop import TrainConfig, TrainResult

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.models.seq2seq import T5SemanticRecommender
    from llmrec.models.spec import FitInput

__all__ = ["SEMANTIC_SOURCES", "collaborative_item_embeddings", "fit_request", "fit_t5_semantic"]

SEMANTIC_SOURCES = ("text", "collaborative", "text+collaborative")


def collaborative_item_embeddings(model_dir: str | Path, n_items: int) -> np.ndarray:
    """[n_items + 1, D] output item table of a trained model with item embeddings (next-item-lm, bsarec), for
    semantic ids.

    The collaborative source of TIGER-style ids: items that users consume together get nearby vectors, which
    anonymised or thin item text cannot give. Any `ItemEmbeddingModel` artifact serves; the model must cover the
    same catalogue (same item indices), so train it on the same prepared dataset, and on training events only when
    the T5 is selected on validation.
    """
    import torch

    from llmrec.models.base import ItemEmbeddingModel

    path = Path(model_dir)
    if not artifact.has_model(path):
        raise FileNotFoundError(f"model.collab_model: {path} is not a model directory (no config.json)")
    art = artifact.open_artifact(path)
    model = art.model()
    if not isinstance(model, ItemEmbeddingModel):
        raise ValueError(
            f"model.collab_model: {path} holds a {art.model_type!r} model, which has no item embeddings "
            "(train a next-item-lm or bsarec)"
        )
    if isinstance(model, torch.nn.Module):
        model.eval()
    with torch.no_grad():
        table = model.item_table().float().cpu().numpy().copy()  # [V+1, D]
    if len(table) != n_items + 1:
        raise ValueError(
            f"model.collab_model: {path} has {len(table) - 1} items, the dataset has {n_items}: not the same catalogue"
        )
    return table


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
) -> tuple[T5SemanticRecommender, TrainResult]:
    """Generative retrieval on `dataset`: semantic ids, then the T5 trained with early stopping on validation.

    Semantic ids quantise the text embeddings of the whole catalogue, cold items included (they need no
    interaction); params: T5SemanticConfig fields plus n_levels (3), codebook_size (64), semantic_seed (0),
    text_model (a local sentence-transformers path; default all-MiniLM-L6-v2), semantic_source ("text",
    "collaborative" or "text+collaborative": which item embeddings are quantised) and collab_model (a trained
    next-item-lm or bsarec directory, for the collaborative sources). Every event after a user's first is one
    training example. Items that are never a training target are marked cold (see T5SemanticConfig.cold_weight).
    evaluate: the early-stopping metric function (default: all validation targets, seen items excluded when
    train_cfg.valid_exclude_seen). With train_cfg.refit_on_valid, a fresh model is then trained on train + valid
    events for the selected number of epochs (`select_then_refit`, as for the next-item LM).
    selected_epoch: the epoch count already chosen on validation by an earlier run with the same settings (e.g. its
    `best_epoch`): the selection run is skipped, and the model trains for exactly that many epochs of the
    `train_cfg.epochs` schedule, on train + valid events with refit_on_valid, else on train events.
    Returns (model, TrainResult of the selection run, or of the only run when selected_epoch is given).
    """
    import torch

    if selected_epoch is not None and not 1 <= selected_epoch <= train_cfg.epochs:
        raise ValueError(
            f"selected_epoch: {selected_epoch} is outside the schedule's 1..{train_cfg.epochs} epochs (train.epochs)"
        )
    from llmrec.index import SentenceTransformerEncoder, build_semantic_ids, encode_items
    from llmrec.models.seq2seq import T5SemanticConfig, T5SemanticRecommender, prefix_windows
    from llmrec.training.fit import validation_evaluator
    from llmrec.training.refit import select_then_refit

    params = dict(params)
    n_levels, codebook_size = int(params.pop("n_levels", 3)), int(params.pop("codebook_size", 64))
    semantic_seed, text_model = int(params.pop("semantic_seed", 0)), params.pop("text_model", None)
    source, collab_model = str(params.pop("semantic_source", "text")), params.pop("collab_model", None)
    parts: list[np.ndarray] = []
    if source not in SEMANTIC_SOURCES:
        raise ValueError(f"model.semantic_source: {source!r} is not one of {', '.join(SEMANTIC_SOURCES)}")
    if source in ("text", "text+collaborative"):
        encoder = text_encoder if text_encoder is not None else SentenceTransformerEncoder(text_model)
        cache = artifact.text_cache_dir(text_cache_dir)
        parts.append(encode_items(dataset.items, dataset.domain, encoder, cache, progress=train_cfg.progress))  # [V+1, E]
    if source in ("collaborative", "text+collaborative"):
        if not collab_model:
            raise ValueError(
                f"model.semantic_source = {source!r} needs model.collab_model: a trained next-item-lm or bsarec directory"
            )
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

    if evaluate is None:
        evaluate = validation_evaluator(dataset, exclude_seen=train_cfg.valid_exclude_seen)
    return select_then_refit(
        build, dataset, train_cfg, evaluate=evaluate, run_dir=run_dir, resume=resume, selected_epoch=selected_epoch
    )


def fit_request(req: FitInput) -> tuple[T5SemanticRecommender, dict[str, Any]]:
    """The T5's fit behind ``llmrec train --model t5-semantic`` (its `ModelSpec.fit`): the model and its summary."""
    from llmrec.training.recipes import selection_summary

    model, result = fit_t5_semantic(
        req.dataset,
        dict(req.params),
        req.train,
        run_dir=req.run_dir,
        resume=req.resume,
        selected_epoch=req.train.selected_epoch or None,
    )
    return model, {**selection_summary(result, req.train), "semantic_ids": model.semantic_ids.stats()}
