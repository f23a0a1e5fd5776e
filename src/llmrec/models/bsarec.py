"""BSARec: self-attention mixed with a frequency-domain filter of the sequence.

BSARec, "Beyond Self-Attention for Sequential Recommendation", from "An Attentive Inductive Bias for Sequential
Recommendation beyond the Self-Attention" (Shin et al., AAAI 2024, https://arxiv.org/abs/2312.10325). Self-attention acts as a low-pass filter and over-smooths a
sequence; BSARec adds an inductive bias from the frequency domain. Each block computes, for its input X [L, D]:

- the filter branch: the Fourier transform along the sequence F(X); its lowest ``c`` frequencies are the
  low-pass part LFC, the rest the high-pass part HFC; X̃ = F⁻¹(LFC + β ⊙ HFC) with β learnable per channel;
  then residual + LayerNorm: LN(X + Dropout(X̃));
- the attention branch: multi-head self-attention, residual + LayerNorm: LN(X + Dropout(SA(X)));
- the mix α · filter + (1 − α) · attention (α fixed by the config), then the position-wise feed-forward with
  residual + LayerNorm.

The Fourier transform mixes every position with every other one, so the model is **not causal**: the hidden
state at position t depends on the items after t. It is therefore trained with one target per example, at the
last position (``train.examples = "prefixes"``, `llmrec.data.sequences.prefix_examples`), and `forward` computes
the loss only at the last position whatever targets a batch carries. Scoring a history reads its last position,
which sees exactly the history, so `score`, `encode(...)[:, -1]` and everything built on them (the evaluators,
FAISS retrieval, explanations, per-user adaptation with ``support_loss = "last"``) are sound; adaptation with
``support_loss = "next"`` reads earlier positions, which here have seen the items after them.

Everything else is shared with the next-item LM through `llmrec.models.item_sequence.ItemSequenceModel`: the
item table with optional attribute and text features, tied output embeddings, the losses, item-table caching,
persistence and the contract methods. The artifact's ``model_type`` is ``"bsarec"``.

Differences from the paper:

- Padding. The paper pads (left) or truncates every sequence to N = 50 and filters the whole padded sequence,
  whose padding slots carry position embeddings, so the filter also reads padding. Here histories are
  left-padded only to the longest one of the batch (L <= max_seq_len), padding positions are zero before every
  filter, and the transform is taken at the fixed length N = ``max_seq_len`` (the paper's 50 by default): the
  filter reads only the real, right-aligned items, and a history gets the same scores whatever the padding of
  its batch. (``rfft(n=N)`` appends the zeros after the L columns rather than before them; the filter is a
  circular convolution, so this shifts its output without changing it, and the first L columns are kept.)
- Positions count real items from the start of the history (as in the LM), not slots of the padded window.
- β starts at 1 (the filter branch starts as the identity) and α is a config value; the paper picks α and c per
  dataset, which ``llmrec tune --model bsarec`` searches (`SEARCH_SPACE`).
- The LM's options carry over: item attributes / text on the item table, rotary positions, sampled or
  SASRec-style losses (the paper trains with the full softmax, the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmrec.config import SettingError, check_range
from llmrec.models.item_sequence import ItemSequenceConfig, ItemSequenceModel
from llmrec.models.layers import Rope, attend, causal_padding_mask
from llmrec.models.spec import ModelSpec, SearchParam

__all__ = ["SEARCH_SPACE", "SPEC", "BSARec", "BSARecConfig"]


@dataclass(frozen=True, kw_only=True)
class BSARecConfig(ItemSequenceConfig):
    """The shared item-sequence fields plus BSARec's two: the mix α and the low-pass cut-off c."""

    alpha: float = 0.7  # block output = alpha * filter branch + (1 - alpha) * attention branch (the paper's α)
    c: int = 5  # frequencies kept by the low-pass part (the lowest c of the rfft at length max_seq_len)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("alpha", self.alpha, 0.0, 1.0)
        n_freq = self.max_seq_len // 2 + 1
        if not 1 <= self.c <= n_freq:
            raise SettingError(
                "c",
                f"must be between 1 and {n_freq} (the frequencies of a max_seq_len={self.max_seq_len} sequence), got {self.c}",
            )


