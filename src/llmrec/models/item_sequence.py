"""The part every item-sequence model shares: the item table, the losses, scoring and persistence.

A model file (`llmrec.models.next_item_lm`, `llmrec.models.bsarec`, ...) subclasses `ItemSequenceModel` with
its own blocks and `encode`, and `ItemSequenceConfig` with its own fields. What it gets:

- the input side (`embed`): item id embeddings, optional item-side features (attribute ids averaged, frozen
  text embeddings projected) added at real positions, learned or rotary positions (`llmrec.models.layers`);
- the output side: a (tied) item table with the same features, so an item never seen in training still has a
  meaningful output embedding (cold-start items), cached at inference;
- the losses over the whole catalogue: full softmax (chunked, optionally without each example's seen items),
  a shared-negative sampled softmax with log-Q correction, SASRec's binary cross-entropy with one negative;
- `score` / `generate`, the capability methods (`token_input_module`, `onnx_module`) and persistence
  (config.json + model.safetensors, no pickle).

State-dict keys are those of the next-item LM's artifacts since 0.1 (``item_emb``, ``pos_emb``, ``attr_emb``,
``text_proj``, ``out_emb``, the buffers ``item_attributes``, ``item_text``, ``log_q``), so old artifacts load.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from llmrec.config import MAX_SEQ_LEN, check_range
from llmrec.models.layers import Rope, ScoreModule, positions, prefix_items, rotary, standardise_rows
from llmrec.models.spec import DatasetMeta
from llmrec.types import PAD_ID, SeqBatch

__all__ = ["LOSSES", "ItemSequenceConfig", "ItemSequenceModel", "RecOutput"]

LOSSES = ("ce", "sampled", "bce")


@dataclass(frozen=True, kw_only=True)
class ItemSequenceConfig:
    """Settings every item-sequence model shares (sizes, dropouts, positions, item features, the loss); a model
    file subclasses it to add its own fields."""

    n_items: int  # catalogue size; item ids are 1..n_items, 0 is padding (written by data preparation)
    max_seq_len: int = 50  # longest history the model reads (most recent items kept)
    d_model: int = 64  # width
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads; d_model % n_heads == 0
    d_ff: int = 256  # feed-forward width
    dropout: float = 0.4  # dropout in blocks (0.4 was best on beauty validation among 0.3/0.4/0.5)
    emb_dropout: float = 0.4  # dropout on the input embeddings (sparse data overfits ids fast)
    pos_encoding: str = "learned"  # "learned" | "rotary" | "none"
    pos_origin: str = "start"  # positions count from the oldest item ("start") or back from the newest ("end")
    tie_weights: bool = True  # output item table = input item table
    loss: str = "ce"  # "ce" full softmax | "sampled" shared-negative softmax with log-Q | "bce" SASRec, 1 negative
    n_negatives: int = 256  # shared negatives per batch for loss="sampled"
    label_smoothing: float = 0.0  # for loss="ce"
    loss_exclude_seen: bool = False  # loss="ce": each example's history items leave its softmax (the target stays)
    ce_chunk_size: int = 2048  # loss="ce" in training: positions per softmax chunk when a batch has more (memory cap)
    n_attributes: int = 0  # attribute vocabulary size (0 = no attribute feature); ids 1..n_attributes
    max_item_attributes: int = 0  # attributes per item (padded with 0)
    text_dim: int = 0  # dimension of frozen item text embeddings (0 = none)

    def __post_init__(self) -> None:
        """Range of every field (`llmrec.config.check_range`): sizes from 1 up to bounds far above any published
        sequential recommender (max_seq_len <= MAX_SEQ_LEN = 16384, d_model <= 16384, n_layers and n_heads
        <= 256, d_ff <= 65536), dropouts and label smoothing in [0, 1); whether a run fits the machine is the
        training memory check's to say (`llmrec.training.memory`)."""
        check_range("n_items", self.n_items, 1, 2**31 - 1)
        check_range("max_seq_len", self.max_seq_len, 1, MAX_SEQ_LEN)
        check_range("d_model", self.d_model, 1, 16384)
        check_range("n_layers", self.n_layers, 1, 256)
        check_range("n_heads", self.n_heads, 1, 256)
        check_range("d_ff", self.d_ff, 1, 65536)
        for key in ("dropout", "emb_dropout", "label_smoothing"):
            check_range(key, getattr(self, key), 0.0, 1.0, high_open=True)
        check_range("n_negatives", self.n_negatives, 1, 1 << 20)
        check_range("ce_chunk_size", self.ce_chunk_size, 1, 1 << 24)
        check_range("n_attributes", self.n_attributes, 0, 2**31 - 1)
        check_range("max_item_attributes", self.max_item_attributes, 0, 1024)
        check_range("text_dim", self.text_dim, 0, 65536)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.pos_encoding not in ("learned", "rotary", "none"):
            raise ValueError(f"pos_encoding must be learned|rotary|none, got {self.pos_encoding!r}")
        if self.pos_origin not in ("start", "end"):
            raise ValueError(f"pos_origin must be start|end, got {self.pos_origin!r}")
        if self.pos_encoding == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ValueError("rotary positions need an even head dimension")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss_exclude_seen and (self.loss != "ce" or self.label_smoothing):
            raise ValueError("loss_exclude_seen needs loss='ce' without label_smoothing")
        if (self.n_attributes > 0) != (self.max_item_attributes > 0):
            raise ValueError("n_attributes and max_item_attributes must both be set or both be 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class RecOutput:
    # [N, V+1] at the real positions (training) or [B, V+1] at the last position; None when the training loss
    # was computed in chunks (the full [N, V+1] matrix is never built then)
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # [B, L, D] final hidden states ([B, 1, D]: the last position only)


def _tracing() -> bool:
    """torch.export / torch.compile is tracing (ONNX export): no cache, whose key reads storage pointers."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting())


class _TableCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of the scores ``hs @ items.T`` against targets ``y`` (0-based), with label
    smoothing ``eps`` over the V classes: the value and gradients of
    ``F.cross_entropy(hs @ items.T, y, label_smoothing=eps)``.

    Written by hand for the training step's largest tensor, the [N, V] scores: torch's cross-entropy writes a
    log-softmax copy in forward and, in backward, a zero-filled one-hot gradient and the log-softmax gradient (three
    more passes over [N, V]); here forward keeps the scores and their log-sum-exp, and backward turns the scores
    into softmax − target in place (one pass) before the two products. About 9% of a TV-Rec epoch on Beauty.
    Under autocast it computes in float32, as torch's cross-entropy does (a bf16 [N, V] softmax loses the target's
    probability); autograd casts each gradient back to its input's dtype.
    """

    @staticmethod
    def forward(ctx: Any, hs: torch.Tensor, items: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        dtype = torch.promote_types(torch.promote_types(hs.dtype, items.dtype), torch.float32)
        with torch.autocast(hs.device.type, enabled=False):
            return _TableCrossEntropy._forward(ctx, hs.to(dtype), items.to(dtype), y, eps)

    @staticmethod
    def _forward(ctx: Any, hs: torch.Tensor, items: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        scores = hs @ items.T  # [N, V]
        lse = torch.logsumexp(scores, 1)  # [N]
        picked = scores.gather(1, y.unsqueeze(1)).squeeze(1)  # [N]
        loss = lse - picked if eps == 0 else lse - (1 - eps) * picked - eps * scores.mean(1)
        ctx.save_for_backward(hs, items, y, scores, lse)
        ctx.eps = eps
        return loss.mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hs, items, y, scores, lse = ctx.saved_tensors  # float32 or wider (forward)
        eps = ctx.eps
        grad = grad.to(scores.dtype)
        n, v = scores.shape
        d = scores.sub_(lse.unsqueeze(1)).exp_()  # softmax, in the saved scores' memory (backward runs once)
        if eps:
            d.sub_(eps / v)
        d[torch.arange(n, device=d.device), y] -= 1 - eps
        d.mul_(grad / n)
        return (d @ items if ctx.needs_input_grad[0] else None), (d.T @ hs if ctx.needs_input_grad[1] else None), None, None


class ItemSequenceModel(nn.Module):
    """Item tokens in, a (tied) softmax over the catalogue out; a subclass builds ``blocks`` and writes `encode`."""

    # buffers (register_buffer): declared for the type checker, which otherwise sees `Tensor | Module`
    item_attributes: torch.Tensor
    item_text: torch.Tensor
    item_rare: torch.Tensor  # only with item text and a config's text_rare_weight > 0
    log_q: torch.Tensor

    model_type: str  # llmrec.models.MODELS key and config.json "model_type" (set by each subclass)
    config_class: ClassVar[type[ItemSequenceConfig]]  # what from_pretrained reads config.json into
    config: ItemSequenceConfig
    blocks: nn.ModuleList  # the subclass's blocks (the first one's input is the token representation)
    # True when only the last position may be trained as a target (an encoder that is not causal, so position t
    # sees the items after it; or weights tied to the newest item's slot): the loss reads the last position only,
    # and the spec trains it on prefixes (one target per example)
    last_position_only: ClassVar[bool] = False

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len

    @property
    def n_items(self) -> int:
        return self.config.n_items

    def __init__(self, config: ItemSequenceConfig) -> None:
        super().__init__()
        c = self.config = config
        V = c.n_items + 1
        self.item_emb = nn.Embedding(V, c.d_model, padding_idx=PAD_ID)
        self.pos_emb = nn.Embedding(c.max_seq_len, c.d_model) if c.pos_encoding == "learned" else None
        if c.n_attributes:
            self.attr_emb = nn.Embedding(c.n_attributes + 1, c.d_model, padding_idx=0)
            self.register_buffer("item_attributes", torch.zeros(V, c.max_item_attributes, dtype=torch.long))
        if c.text_dim:
            self.text_proj = nn.Linear(c.text_dim, c.d_model, bias=False)
            self.register_buffer("item_text", torch.zeros(V, c.text_dim))
            if float(getattr(c, "text_rare_weight", 0.0)):  # the long-tail items of the title term (set_long_tail)
                self.register_buffer("item_rare", torch.zeros(V))
        # The proposal distribution of loss="sampled" (uniform until set_item_popularity is called).
        log_q = torch.full((V,), -math.log(c.n_items))
        log_q[PAD_ID] = -1e4  # PAD is never a negative (as in set_item_popularity)
        self.register_buffer("log_q", log_q)
        self.emb_drop: nn.Module = nn.Dropout(c.emb_dropout)

    def _finish_init(self) -> None:
        """Called by a subclass's ``__init__`` after it has built its blocks: the untied output table (registered
        last, so the modules and their seeded initialisation keep the order of older versions) and the weights'
        initialisation."""
        c = self.config
        self.out_emb = None if c.tie_weights else nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD_ID)
        self._memos: dict[str, tuple[tuple[tuple[int, int, str], ...], torch.Tensor]] = {}  # `_memo`
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    @classmethod
    def build(cls, config: ItemSequenceConfig, meta: DatasetMeta) -> Self:
        """A fresh model of `config` with `meta`'s item features (and popularity: loss="sampled"'s proposal)."""
        model = cls(config)
        if meta.attributes is not None and config.n_attributes:
            model.set_item_attributes(meta.attributes)
        if meta.text is not None and config.text_dim:
            model.set_item_text(meta.text)
        if meta.popularity is not None:
            counts = torch.from_numpy(meta.popularity)
            if config.loss == "sampled":
                model.set_item_popularity(counts)
            if hasattr(model, "item_rare"):
                model.set_long_tail(counts)
        return model

    # ---- item features ------------------------------------------------------------------------
    def set_item_attributes(self, attributes: torch.Tensor) -> None:
        """attributes: [V+1, A] attribute ids per item (0 = none)."""
        self.item_attributes.copy_(attributes)

    def set_item_text(self, text: torch.Tensor) -> None:
        """text: [V+1, text_dim] frozen text embeddings (row 0 = padding, zeros)."""
        self.item_text.copy_(text)

    def set_item_popularity(self, counts: torch.Tensor, alpha: float = 0.75) -> None:
        """Proposal for the sampled softmax: q ∝ (count + 1)^alpha over items 1..V (word2vec-style smoothing)."""
        w = (counts.double() + 1.0) ** alpha
        w[PAD_ID] = 0.0
        self.log_q.copy_(torch.log(w / w.sum()).float().clamp_min(-1e4))

    def set_long_tail(self, counts: torch.Tensor) -> None:
        """counts [V+1]: training events per item -> the long-tail items of the title term (at most the config's
        ``text_rare_count``), which get ``text_rare_weight`` more of it; a model without that weight has none."""
        if not hasattr(self, "item_rare"):
            raise ValueError("this model has no long-tail title weight (model.text_rare_weight = 0 or no item text)")
        rare = (counts <= int(getattr(self.config, "text_rare_count", 5))).float()
        rare[PAD_ID] = 0.0
        self.item_rare.copy_(rare)

    def _item_features(self, ids: torch.Tensor) -> torch.Tensor:
        """Feature part of the item representation for ids of any shape [...] -> [..., D]."""
        out = torch.zeros(*ids.shape, self.config.d_model, device=ids.device)
        if self.config.n_attributes:
            a = self.item_attributes[ids]  # [..., A]
            e = self.attr_emb(a)  # [..., A, D]
            n = (a > 0).sum(-1, keepdim=True).clamp_min(1)  # [..., 1]
            out = out + e.sum(-2) / n
        if self.config.text_dim:
            out = out + self.text_proj(self.item_text[ids])
        return out

    def _has_features(self) -> bool:
        return bool(self.config.n_attributes or self.config.text_dim)

    def _memo(self, name: str, inputs: list[torch.Tensor], build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`build()`, kept under `name` until one of `inputs` changes (its storage, version counter or device)."""
        key = tuple((t.data_ptr(), t._version, str(t.device)) for t in inputs)
        held = self._memos.get(name)
        if held is None or held[0] != key:
            held = self._memos[name] = (key, build())
        return held[1]

    def train(self, mode: bool = True) -> Self:
        """`nn.Module.train`, dropping what `_memo` keeps: a fused optimizer updates the weights in place without
        bumping their version counters, so the keys alone would not see a training epoch."""
        self._memos.clear()
        return super().train(mode)

    def item_table(self) -> torch.Tensor:
        """[V+1, D] output embedding of every item (row 0 = padding).

        At inference (eval mode, no grad) the table is cached until a weight or feature tensor changes (keyed by
        tensor storage and version counters): with attribute features, rebuilding it was ~80% of a one-user forward.
        """
        if self.training or torch.is_grad_enabled() or _tracing():
            return self._build_item_table()
        return self._memo("table", self._table_inputs(), self._build_item_table)

    @torch.no_grad()
    def set_item_rows(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        """Make item_table()[items] == vectors [M, D]: the output id rows take the vectors less the items' feature
        part (cold-item mapping, `llmrec.models.cold_items`); with tied weights also their input embedding."""
        features = self._item_features(items) if self._has_features() else torch.zeros_like(vectors)
        weight = self.item_emb.weight if self.out_emb is None else self.out_emb.weight
        weight[items] = (vectors - features).to(weight.dtype)  # in place
        self._memos.pop("table", None)

    def _table_inputs(self) -> list[torch.Tensor]:
        """The tensors `_build_item_table` reads (the cache key: walking every parameter cost 0.2 ms a request)."""
        ts = [self.item_emb.weight if self.out_emb is None else self.out_emb.weight]
        if self.config.n_attributes:
            ts += [self.attr_emb.weight, self.item_attributes]
        if self.config.text_dim:
            ts += [self.text_proj.weight, self.item_text]
        return ts

    def _build_item_table(self) -> torch.Tensor:
        w = self.item_emb.weight if self.out_emb is None else self.out_emb.weight
        if not self.training and self._has_features():
            return w + self._item_features(torch.arange(w.shape[0], device=w.device))
        if self.config.n_attributes:  # training: `_item_features`' attribute mean as one sparse product
            w = w + self._attribute_matrix() @ self.attr_emb.weight
        if self.config.text_dim:
            w = w + self.text_proj(self.item_text)
        return w

    def _attribute_matrix(self) -> torch.Tensor:
        """[V+1, n_attributes+1] sparse (CSR): row i holds 1 / n_i at each of item i's n_i attributes, so that its
        product with ``attr_emb.weight`` is `_item_features`' attribute mean for every item at once.

        Used for the whole table in training, where gathering [V+1, A, D] attribute rows and scattering their
        gradient back was about a quarter of a TV-Rec step on Beauty (A = 6); the sparse product and its gradient
        cost about a quarter of that. Cached until ``item_attributes`` changes (keyed like the table cache).
        Inference keeps the gather (cached, and what the ONNX exporter traces).
        """
        a = self.item_attributes

        def build() -> torch.Tensor:
            real = a > 0
            count = real.sum(1, keepdim=True).clamp_min(1)
            rows = torch.arange(a.shape[0], device=a.device).unsqueeze(1).expand_as(a)[real]
            values = (1.0 / count).expand_as(a)[real].to(self.attr_emb.weight.dtype)
            shape = (a.shape[0], self.attr_emb.num_embeddings)
            coo = torch.sparse_coo_tensor(torch.stack([rows, a[real]]), values, shape, check_invariants=False)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
                return coo.coalesce().to_sparse_csr()

        return self._memo("attributes", [a], build)

    # ---- encoder ------------------------------------------------------------------------------
    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded -> hidden states [B, L, D]; the last position reads the whole history."""
        raise NotImplementedError

    def encode_last(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded -> [B, D], the last position's hidden state (what scoring and a
        ``last_position_only`` loss read); an encoder that can skip the other positions' work overrides it."""
        return self.encode(item_ids)[:, -1]

    def embed(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The input side every encoder starts from: item_ids [B, L] left-padded, truncated to max_seq_len ->
        (x [B, L, D] the item embeddings + item features at real positions + learned positions (before dropout),
        is_real [B, L], pos [B, L] the position ids of `llmrec.models.layers.positions`)."""
        c = self.config
        item_ids = item_ids[:, -c.max_seq_len :]
        is_real = item_ids != PAD_ID  # [B, L]
        x = self.item_emb(item_ids)  # [B, L, D]
        if self._has_features():
            x = x + self._item_features(item_ids) * is_real.unsqueeze(-1)
        pos = positions(is_real, c.pos_origin)  # [B, L]
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)
        return x, is_real, pos

    def rope(self, pos: torch.Tensor) -> Rope | None:
        """Rotary angles for position ids [B, L] when pos_encoding = "rotary", else None."""
        c = self.config
        return rotary(pos, c.d_model // c.n_heads) if c.pos_encoding == "rotary" else None

    # ---- scoring with item text ------------------------------------------------------------------
    @property
    def blends_text(self) -> bool:
        """Its scores add the title similarity to the newest history item (item text, and ``text_blend`` > 0 or a
        long-tail weight): they are then no plain dot product of `encode_last` and `item_table` (approximate
        retrieval does not apply)."""
        return bool((self._text_blend() or hasattr(self, "item_rare")) and self.config.text_dim)

    def _text_blend(self) -> float:
        """The config's ``text_blend`` (a field of the model files that declare it, e.g. TV-Rec's), else 0."""
        return float(getattr(self.config, "text_blend", 0.0))

    def _text_weights(self) -> torch.Tensor | float:
        """The title term's weight: ``text_blend``, plus ``text_rare_weight`` on the long-tail items ([V+1])."""
        if not hasattr(self, "item_rare"):
            return self._text_blend()
        return self._text_blend() + float(getattr(self.config, "text_rare_weight", 0.0)) * self.item_rare

    def blend_recent_text(self, scores: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """scores [B, V+1] of left-padded histories item_ids [B, L] -> z(scores) + text_blend · z(cos(text of the
        newest history item, text of each item)), z standardising each row over items 1..V.

        The frozen title embeddings still know something the trained model does not: on Beauty (TV-Rec with MiniLM
        titles, strict, 3 seeds) text_blend 0.1, chosen on validation, raised test NDCG@10 from 0.0639 to 0.0660 and
        the long-tail targets' by 12% (docs/benchmarks.md). The history's own items get no title lift (their
        similarity counts as 0: with seen items kept, the newest item would otherwise match itself); an empty
        history adds nothing. The standard deviations are the population ones (a one-item catalogue gives 0).
        Long-tail items (at most ``text_rare_count`` training events) get ``text_rare_weight`` more: their id
        embeddings learned least, their titles say as much as anyone's. On Beauty (3 seeds, validation) 0.1 more
        raised the long-tail targets' NDCG@10 by 24-28% for 0.2% overall (docs/benchmarks.md).
        """
        newest = item_ids[:, -1]  # [B]: left padding puts the newest item last (0: an empty history)
        unit = self._unit_text()  # [V+1, E]
        sim = unit[newest] @ unit.T  # [B, V+1] cosine (0 against the padding row and for an empty history)
        sim = sim.scatter(1, item_ids, 0.0)  # history items get no title lift (the newest would match itself)
        return standardise_rows(scores) + self._text_weights() * standardise_rows(sim)

    def _unit_text(self) -> torch.Tensor:
        """``item_text`` with unit rows (the padding row stays 0), cached at inference (as `item_table`) until the
        buffer changes."""

        def build() -> torch.Tensor:
            return F.normalize(self.item_text.float(), dim=1)

        if self.training or torch.is_grad_enabled() or _tracing():
            return build()
        return self._memo("unit_text", [self.item_text], build)

    # ---- training -----------------------------------------------------------------------------
    def forward(self, batch: SeqBatch) -> RecOutput:
        """Scores at the last position (no targets) or the training loss at the target positions; a model with
        ``last_position_only`` keeps only each row's last target (its earlier positions have seen their targets)."""
        if batch.targets is None:
            h = self.encode_last(batch.item_ids).unsqueeze(1)  # [B, 1, D]
            logits = h[:, -1] @ self.item_table().T  # [B, V+1]
            if self.blends_text:
                logits = self.blend_recent_text(logits, batch.item_ids)
            logits[:, PAD_ID] = float("-inf")
            return RecOutput(logits=logits, hidden=h)
        if self.last_position_only:
            h = self.encode_last(batch.item_ids).unsqueeze(1)  # [B, 1, D]
            width = min(batch.item_ids.shape[1], self.config.max_seq_len)
            real = torch.zeros(batch.targets.shape[0], width, dtype=torch.bool, device=batch.targets.device)
            real[:, -1] = batch.targets[:, -1] != PAD_ID  # [B, L]: each row's last target only
            hs = h[:, -1][real[:, -1]]  # [N, D]
            y = batch.targets[:, -1][real[:, -1]]  # [N]
        else:
            h = self.encode(batch.item_ids)  # [B, L, D]
            width = h.shape[1]
            real = batch.targets[:, -width:] != PAD_ID  # [B, L]
            hs = h[real]  # [N, D]: only real positions pay for the output layer
            y = batch.targets[:, -width:][real]  # [N]
        table = self.item_table()  # [V+1, D]
        if self.config.loss == "ce" and self.config.loss_exclude_seen:
            seen = prefix_items(batch.item_ids[:, -width:], real)  # [N, L]
            return RecOutput(logits=None, loss=self._seen_masked_ce(hs, y, table, seen), hidden=h)
        if self.config.loss == "ce":
            # PAD is not a class: the softmax (and label smoothing) run over the real items 1..V only. Multiplying
            # by table[1:] directly avoids writing -inf into, and slicing, the largest tensor of the step.
            if self.training and hs.shape[0] > self.config.ce_chunk_size:
                return RecOutput(logits=None, loss=self._chunked_ce(hs, y, table[1:]), hidden=h)
            if self.training and torch.is_grad_enabled():  # nothing reads training scores: no [N, V + 1] copy
                loss = _TableCrossEntropy.apply(hs, table[1:], y - 1, self.config.label_smoothing)  # type: ignore[no-untyped-call]
                return RecOutput(logits=None, loss=loss, hidden=h)
            item_logits = hs @ table[1:].T  # [N, V]
            loss = F.cross_entropy(item_logits, y - 1, label_smoothing=self.config.label_smoothing)
            logits = item_logits.new_empty(item_logits.shape[0], item_logits.shape[1] + 1)  # [N, V+1]
            logits[:, PAD_ID] = float("-inf")
            logits[:, 1:] = item_logits.detach()
        elif self.config.loss == "sampled":
            logits, loss = self._sampled_softmax(hs, y, table)
        else:
            logits, loss = self._bce_one_negative(hs, y, table)
        return RecOutput(logits=logits, loss=loss, hidden=h)

    def _chunked_ce(self, hs: torch.Tensor, y: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy over position chunks, each recomputed in backward (activation checkpointing).

        A batch of long sequences has ~10k real positions; their [N, V] logits, softmax and gradient would take
        GBs at once. Per chunk only [chunk, V] lives, for one extra matmul in backward. Same value as unchunked.
        """

        def chunk_loss(h: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(h @ w.T, t - 1, label_smoothing=self.config.label_smoothing, reduction="sum")

        total = hs.new_zeros(())
        size = self.config.ce_chunk_size
        for h, t in zip(
            torch.tensor_split(hs, list(range(size, len(hs), size))),
            torch.tensor_split(y, list(range(size, len(y), size))),
            strict=True,
        ):
            total = total + checkpoint(chunk_loss, h, t, items, use_reentrant=False)
        return total / hs.shape[0]

    def _seen_masked_ce(self, hs: torch.Tensor, y: torch.Tensor, table: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """Cross-entropy whose softmax leaves out the items each example has already seen (the target excepted).

        Evaluation and serving with seen items excluded never rank a history item, so the model need not spend
        capacity pushing them down; this trains the ranking it is judged on. hs [N, D], y [N], table [V+1, D],
        seen [N, L] item ids of each example's history (0 = none). Chunked and recomputed in backward like
        `_chunked_ce`.
        """

        def chunk_loss(h: torch.Tensor, t: torch.Tensor, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            logits = h @ w.T  # [C, V+1]
            target = logits.gather(1, t.unsqueeze(1))  # [C, 1]
            s = F.pad(s, (1, 0))  # [C, L+1]: column 0 (PAD) is never a class
            logits = logits.scatter(1, s, float("-inf")).scatter(1, t.unsqueeze(1), target)
            return F.cross_entropy(logits, t, reduction="sum")

        total = hs.new_zeros(())
        size = self.config.ce_chunk_size
        cuts = list(range(size, len(hs), size))
        for h, t, s in zip(
            torch.tensor_split(hs, cuts), torch.tensor_split(y, cuts), torch.tensor_split(seen, cuts), strict=True
        ):
            total = total + checkpoint(chunk_loss, h, t, s, table, use_reentrant=False)
        return total / hs.shape[0]

    def _sampled_softmax(self, hs: torch.Tensor, y: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over [target, K shared negatives], negatives ~ q with log-Q correction (Bengio & Senécal 2008)."""
        K = self.config.n_negatives
        neg = torch.multinomial(self.log_q.exp(), K, replacement=True)  # [K]
        pos_logit = (hs * table[y]).sum(-1, keepdim=True) - self.log_q[y].unsqueeze(-1)  # [N, 1]
        neg_logit = hs @ table[neg].T - self.log_q[neg]  # [N, K]
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), float("-inf"))  # accidental hits
        logits = torch.cat([pos_logit, neg_logit], dim=1)  # [N, 1+K]
        return logits, F.cross_entropy(logits, torch.zeros_like(y))

    def _bce_one_negative(self, hs: torch.Tensor, y: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SASRec's loss: −log σ(s_pos) − log(1 − σ(s_neg)) with one uniform negative per position."""
        neg = torch.randint(1, self.config.n_items + 1, y.shape, device=y.device)  # [N]
        neg = torch.where(neg == y, neg % self.config.n_items + 1, neg)  # never the target itself
        pos_logit = (hs * table[y]).sum(-1)  # [N]
        neg_logit = (hs * table[neg]).sum(-1)  # [N]
        loss = F.binary_cross_entropy_with_logits(
            torch.cat([pos_logit, neg_logit]), torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)])
        )
        return torch.stack([pos_logit, neg_logit], dim=1), loss

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] left-padded histories -> scores [B, V+1] for the next item (column 0 = -inf)."""
        logits = self.forward(SeqBatch(item_ids=item_ids)).logits
        assert logits is not None  # inference always builds the [B, V+1] scores
        return logits

    @torch.no_grad()
    def generate(self, item_ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k next items: (ids [B, K], scores [B, K]); never returns PAD."""
        scores = self.score(item_ids)
        top = scores.topk(min(k, self.config.n_items), dim=1)
        return top.indices, top.values

    # ---- capabilities (llmrec.models.base) -------------------------------------------------------
    def token_input_module(self) -> nn.Module | None:
        """The first block: its input is the [B, L, D] token representation (gradient × input hooks it)."""
        return self.blocks[0] if len(self.blocks) else None

    def onnx_module(self) -> nn.Module:
        """`score` as a module's forward, for torch's ONNX exporter."""
        return ScoreModule(self, self.score)

    # ---- persistence (safetensors + JSON, no pickle) -------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"model_type": self.model_type, **self.config.to_dict()}, indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Self:
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        cfg.pop("model_type", None)
        cfg.setdefault("pos_origin", "start")  # artifacts written before the option counted from the start
        if "text_blend" in {f.name for f in fields(cls.config_class)}:
            cfg.setdefault("text_blend", 0.0)  # artifacts written before the option scored without it
        if "text_rare_weight" in {f.name for f in fields(cls.config_class)}:
            cfg.setdefault("text_rare_weight", 0.0)  # (and without the long-tail weight)
        model = cls(cls.config_class.from_dict(cfg))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        model.eval()
        return model
