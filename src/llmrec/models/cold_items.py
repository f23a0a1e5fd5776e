"""Cold-start items for a trained model: give never-trained items an embedding mapped from their text.

Any `llmrec.models.base.ColdItemMappable` model (the next-item LM, BSARec) can be mapped. A model trained on ids
(and attributes) has no trained id embedding for an item that never occurred in
training. The attribute-to-feature mapping of Gantner et al. (ICDM 2010, "Learning attribute-to-feature mappings
for cold-start recommendations") fixes that after training: fit a ridge regression from each *warm* item's content
vector (here its pretrained text embedding, e.g. MiniLM) to its trained output embedding, then give each cold item
the embedding its text maps to. The cold items are then scored in the model's own geometry, next to the warm ones.

`apply_text_map` writes the mapped vectors into the cold items' rows (the model's `set_item_rows`: for the LM its
id-embedding rows, minus their attribute/text feature part), so that ``item_table()[cold] == map(text[cold])``. With tied weights (the
default) the same vector is also the cold item's input embedding when it appears in a history. Warm rows are not
touched, and the model saves and loads as usual: no new tensors, no format change.

Measured on ml-100k with 10% of items held out (docs/generative-retrieval.md, session 4): with a cold offset chosen
on validation, the id-only LM + text map recommends cold items while keeping warm NDCG@10 within 3% of itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from llmrec.models.base import ColdItemMappable
from llmrec.models.item_sequence import ItemSequenceModel
from llmrec.types import PAD_ID

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset

__all__ = ["TextMap", "apply_text_map", "fit_text_map", "map_cold_items_artifact", "untrained_items", "zero_id_rows"]


@dataclass(frozen=True)
class TextMap:
    """y = [x, 1] @ weight: text embedding x [E] -> item embedding y [D]; weight [E+1, D] (last row: the bias)."""

    weight: torch.Tensor
    ridge: float

    def __call__(self, text: torch.Tensor) -> torch.Tensor:
        """text [N, E] -> [N, D]."""
        x = text.to(torch.float64)
        return (x @ self.weight[:-1] + self.weight[-1]).to(torch.float32)


def fit_text_map(text: torch.Tensor, targets: torch.Tensor, *, ridge: float = 1.0) -> TextMap:
    """Ridge regression (bias unpenalised) from text [N, E] to targets [N, D], in float64."""
    if text.ndim != 2 or targets.ndim != 2 or len(text) != len(targets):
        raise ValueError(
            f"text [N, E] and targets [N, D] must have the same N; got {tuple(text.shape)} and {tuple(targets.shape)}"
        )
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    x = torch.cat([text.to(torch.float64), torch.ones(len(text), 1, dtype=torch.float64)], 1)  # [N, E+1]
    penalty = torch.eye(x.shape[1], dtype=torch.float64) * ridge
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    weight = torch.linalg.lstsq(x.T @ x + penalty, x.T @ targets.to(torch.float64)).solution  # [E+1, D]
    return TextMap(weight=weight, ridge=float(ridge))


@torch.no_grad()
def apply_text_map(
    model: ColdItemMappable, text: np.ndarray | torch.Tensor, cold_items: Sequence[int] | np.ndarray, *, ridge: float = 1.0
) -> TextMap:
    """Fit the map on the warm items of `model` and write it into the cold items' rows; returns the map.

    text: [V+1, E] text embedding of every item id (row 0, padding, is ignored); cold_items: the ids that never
    occurred in training. Every other item 1..V is warm and is a training pair of the regression.
    """
    V = model.n_items
    text_t = torch.as_tensor(np.asarray(text), dtype=torch.float32)
    if text_t.ndim != 2 or text_t.shape[0] != V + 1:
        raise ValueError(f"text: expected [{V + 1}, E] (one row per item id, row 0 = padding), got {tuple(text_t.shape)}")
    cold = torch.as_tensor(np.unique(np.asarray(cold_items, dtype=np.int64)))
    if len(cold) == 0:
        raise ValueError("cold_items is empty: there is nothing to map")
    if int(cold.min()) < 1 or int(cold.max()) > V:
        raise ValueError(f"cold_items: ids must be in 1..{V} (0 is padding), got {int(cold.min())}..{int(cold.max())}")
    is_warm = torch.ones(V + 1, dtype=torch.bool)
    is_warm[PAD_ID] = False
    is_warm[cold] = False
    if int(is_warm.sum()) < 2:
        raise ValueError("fewer than 2 warm items: the map cannot be fitted")
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    table = model.item_table()  # [V+1, D] (no_grad: built afresh or the eval cache)
    mapping = fit_text_map(text_t[is_warm], table[is_warm], ridge=ridge)
    model.set_item_rows(cold, mapping(text_t[cold]))  # [M, D]: the rows become exactly the mapped vectors
    if isinstance(model, torch.nn.Module):
        model.train(was_training)
    return mapping


@torch.no_grad()
def zero_id_rows(model: ItemSequenceModel, items: Sequence[int] | np.ndarray | torch.Tensor) -> None:
    """Set the id-embedding rows of `items` to zero (input rows, and the output rows when untied): the items keep
    only their feature part (attributes, projected text), so ``item_table()[items]`` is what their features say.

    An item that never occurs in training has an id row that no positive example shaped: randomly initialised,
    and with a full softmax pushed away from every user state as a negative. In a model with item features that
    row only blurs what the features say about the item; zeroing it lets the text speak alone (cold items scored
    by their text). Other rows are untouched; the eval cache of the item table sees the in-place write."""
    ids = torch.as_tensor(np.asarray(items, dtype=np.int64)) if not isinstance(items, torch.Tensor) else items.long()
    if ids.numel() and (int(ids.min()) < 1 or int(ids.max()) > model.n_items):
        raise ValueError(f"items: ids must be in 1..{model.n_items} (0 is padding), got {int(ids.min())}..{int(ids.max())}")
    model.item_emb.weight[ids] = 0.0
    if model.out_emb is not None:
        model.out_emb.weight[ids] = 0.0


def untrained_items(dataset: PreparedDataset, *, refit: bool) -> np.ndarray:
    """Item ids 1..V that occur in no training sequence of `dataset`: the model never saw them.

    refit: the model was refit on train + valid (`train.refit_on_valid`), so validation targets count as trained.
    """
    sequences = dataset.train_sequences(through="valid" if refit else "train")
    seen = np.zeros(dataset.n_items + 1, dtype=bool)
    for s in sequences:
        seen[s] = True
    seen[PAD_ID] = True
    return np.flatnonzero(~seen)


def map_cold_items_artifact(
    model_dir: str | Path,
    dataset: PreparedDataset,
    out: str | Path,
    *,
    ridge: float = 0.1,
    text_model: str | None = None,
    text_cache_dir: str | Path | None = None,
    progress: bool = False,
    method: str = "text-map",
) -> dict[str, object]:
    """`llmrec map-cold-items`: copy a model artifact to `out` with its untrained items' rows text-mapped.

    Any model that is `ColdItemMappable` (next-item-lm, bsarec, tvrec) can be mapped; others are refused.
    method: "text-map" (the ridge map below) | "features": the untrained items' id rows are zeroed
    (`zero_id_rows`), so a model trained with item text or attributes places them by those alone (on Beauty's
    cold-item split the better way for the TV-Rec that reads titles: docs/cold-start.md).

    The items' text is built from the dataset's catalogue (`llmrec.index.encode_items`) and encoded with
    `text_model` (default all-MiniLM-L6-v2, offline), cached. Writes ``text_map.json`` (ridge, item counts) beside the
    model; returns the same summary. The write is atomic: `out` is complete or absent.
    """
    import json

    from llmrec import artifact
    from llmrec.identity import check_model_dataset
    from llmrec.index import SentenceTransformerEncoder, encode_items

    model_dir, out = Path(model_dir), Path(out)
    if not artifact.has_model(model_dir):
        raise ValueError(f"{model_dir}: not a model artifact (no config.json)")
    if out.resolve() == model_dir.resolve():
        raise ValueError("--out must differ from --model")
    art = artifact.open_artifact(model_dir)
    model = art.model()  # a damaged artifact: ArtifactError naming the file
    if not isinstance(model, ColdItemMappable):
        raise ValueError(
            f"{model_dir}: a {art.model_type!r} model has no item rows to map (needs item embeddings, "
            "e.g. next-item-lm or bsarec)"
        )
    if method not in ("text-map", "features"):
        raise ValueError(f"--method must be text-map or features, got {method!r}")
    if method == "features":
        if not isinstance(model, ItemSequenceModel) or not (model.config.text_dim or model.config.n_attributes):
            raise ValueError(
                f"{model_dir}: --method features needs a model trained with item text or attributes "
                "(model.item_text / model.use_attributes); this one has ids only: use --method text-map"
            )
    check_model_dataset(model_dir, dataset)
    refit = bool(artifact.refit_on_valid(model_dir))  # as written by llmrec train (training.json)
    cold = untrained_items(dataset, refit=refit)
    if len(cold) == 0:
        raise ValueError(f"{model_dir}: every item occurs in training; there are no cold items to map")
    if method == "features":
        assert isinstance(model, ItemSequenceModel)
        zero_id_rows(model, cold)  # under torch.no_grad (its decorator)
        used_ridge: float | None = None
    else:
        encoder = SentenceTransformerEncoder(text_model)
        text = encode_items(dataset.items, dataset.domain, encoder, artifact.text_cache_dir(text_cache_dir), progress=progress)
        used_ridge = apply_text_map(model, text, cold, ridge=ridge).ridge
    summary: dict[str, object] = {
        "method": method,
        "ridge": used_ridge,
        "cold_items": int(len(cold)),  # in no training event (`untrained_items`); `llmrec data stats` counts them too
        "split_cold_items": int(dataset.is_cold_item[cold].sum()),  # of them, held out by a cold-item split
        "warm_items": int(model.n_items - len(cold)),
        "refit_on_valid": refit,
        "text_model": (text_model or "all-MiniLM-L6-v2") if method == "text-map" else None,
        "base": str(model_dir),
    }
    artifact.copy_with_weights(model_dir, out, model, extra={"text_map.json": json.dumps(summary, indent=2)})
    return summary