class _BSABlock(nn.Module):
    """α · LN(x + filter(x)) + (1 − α) · LN(x + SA(x)), then LN(h + FFN(h)); post-LN as in the paper."""

    def __init__(self, c: BSARecConfig) -> None:
        super().__init__()
        self.n_heads, self.alpha, self.cutoff, self.window = c.n_heads, c.alpha, c.c, c.max_seq_len
        self.beta = nn.Parameter(torch.ones(c.d_model))  # high-pass gain per channel
        self.ln_filter = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.ln_attn = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.ln_ff = nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.attn_dropout = c.dropout

    def spectral_filter(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, D] (zero at padding) -> F⁻¹(LFC + β ⊙ HFC) [B, L, D], the transform at length max_seq_len."""
        L = x.shape[1]
        spec = torch.fft.rfft(x, n=self.window, dim=1, norm="ortho")  # [B, F, D], F = window // 2 + 1
        n_high = spec.shape[1] - self.cutoff
        gain = torch.cat([self.beta.new_ones(self.cutoff, self.beta.shape[0]), self.beta.expand(n_high, -1)])  # [F, D]
        out: torch.Tensor = torch.fft.irfft(spec * gain, n=self.window, dim=1, norm="ortho")
        return out[:, :L]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: Rope | None, keep: torch.Tensor) -> torch.Tensor:
        """x [B, L, D] zero at padding; keep [B, L, 1] 1.0 at real positions; the output is zero at padding too."""
        filtered = self.ln_filter(x + self.drop(self.spectral_filter(x)))
        p = self.attn_dropout if self.training else 0.0
        attended = self.ln_attn(x + self.drop(attend(x, self.qkv, self.proj, self.n_heads, mask, rope, p)))
        h = self.alpha * filtered + (1.0 - self.alpha) * attended
        out: torch.Tensor = self.ln_ff(h + self.drop(self.mlp(h))) * keep
        return out


class BSARec(ItemSequenceModel):
    """BSARec blocks over the shared (tied) item table; trained at the last position only."""

    model_type = "bsarec"  # llmrec.models.MODELS key and config.json "model_type"
    config_class = BSARecConfig
    config: BSARecConfig
    last_position_only = True  # the filter mixes every position: the loss reads the last one only

    def __init__(self, config: BSARecConfig) -> None:
        super().__init__(config)
        self.blocks = nn.ModuleList(_BSABlock(config) for _ in range(config.n_layers))
        self.emb_ln = nn.LayerNorm(config.d_model)  # on the input embeddings, as in the paper (post-LN blocks end normalised)
        self._finish_init()

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded -> hidden states [B, L, D] (zero at padding; only the last one is causal)."""
        x, is_real, pos = self.embed(item_ids)
        keep = is_real.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        x = self.emb_drop(self.emb_ln(x)) * keep  # padding is zero before the first filter
        rope = self.rope(pos)
        # Attention as in the LM (causal, padding keys hidden, each position sees itself); the filter is not causal.
        mask = causal_padding_mask(is_real)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask, rope, keep)
        h: torch.Tensor = x
        return h


# `llmrec tune`'s search (`ModelSpec.search_space`): the paper's grid (α in 0.1..0.9, c in {1, 3, 5, 7, 9}; Beauty:
# α 0.7, c 5, lr 5e-4; its README), its hidden dropout and the learning rate around the paper's 5e-4 and 1e-3.
SEARCH_SPACE = {
    "alpha": SearchParam("model", "float", 0.1, 0.9),
    "c": SearchParam("model", "categorical", choices=(1, 3, 5, 7, 9)),
    "dropout": SearchParam("model", "float", 0.1, 0.5),
    "lr": SearchParam("train", "float", 2e-4, 2e-3, log=True),
}


def _searched_dropout(point: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's code (after FMLP-Rec) has one hidden dropout, on the embeddings too: emb_dropout follows it."""
    return {"emb_dropout": point["dropout"]} if "dropout" in point else {}


# Not causal (its filter mixes all positions): trained on one target per example, at the last position.
SPEC = ModelSpec(
    "bsarec",
    BSARec,
    BSARecConfig,
    BSARec.build,
    examples=("prefixes",),
    features=True,
    estimate_memory=True,
    search_space=SEARCH_SPACE,
    search_derived=_searched_dropout,
)
