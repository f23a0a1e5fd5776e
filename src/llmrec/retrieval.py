"""Candidate retrieval and re-ranking behind `llmrec.recommend.Recommender`: the approximate index and diversity.

Large catalogues: above ``ANN_THRESHOLD`` items (or when asked) the top-k come from a FAISS index over the item
table (`llmrec.index.ann`): the model encodes the history, the index returns candidates by inner product with the
last hidden state, and `ann_candidates` re-scores them exactly with the model's item table. Diversity re-ranks
candidates by maximal marginal relevance (`mmr_topk`) over `diversity_features`. `query_similarity` scores every
item's text against a natural-language intent. These are free functions over a model and its arrays; the
`Recommender` facade keeps the state (the index, the cached features and text embeddings) and the wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from llmrec.eval.seen_items import seen_items
from llmrec.models.base import ItemEmbeddingModel, RecModel

if TYPE_CHECKING:
    from llmrec.index.ann import ItemIndex

__all__ = [
    "ANN_MODES",
    "ANN_THRESHOLD",
    "N_CANDIDATES",
    "ann_candidates",
    "calibration_queries",
    "diversity_features",
    "item_table",
    "item_text_embeddings",
    "load_or_build_index",
    "mmr_topk",
    "popularity_scores",
    "query_similarity",
]

ANN_THRESHOLD = 200_000  # ann="auto": retrieve through a FAISS index above this many items (docs/scaling.md)
ANN_MODES = ("auto", "off", "flat", "ivf", "hnsw")
N_CANDIDATES = 100  # diversity: MMR re-ranks each row's top max(N_CANDIDATES, 5k) items


def item_table(model: ItemEmbeddingModel) -> torch.Tensor:
    """The model's item embeddings [V+1, D] on the CPU."""
    with torch.no_grad():
        return model.item_table().detach().cpu()  # [V+1, D]


def calibration_queries(
    model: ItemEmbeddingModel,
    histories: dict[str, np.ndarray],
    padded: Callable[[list[np.ndarray]], torch.Tensor],
    n: int = 1000,
    seed: int = 0,
) -> np.ndarray | None:
    """Last hidden states [Q, D] of up to n stored histories (seeded sample), the index's calibration queries.

    padded: internal-id histories -> left-padded [B, L] on the model's device."""
    if not histories:
        return None
    users = sorted(histories)
    rng = np.random.default_rng(seed)
    picked = [users[i] for i in sorted(rng.choice(len(users), size=min(n, len(users)), replace=False))]
    with torch.no_grad():
        out = [model.encode(padded([histories[u] for u in picked[i : i + 256]]))[:, -1].cpu() for i in range(0, len(picked), 256)]
    return torch.cat(out).numpy()


def load_or_build_index(
    model: ItemEmbeddingModel,
    mode: str,
    queries: Callable[[], np.ndarray | None],
    *,
    index_dir: str | Path | None,
    target_recall: float,
) -> ItemIndex:
    """The saved index in `index_dir` when it was built from this model's item table (and is of kind `mode`, any
    kind for "auto"); otherwise a new one, calibrated on `queries()` (called only when building)."""
    from llmrec.index.ann import ItemIndex

    table = item_table(model).numpy()  # [V+1, D]
    if index_dir is not None and (Path(index_dir) / "index.json").is_file():
        try:
            saved = ItemIndex.load(index_dir, table)
        except (ValueError, RuntimeError):  # stale (other weights) or unreadable (faiss raises RuntimeError)
            saved = None
        if saved is not None and mode in ("auto", saved.kind):
            return saved
    return ItemIndex.build(table, mode, queries=queries(), target_recall=target_recall)


def ann_candidates(
    model: ItemEmbeddingModel,
    ann: ItemIndex,
    padded: torch.Tensor,
    histories: list[np.ndarray],
    excluded: list[bool],
    n_candidates: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, item ids) [B, N] of each row's index candidates, in descending exact score (-inf / 0 = none).

    Candidates come from the index by inner product with the last hidden state of `padded` [B, L], then are
    re-scored with the model's item table (the same numbers full scoring gives, whatever the index kind)."""
    with torch.no_grad():
        h = model.encode(padded)[:, -1].cpu()  # [B, D]
        _, found = ann.search(h.numpy(), n_candidates, exclude=seen_items(histories, excluded))  # [B, N] item ids, 0 = none
        ids = torch.from_numpy(found)  # [B, N]
        scores = torch.einsum("bnd,bd->bn", item_table(model)[ids], h)  # [B, N]
        scores = scores.masked_fill(ids == 0, float("-inf"))
        values, order = scores.sort(dim=1, descending=True, stable=True)
        return values, ids.gather(1, order)


def mmr_topk(
    values: torch.Tensor, indices: torch.Tensor, k: int, lam: float, features: np.ndarray, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """MMR re-ranking of candidates (scores, item ids) [B, N] in descending score -> [B, K] of each."""
    from llmrec.rerank import mmr_rerank

    cand, val = indices.numpy(), values.numpy()
    picked = mmr_rerank(cand, val, features, k, lam, metric)  # [B, K] item ids
    pos = torch.from_numpy((cand[:, :, None] == picked[:, None, :]).argmax(1))  # [B, K] positions in cand
    return values.gather(1, pos), torch.from_numpy(picked)


def diversity_features(items: pl.DataFrame, model: RecModel) -> tuple[np.ndarray, str]:
    """Item features for diversity: multi-hot categories (Jaccard) when the catalogue has them, else the
    model's item embeddings (cosine). [V+1, F] and the metric name."""
    from llmrec.eval.diversity import multi_hot

    cats = items["categories"].to_list() if "categories" in items.columns else []
    if any(cats):
        return multi_hot(cats)[0], "jaccard"
    if isinstance(model, ItemEmbeddingModel):
        return item_table(model).numpy(), "cosine"
    raise ValueError("diversity needs item categories in the catalogue or a model with item embeddings")


def item_text_embeddings(
    items: pl.DataFrame, domain: str, encoder: Any, cache_dir: Path | None, artifact: Path | None = None
) -> torch.Tensor:
    """Every item's text embedding [V+1, E] (unit rows): the ones stored in the artifact folder `artifact` when they
    fit the encoder, else encoded through the on-disk cache by item text (`llmrec.index.text_store`).

    cache_dir: None = <llmrec cache dir>/text-embeddings."""
    from llmrec.artifact import text_cache_dir
    from llmrec.index.text_store import catalogue_embeddings

    emb = catalogue_embeddings(artifact, items, domain, encoder, text_cache_dir(cache_dir))  # [V+1, E], unit rows
    return torch.from_numpy(emb)


def query_similarity(query: str, encoder: Any, item_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [V+1] between the query's text embedding and `item_embeddings` [V+1, E] (unit rows)."""
    q = torch.from_numpy(np.asarray(encoder.encode([query]), dtype=np.float32))[0]  # [E]
    return item_embeddings @ q  # [V+1]


def popularity_scores(histories: dict[str, np.ndarray], n_items: int) -> torch.Tensor:
    """[V+1] events per item over the stored histories (column 0 = padding = -inf): the empty history's ranking."""
    flat = np.concatenate([np.zeros(0, np.int64), *histories.values()])
    scores = torch.from_numpy(np.bincount(flat, minlength=n_items + 1)[: n_items + 1].astype(np.float32))
    scores[0] = float("-inf")
    return scores
