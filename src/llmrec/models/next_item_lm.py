"""Decoder-only next-item language model over item tokens.

A causal transformer reads a user's item sequence as tokens and predicts the next item with a softmax over the
whole catalogue: L(θ) = −Σ_i log P(y_i | x_<i; θ), computed only at real (non-padding) positions. With
``loss="bce"``, one sampled negative and learned positions this is SASRec as in its paper
(Kang & McAuley, ICDM 2018, https://arxiv.org/abs/1808.09781); the cross-entropy variant follows
"Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?" (Klenitskiy & Vasilev, RecSys 2023,
https://arxiv.org/abs/2309.07602), which shows the full softmax is what closes the gap to later models.

Differences from the SASRec paper: pre-LayerNorm blocks, GELU feed-forward, optional rotary positions, tied
input/output item embeddings, and optional item-side features (attribute ids, frozen text embeddings) that are
added to the id embedding on both the input and the output side — so an item never seen in training still has
a meaningful output embedding through its features (cold-start items).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmrec.models.item_sequence import ItemSequenceConfig, ItemSequenceModel, RecOutput
from llmrec.models.layers import PreLNBlock, causal_padding_mask, positions
from llmrec.models.spec import ModelSpec, SearchParam

__all__ = ["SASREC", "SEARCH_SPACE", "SPEC", "NextItemLM", "NextItemLMConfig", "RecOutput", "positions"]


@dataclass(frozen=True, kw_only=True)
class NextItemLMConfig(ItemSequenceConfig):
    """The shared item-sequence settings (`llmrec.models.item_sequence.ItemSequenceConfig`); the LM adds none."""


class NextItemLM(ItemSequenceModel):
    """Causal transformer over item tokens with a (tied) softmax over the catalogue."""

    model_type = "next-item-lm"  # llmrec.models.MODELS key and config.json "model_type"
    config_class = NextItemLMConfig  # what from_pretrained reads config.json into
    config: NextItemLMConfig

    def __init__(self, config: NextItemLMConfig) -> None:
        super().__init__(config)
        c = config
        self.blocks = nn.ModuleList(PreLNBlock(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)  # pre-LN blocks leave their output unnormalised
        self._finish_init()

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded -> hidden states [B, L, D] (causal: position t reads items <= t)."""
        x, is_real, pos = self.embed(item_ids)
        x = self.emb_drop(x)
        rope = self.rope(pos)
        mask = causal_padding_mask(is_real)  # [B, 1, L, L]: causal, padding keys hidden
        for block in self.blocks:
            x = block(x, mask, rope)
        h: torch.Tensor = self.ln_f(x)  # [B, L, D]
        return h


# SASRec follows its paper (Kang & McAuley 2018): one head, point-wise feed-forward of width d, binary
# cross-entropy with one sampled negative, dropout 0.5 on sparse data, item ids only (no attributes).
SASREC = dict(loss="bce", n_heads=1, d_ff=64, dropout=0.5, emb_dropout=0.5, pos_encoding="learned", use_attributes=False)

# `llmrec tune`'s search (`ModelSpec.search_space`); kept small: each trial is a full training run.
SEARCH_SPACE = {
    "d_model": SearchParam("model", "categorical", choices=(64, 128)),
    "n_layers": SearchParam("model", "categorical", choices=(1, 2, 3)),
    "dropout": SearchParam("model", "float", 0.1, 0.5),
    "emb_dropout": SearchParam("model", "float", 0.1, 0.6),
    "lr": SearchParam("train", "float", 3e-4, 5e-3, log=True),
    "weight_decay": SearchParam("train", "float", 1e-4, 0.3, log=True),
}


def _searched_sizes(point: Mapping[str, Any]) -> dict[str, Any]:
    """Two heads and a feed-forward 4 × d_model wide, whatever d_model the search picked."""
    return {"n_heads": 2, "d_ff": 4 * int(point["d_model"])} if "d_model" in point else {}


SPEC = ModelSpec(
    "next-item-lm",
    NextItemLM,
    NextItemLMConfig,
    NextItemLM.build,
    features=True,
    presets={"sasrec": SASREC},
    distributed=True,
    estimate_memory=True,
    search_space=SEARCH_SPACE,
    search_derived=_searched_sizes,
)
