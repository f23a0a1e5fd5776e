"""A sentence-transformers BERT encoder (Transformer -> mean pooling -> normalise) in plain torch.

Why: importing sentence-transformers takes 5-18 s on two busy cores (it pulls in transformers, scikit-learn,
scipy ...), and ``from transformers import BertModel`` alone 2-7 s, while the model (all-MiniLM-L6-v2: 6 layers,
384 wide) encodes a query in milliseconds. This module needs only torch, safetensors and tokenizers, so a
command-line query costs the weights (90 MB, a fraction of a second) and one forward pass.

It reads the same directory as sentence-transformers and gives the same vectors (within float rounding; tested
against `SentenceTransformer.encode`). `load_bert_encoder` returns None for any directory it does not read exactly
(another architecture, pooling or module list); the caller then uses sentence-transformers itself.

BERT: Devlin et al., NAACL 2019 (https://arxiv.org/abs/1810.04805); the layer below follows Hugging Face's
``BertModel`` (post-norm blocks, exact-erf GELU, absolute positions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["BertSentenceEncoder", "load_bert_encoder"]

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _supported(path: Path) -> dict[str, Any] | None:
    """The settings of a directory this module reads exactly, or None (then sentence-transformers is used)."""
    try:
        modules = [m["type"] for m in _read(path / "modules.json")]
        if modules not in ([_TRANSFORMER, _POOLING, _NORMALIZE], [_TRANSFORMER, _POOLING]):
            return None
        pooling_dir = next(m["path"] for m in _read(path / "modules.json") if m["type"] == _POOLING)
        pooling = _read(path / pooling_dir / "config.json")
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
        config = _read(path / "config.json")
        st = _read(path / "sentence_bert_config.json") if (path / "sentence_bert_config.json").is_file() else {}
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None
    if modes != {"pooling_mode_mean_tokens"} or pooling.get("include_prompt", True) is not True:
        return None
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        return None
    if config.get("position_embedding_type", "absolute") != "absolute" or st.get("do_lower_case"):
        return None
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        return None
    return {
        "config": config,
        "max_seq_length": int(st.get("max_seq_length") or config.get("max_position_embeddings", 512)),
        "normalize": _NORMALIZE in modules,
    }


def _model(config: dict[str, Any], weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Hugging Face BertModel's encoder as plain torch modules, weights loaded strictly (the pooler is unused)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    D, H, F_ = int(config["hidden_size"]), int(config["num_attention_heads"]), int(config["intermediate_size"])
    eps = float(config.get("layer_norm_eps", 1e-12))

    def table(name: str) -> nn.Embedding:
        # from the weights, not randomly initialised first (drawing the 30k x 384 word table costs 0.4 s)
        w = weights[f"embeddings.{name}.weight"]  # [n, D]
        return nn.Embedding(w.shape[0], w.shape[1], _weight=w, _freeze=True)  # what Embedding.from_pretrained does

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = nn.ModuleDict({n: nn.Linear(D, D) for n in ("query", "key", "value")})
            self.output = nn.ModuleDict({"dense": nn.Linear(D, D), "LayerNorm": nn.LayerNorm(D, eps=eps)})

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            B, L, _ = x.shape
            q, k, v = (self.self[n](x).view(B, L, H, D // H).transpose(1, 2) for n in ("query", "key", "value"))  # [B, H, L, D/H]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, L, D/H]
            a = a.transpose(1, 2).reshape(B, L, D)  # [B, L, D]
            y: torch.Tensor = self.output["LayerNorm"](self.output["dense"](a) + x)
            return y

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = nn.ModuleDict({"dense": nn.Linear(D, F_)})
            self.output = nn.ModuleDict({"dense": nn.Linear(F_, D), "LayerNorm": nn.LayerNorm(D, eps=eps)})

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = self.attention(x, mask)
            h = F.gelu(self.intermediate["dense"](x))  # [B, L, 4D], exact erf GELU as BERT's "gelu"
            y: torch.Tensor = self.output["LayerNorm"](self.output["dense"](h) + x)
            return y

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleDict(
                {
                    "word_embeddings": table("word_embeddings"),
                    "position_embeddings": table("position_embeddings"),
                    "token_type_embeddings": table("token_type_embeddings"),
                    "LayerNorm": nn.LayerNorm(D, eps=eps),
                }
            )
            self.encoder = nn.ModuleDict({"layer": nn.ModuleList(Layer() for _ in range(int(config["num_hidden_layers"])))})

        def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
            e = self.embeddings
            pos = torch.arange(ids.shape[1], device=ids.device)
            x = e["word_embeddings"](ids) + e["position_embeddings"](pos) + e["token_type_embeddings"](torch.zeros_like(ids))
            h: torch.Tensor = e["LayerNorm"](x)  # [B, L, D]
            mask = keep[:, None, None, :]  # [B, 1, 1, L]: padding is never attended to
            for layer in self.encoder.get_submodule("layer").children():
                h = layer(h, mask)
            return h  # [B, L, D]

    model = Bert()
    state = {k: v for k, v in weights.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    model.load_state_dict(state, strict=True)
    return model.eval()


class BertSentenceEncoder:
    """Texts -> [N, D] float32 sentence vectors (mean of the token states, L2-normalised when the model says so)."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.dim = int(settings["config"]["hidden_size"])
        self.normalize = bool(settings["normalize"])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(settings["max_seq_length"])
        self.model = _model(settings["config"], load_file(str(path / "model.safetensors")))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        out: list[np.ndarray] = []
        for s in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch(list(texts[s : s + batch_size]))
            L = max(len(e.ids) for e in enc)
            ids = torch.zeros(len(enc), L, dtype=torch.long)  # [B, L], 0 = [PAD]
            keep = torch.zeros(len(enc), L, dtype=torch.bool)  # [B, L]
            for i, e in enumerate(enc):
                ids[i, : len(e.ids)] = torch.tensor(e.ids)
                keep[i, : len(e.ids)] = True
            with torch.inference_mode():
                h = self.model(ids, keep)  # [B, L, D]
                w = keep.unsqueeze(-1).float()  # [B, L, 1]
                v = (h * w).sum(1) / w.sum(1).clamp_min(1e-9)  # [B, D]: mean over real tokens
                if self.normalize:
                    v = F.normalize(v, dim=-1)
            out.append(v.numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)  # [N, D]


def load_bert_encoder(path: str | Path) -> BertSentenceEncoder | None:
    """The plain-torch encoder of a sentence-transformers directory, or None when it is not one this module reads
    exactly (then load it with sentence-transformers)."""
    path = Path(path)
    settings = _supported(path)
    return None if settings is None else BertSentenceEncoder(path, settings)
