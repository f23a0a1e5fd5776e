"""TV-Rec: time-variant convolutional filters instead of self-attention.

TV-Rec, from "Time-Variant Convolutional Filter for Sequential Recommendation" (Shin et al., NeurIPS 2025,
https://arxiv.org/abs/2510.25259; github yehjin-shin/TV-Rec). Each block replaces self-attention by a linear
filter along the sequence whose taps depend on the position: with the history right-aligned in a window of
N = ``max_seq_len`` slots (the newest item in slot N − 1),

    y_s = Σ_{k=0}^{N−1} h_s[k] · x_{s−k}        (x_{<0} = 0),

a causal convolution whose kernel h_s changes with the slot s. The paper writes it as a node-variant graph filter
on a directed cycle (the shift operator), computed in the graph Fourier domain; on the window's slots that is the
lower-triangular matrix above, which is what this file builds and multiplies by (one [L, L] @ [B, L, D] product
per block, no complex arithmetic). The kernels are low rank: h_s = Re(Σ_m c_{s,m} · b̂_m), M complex basis kernels
b_m of N taps, each scaled to unit norm, mixed by learned coefficients c_s per slot; an optional penalty pushes
the basis kernels (real and imaginary parts) towards orthogonality.

Block: LN(x + Dropout(filter(x))), then LN(h + Dropout(FFN(h))) (post-LN, GELU feed-forward). No position
embedding by default: the slot-dependent taps carry the order.

Training: the kernels are indexed by slot, and inference reads the newest item's slot N − 1 only, so the model
is trained as the paper does, one target per example at the last position (``train.examples = "prefixes"``,
``last_position_only``); the filter is causal, so `encode(...)[:, t]` reads items <= t only.

The item table, features, losses, scoring and persistence are the shared ones
(`llmrec.models.item_sequence.ItemSequenceModel`); ``model_type`` is ``"tvrec"``.

Differences from the paper: the taps span the N slots of the window (the paper's K = 50 taps on a cycle of
N + K − 1 nodes reach one wrapped-around slot, which carries padding except at the first slot); histories in a
batch are padded only to the longest one, and a history's slots are counted from its newest item, so its scores
do not depend on its batch; the item table may carry attribute / text features like the LM's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.config import check_range
from llmrec.models.item_sequence import ItemSequenceConfig, ItemSequenceModel, RecOutput
from llmrec.models.layers import MaskDropout
from llmrec.models.spec import ModelSpec, SearchParam
from llmrec.types import SeqBatch

__all__ = ["SEARCH_SPACE", "SPEC", "TVRec", "TVRecConfig"]


@dataclass(frozen=True, kw_only=True)
class TVRecConfig(ItemSequenceConfig):
    """The shared item-sequence fields (defaults as the paper's Beauty run) plus the filter's basis size and
    orthogonality weight."""

    dropout: float = 0.5  # the paper's hidden dropout on Beauty and Sports
    emb_dropout: float = 0.5
    pos_encoding: str = "none"  # the slot-dependent taps carry the order
    n_basis: int = 32  # M: basis kernels (the paper: 32 on Beauty, 8-16 elsewhere)
    ortho_weight: float = 0.0  # weight of the basis orthogonality penalty (the paper: 0 on Beauty, up to 1e-3)
    # with item text, the scores add text_blend x the standardised title similarity to the newest history item
    # (`ItemSequenceModel.blend_recent_text`; chosen on Beauty validation, 3 seeds; 0 = off)
    text_blend: float = 0.1
    # ... plus text_rare_weight more on long-tail items (at most text_rare_count training events), whose id embeddings
    # learned least (chosen on Beauty validation, 3 seeds: the largest weight costing <= 0.5% NDCG@10; 0 = off)
    text_rare_weight: float = 0.1
    text_rare_count: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("n_basis", self.n_basis, 1, 4096)
        check_range("ortho_weight", self.ortho_weight, 0.0, 1e6)
        check_range("text_blend", self.text_blend, 0.0, 100.0)
        check_range("text_rare_weight", self.text_rare_weight, 0.0, 100.0)
        check_range("text_rare_count", self.text_rare_count, 0, 2**31 - 1)


class _TVBlock(nn.Module):
    """LN(x + filter(x)), then LN(h + FFN(h)); zero at padding."""

    def __init__(self, c: TVRecConfig) -> None:
        super().__init__()
        self.window = c.max_seq_len
        self.coef = nn.Parameter(torch.randn(c.max_seq_len, c.n_basis) * 1e-3)  # c_s: per slot, per basis kernel
        self.basis = nn.Parameter(torch.randn(c.n_basis, c.max_seq_len, 2) * 1e-3)  # b_m: complex, N taps
        self.ln_filter = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.ln_ff = nn.LayerNorm(c.d_model)
        self.drop = MaskDropout(c.dropout)

    def kernels(self) -> torch.Tensor:
        """[N slots, N taps]: h_s[k] = Re(Σ_m c_{s,m} b_m[k] / ||b_m||)."""
        real, imag = self.basis[..., 0], self.basis[..., 1]  # [M, N] each (no complex dtype: ONNX has none)
        norm = (real.square() + imag.square()).sum(1, keepdim=True).sqrt().clamp_min(1e-12)  # |b_m|
        out: torch.Tensor = self.coef @ (real / norm)  # c is real, so Re(c b / |b|) = c Re(b) / |b|
        return out

    def mixing(self, L: int) -> torch.Tensor:
        """[L, L] lower-triangular: row t (slot N − L + t) holds its taps h[t − j] at column j <= t."""
        h = self.kernels()[self.window - L :]  # [L, N]: the slots of the last L positions
        t = torch.arange(L, device=h.device)
        lag = t[:, None] - t[None, :]  # [L, L]
        taps = h.gather(1, lag.clamp_min(0))  # [L, L]
        return torch.where(lag >= 0, taps, torch.zeros_like(taps))

    def ortho_penalty(self) -> torch.Tensor:
        """Σ over the real and imaginary parts of ||B̂ B̂ᵀ − I||², B̂ the basis with unit rows."""
        total = self.basis.new_zeros(())
        eye = torch.eye(self.basis.shape[0], device=self.basis.device)
        for part in (self.basis[..., 0], self.basis[..., 1]):
            unit = F.normalize(part, dim=1)
            total = total + ((unit @ unit.T - eye) ** 2).sum()
        return total

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x [B, L, D] zero at padding, keep [B, L, 1] -> [B, L, D] zero at padding."""
        filtered = torch.matmul(self.mixing(x.shape[1]), x)  # [L, L] @ [B, L, D]
        h = self.ln_filter(x + self.drop(filtered))
        out: torch.Tensor = self.ln_ff(h + self.drop(self.mlp(h))) * keep
        return out

    def forward_last(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """`forward(x, keep)[:, -1]` -> [B, D], without the other positions' filter rows, norms and feed-forward."""
        taps = self.mixing(x.shape[1])[-1]  # [L]: the newest slot's row
        filtered = torch.einsum("l,bld->bd", taps, x)
        h = self.ln_filter(x[:, -1] + self.drop(filtered))
        out: torch.Tensor = self.ln_ff(h + self.drop(self.mlp(h))) * keep[:, -1]
        return out


class TVRec(ItemSequenceModel):
    """TV-Rec blocks over the shared (tied) item table; trained at the last position only."""

    model_type = "tvrec"  # llmrec.models.MODELS key and config.json "model_type"
    config_class = TVRecConfig
    config: TVRecConfig
    last_position_only = True  # the taps are per slot and inference reads the newest slot only

    def __init__(self, config: TVRecConfig) -> None:
        super().__init__(config)
        self.blocks = nn.ModuleList(_TVBlock(config) for _ in range(config.n_layers))
        self.emb_ln = nn.LayerNorm(config.d_model)  # on the input embeddings, as in the paper
        self.emb_drop = MaskDropout(config.emb_dropout)  # the cheaper mask (`MaskDropout`); no parameters
        self._finish_init()

    def _blocks_input(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """item_ids [B, L] left-padded -> (x [B, L, D] the normalised, dropped-out embeddings, zero at padding;
        keep [B, L, 1])."""
        x, is_real, _ = self.embed(item_ids)
        keep = is_real.unsqueeze(-1).to(x.dtype)
        return self.emb_drop(self.emb_ln(x)) * keep, keep

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded -> hidden states [B, L, D] (causal, zero at padding)."""
        x, keep = self._blocks_input(item_ids)
        for block in self.blocks:
            x = block(x, keep)
        return x

    def encode_last(self, item_ids: torch.Tensor) -> torch.Tensor:
        """`encode(item_ids)[:, -1]` -> [B, D]: the last block computes the newest slot only (what scoring and the
        last-position loss read), about a third of a training step saved at batch 256 × 50 slots."""
        if not len(self.blocks):
            return self.encode(item_ids)[:, -1]
        x, keep = self._blocks_input(item_ids)
        *first, last = self.blocks
        for block in first:
            x = block(x, keep)
        assert isinstance(last, _TVBlock)
        return last.forward_last(x, keep)

    def forward(self, batch: SeqBatch) -> RecOutput:
        """The shared forward, plus the basis orthogonality penalty in training when ``ortho_weight`` > 0."""
        out = super().forward(batch)
        if out.loss is not None and self.config.ortho_weight > 0:
            penalty = torch.stack([b.ortho_penalty() for b in self.blocks if isinstance(b, _TVBlock)]).sum()
            out.loss = out.loss + self.config.ortho_weight * penalty
        return out


# The training recipe (`ModelSpec.train_defaults`): the paper's Beauty settings from its repository's run.sh (batch
# 256, lr 5e-4) and its optimizer (Adam's default second-moment decay 0.999, no gradient clipping; with the library's
# 0.98 the validation-to-test drop grows from -20% to -25%, docs/benchmarks.md "The drop found"), llmrec's warm-up +
# cosine schedule over 30 epochs (best validation epoch 18-25 on beauty, 9-21 on lastfm and ml-100k) with patience 8.
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 256, "lr": 5e-4, "patience": 8, "adam_beta2": 0.999, "grad_clip": 0.0}

# `llmrec tune`'s search (`ModelSpec.search_space`), around the paper's own per-dataset settings (its README and
# logs: hidden dropout 0.5 on Beauty, 0.4 on LastFM, 0.1 on Yelp; M = 32 basis kernels on Beauty, 16 on Sports and
# Yelp, 8 on LastFM; lr 5e-4 on Beauty, 1e-3 on LastFM): the learning rate around the recipe's 5e-4, the cosine
# horizon (epochs: the schedule's length and the upper bound of the selection run) and the history horizon
# (max_seq_len: 50 in the paper, whose datasets average under 10 events a user; ml-100k's run to hundreds).
SEARCH_SPACE = {
    "dropout": SearchParam("model", "float", 0.1, 0.5),
    "n_basis": SearchParam("model", "categorical", choices=(8, 16, 32)),
    "max_seq_len": SearchParam("model", "categorical", choices=(50, 100, 200)),
    "lr": SearchParam("train", "float", 2e-4, 2e-3, log=True),
    "epochs": SearchParam("train", "categorical", choices=(15, 30, 45)),
}


def _searched_dropout(point: Mapping[str, Any]) -> dict[str, Any]:
    """TV-Rec's code has one hidden dropout, on the embeddings too: emb_dropout follows the searched dropout."""
    return {"emb_dropout": point["dropout"]} if "dropout" in point else {}


# Trained on one target per example at the last position (its taps are indexed by the newest item's slot).
SPEC = ModelSpec(
    "tvrec",
    TVRec,
    TVRecConfig,
    TVRec.build,
    examples=("prefixes",),
    features=True,
    train_defaults=TRAIN_DEFAULTS,
    distributed=True,
    estimate_memory=True,
    search_space=SEARCH_SPACE,
    search_derived=_searched_dropout,
)
