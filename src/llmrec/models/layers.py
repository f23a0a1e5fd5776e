"""Layers that model files compose: positions, rotary embeddings, masked multi-head attention, the pre-LN block.

Functions over the modules a model owns (its ``qkv`` and ``proj`` linears), so each model keeps its own
state-dict keys (old artifacts load) while the arithmetic is written once. Shapes: histories are left-padded,
``is_real`` [B, L] marks real items.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MaskDropout",
    "PreLNBlock",
    "Rope",
    "ScoreModule",
    "attend",
    "causal_padding_mask",
    "positions",
    "prefix_items",
    "rotary",
    "rotate",
]

Rope = tuple[torch.Tensor, torch.Tensor]


class ScoreModule(nn.Module):
    """A model's ``score`` as a module's forward: item_ids [B, L] -> scores [B, V+1] (what ONNX export traces)."""

    def __init__(self, model: nn.Module, score: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model  # registered, so the exporter sees its parameters
        self.score = score  # the model's bound `score`

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.score(item_ids)


class MaskDropout(nn.Module):
    """Inverted dropout (as `torch.nn.Dropout`) whose mask is cut from 16-bit slices of 64-bit random integers.

    In distribution the same as `nn.Dropout(p)` with p rounded to a multiple of 1/65536: each element is zeroed
    independently with probability p and the rest scaled by 1 / (1 − p). Written by hand because torch's CPU
    dropout draws its mask with `bernoulli_`, one random number per element: 35% of a TV-Rec training step on
    Beauty (batch 256 × 50 slots × 256 features, 2 threads), against about a tenth of that for the 64-bit draws,
    one per four elements, and a `masked_fill` (a bool mask multiplied in would cost as much as the draw). The
    random stream differs from `nn.Dropout`'s, so a run is reproducible with the same seed, not bit-equal to one
    trained with `nn.Dropout`.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self._cut = round(p * 65536)  # elements whose 16-bit draw (0..65535) is below this are dropped

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self._cut == 0:
            return x
        if self._cut >= 65536:
            return x * 0.0
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        draws = words.view(torch.int16)[:n].view(x.shape)  # uniform over -32768..32767
        drop = draws < self._cut - 32768
        return (x * (65536 / (65536 - self._cut))).masked_fill_(drop, 0.0)


def positions(is_real: torch.Tensor, origin: str) -> torch.Tensor:
    """is_real [B, L] (left padding) -> position ids [B, L] of the real items (padding gets a valid, unused id).

    origin "start": 0 at the oldest item of the (possibly truncated) history, so the newest item's id grows with
    the history's length. origin "end": 0 at the newest item, 1 at the one before, ... — the newest item always
    has the same id, as in SASRec's absolute positions over a left-padded window of fixed length.
    """
    real = is_real.long()
    if origin == "end":
        return (real.flip(1).cumsum(1).flip(1) - 1).clamp_min(0)  # [B, L]
    return (real.cumsum(1) - 1).clamp_min(0)  # [B, L]


def rotary(pos: torch.Tensor, head_dim: int) -> Rope:
    """pos [B, L] position ids -> (cos, sin), each [B, 1, L, head_dim/2] (RoFormer, Su et al. 2021)."""
    half = head_dim // 2
    inv = 1.0 / (10000 ** (torch.arange(0, half, device=pos.device).float() / half))
    ang = pos.float().unsqueeze(-1) * inv  # [B, L, Dh/2]
    return ang.cos().unsqueeze(1), ang.sin().unsqueeze(1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, Dh] rotated by the angles of `rotary` (pairs of the two halves of each head)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def causal_padding_mask(is_real: torch.Tensor) -> torch.Tensor:
    """is_real [B, L] -> [B, 1, L, L] True where query t may read key j: j <= t and j real; each position always
    sees itself, so no row is empty."""
    L = is_real.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=is_real.device).tril()  # [L, L]
    return (causal & is_real[:, None, None, :]) | torch.eye(L, dtype=torch.bool, device=is_real.device)


def attend(
    x: torch.Tensor,
    qkv: nn.Module,
    proj: nn.Module,
    n_heads: int,
    mask: torch.Tensor,
    rope: Rope | None,
    dropout_p: float,
) -> torch.Tensor:
    """Multi-head scaled dot-product attention of x [B, L, D] with the model's `qkv` (D -> 3D) and `proj` (D -> D)
    linears -> [B, L, D]; `mask` as `causal_padding_mask`, `rope` from `rotary` or None."""
    B, L, D = x.shape
    q, k, v = qkv(x).split(D, dim=-1)  # 3 x [B, L, D]
    q, k, v = (t.view(B, L, n_heads, D // n_heads).transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
    if rope is not None:
        q, k = rotate(q, *rope), rotate(k, *rope)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # [B, H, L, Dh]
    out: torch.Tensor = proj(y.transpose(1, 2).reshape(B, L, D))
    return out


class PreLNBlock(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)); x + MLP(LN(x)) with a GELU feed-forward (the next-item LM's)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        """x [B, L, D], mask as `causal_padding_mask`, rope from `rotary` or None -> [B, L, D]."""
        p = self.attn_dropout if self.training else 0.0
        y = attend(self.ln1(x), self.qkv, self.proj, self.n_heads, mask, rope, p)  # [B, L, D]
        x = x + self.drop(y)
        out: torch.Tensor = x + self.drop(self.mlp(self.ln2(x)))
        return out


def prefix_items(item_ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """item_ids [B, L], real [B, L] target positions -> [N, L]: for each target position t (row-major, as
    ``h[real]``) the items at positions <= t of its row, 0 elsewhere (0 is PAD, never an item): what each training
    example has already seen (a seen-masked softmax leaves them out)."""
    B, L = item_ids.shape
    upto = torch.ones(L, L, dtype=torch.bool, device=item_ids.device).tril()  # [L(t), L(j)]: j <= t
    rows = item_ids.unsqueeze(1).expand(B, L, L) * upto  # [B, L(t), L(j)]
    return rows[real]  # [N, L]


def standardise_rows(x: torch.Tensor) -> torch.Tensor:
    """Per row z-score over the finite entries of columns 1..V (population standard deviation); column 0 and −inf
    entries become −inf; a constant row becomes 0. [B, V+1] (a query blend, a model's title term)."""
    x = x.double()
    finite = torch.isfinite(x)
    finite[:, 0] = False
    n = finite.sum(1, keepdim=True).clamp_min(1)  # [B, 1]
    v = torch.where(finite, x, 0.0)
    mean = v.sum(1, keepdim=True) / n
    std = (torch.where(finite, x - mean, 0.0).pow(2).sum(1, keepdim=True) / n).sqrt().clamp_min(1e-12)
    return torch.where(finite, (x - mean) / std, float("-inf")).float()
