"""Generative retrieval: a T5 encoder-decoder that reads a history as semantic-id tokens and writes the next item's id.

TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023,
https://arxiv.org/abs/2305.05065): every item is a short tuple of codes (c_1, ..., c_L, d) from residual
quantisation of its text embedding (`llmrec.index.semantic_ids`); a history is the concatenation of its items'
codes, and the model is trained with cross-entropy to write the next item's codes. Recommendation is beam search
constrained by the trie of valid ids, so every returned sequence is a real item, in beam-score order.

Two ways to get the T5:
- from scratch (`T5SemanticRecommender(config, semantic_ids)`): a small Hugging Face `T5ForConditionalGeneration`
  over a vocabulary of code tokens only (token for (level, code), plus pad / eos / bos);
- from a pretrained T5 checkpoint in a local directory (`T5SemanticRecommender.from_t5_checkpoint`): one new token
  ``<c{level}_{code}>`` per code is added to its tokenizer and embeddings, and the history is written as a
  P5-style prompt (Geng et al., RecSys 2022, https://arxiv.org/abs/2203.13366)
  ``User history: <c0_3><c1_7><c2_1><c3_0>, <c0_5>... . Next item:``.

Differences from TIGER: residual k-means codes instead of an RQ-VAE; T5 v1.0 blocks of Hugging Face (ReLU
feed-forward, relative position buckets) instead of the paper's exact sizes; beams are scored by the model's
unconstrained log-probabilities restricted to valid paths (the mask removes invalid tokens, it does not
renormalise). Cold items (never a training target) get little probability; with `cold_weight` > 0 every cold item
joins the beams with its exact log-probability + log(cold_weight), an offset chosen on validation (TIGER lets cold
items share a generated item's prefix instead: docs/generative-retrieval.md compares the two on ml-100k).

Scores for full-ranking evaluation (`score`): the items of the beams get their beam log-probability, every other
item -inf, so an item outside the beams counts as unranked (rank = n_items under pessimistic ties).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, T5Config, T5ForConditionalGeneration

from llmrec.config import MAX_SEQ_LEN, build, check_range
from llmrec.data.sequences import prefix_windows
from llmrec.index.semantic_ids import CodeTrie, SemanticIds
from llmrec.models.spec import ModelSpec
from llmrec.types import PAD_ID, SeqBatch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from llmrec.models.spec import FitInput

__all__ = ["SPEC", "Seq2SeqOutput", "T5SemanticConfig", "T5SemanticRecommender", "prefix_windows"]

PAD_TOKEN, EOS_TOKEN, BOS_TOKEN = 0, 1, 2  # special tokens of the code vocabulary (from-scratch T5)
N_SPECIAL = 3
PROMPT = ("User history:", ",", ". Next item:")  # prompt pieces of the pretrained variant: prefix, separator, suffix


@dataclass(frozen=True, kw_only=True)
class T5SemanticConfig:
    n_items: int  # catalogue size; items 1..n_items, 0 is padding (written by data preparation)
    codebook_sizes: tuple[int, ...]  # width of each code position (L levels + disambiguation), from SemanticIds
    max_seq_len: int = 20  # most recent history items read (TIGER: 20)
    d_model: int = 128  # width of the from-scratch T5
    n_layers: int = 4  # encoder layers = decoder layers
    n_heads: int = 4  # attention heads; d_model % n_heads == 0
    d_ff: int = 512  # feed-forward width
    dropout: float = 0.1  # T5 dropout_rate
    num_beams: int = 20  # beams of `score` (the evaluator's ranking depth)
    cold_weight: float = 0.0  # > 0: cold items join the beams with exact log-prob + log(cold_weight) (see docstring)
    code_token_start: int = N_SPECIAL  # token id of code (0, 0); codes of a position follow each other
    t5: dict[str, Any] | None = None  # the Hugging Face T5Config of a pretrained checkpoint; None = from the fields above
    prompt_ids: tuple[tuple[int, ...], ...] | None = None  # (prefix, separator, suffix) token ids of the prompt

    def __post_init__(self) -> None:
        """Ranges as the next-item LM's (`NextItemLMConfig.__post_init__`); num_beams <= 4096."""
        check_range("n_items", self.n_items, 1, 2**31 - 1)
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must be positive, got {self.codebook_sizes}")
        check_range("max_seq_len", self.max_seq_len, 1, MAX_SEQ_LEN)
        check_range("d_model", self.d_model, 1, 16384)
        check_range("n_layers", self.n_layers, 1, 256)
        check_range("n_heads", self.n_heads, 1, 256)
        check_range("d_ff", self.d_ff, 1, 65536)
        check_range("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_range("num_beams", self.num_beams, 1, 4096)
        check_range("cold_weight", self.cold_weight, 0.0)
        check_range("code_token_start", self.code_token_start, 0, 2**31 - 1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if (self.t5 is None) != (self.prompt_ids is None):
            raise ValueError("t5 and prompt_ids are set together (pretrained variant) or not at all")
        if self.prompt_ids is not None and len(self.prompt_ids) != 3:
            raise ValueError("prompt_ids holds three pieces: prefix, separator, suffix")

    @property
    def depth(self) -> int:
        """Codes per item id (L + 1)."""
        return len(self.codebook_sizes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> T5SemanticConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown T5SemanticConfig keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        d["codebook_sizes"] = tuple(d["codebook_sizes"])
        if d.get("prompt_ids") is not None:
            d["prompt_ids"] = tuple(tuple(p) for p in d["prompt_ids"])
        return cls(**d)


@dataclass
class Seq2SeqOutput:
    logits: torch.Tensor  # [B, T, V_tok] decoder logits for the T = depth code positions
    loss: torch.Tensor | None = None


class _TrieMask(LogitsProcessor):
    """Beam-search step: keep only the code tokens that continue each beam's prefix to a valid item id.

    The mask is tensor work ([N, C_t] gathers from the trie's transition table), not a per-beam Python list: on CPU
    that is several times faster than `prefix_allowed_tokens_fn` (docs/generative-retrieval.md).
    """

    def __init__(self, trie: CodeTrie, code_tokens: list[torch.Tensor], token_code: torch.Tensor) -> None:
        self.trie = trie
        self.code_tokens = code_tokens  # per position t: [C_t] token id of each code
        self.token_code = token_code  # [V_tok] code of a code token within its position, -1 for other tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t = input_ids.shape[1] - 1  # codes generated so far (the decoder start token comes first)
        prefix = self.token_code[input_ids[:, 1:]]  # [N, t]
        allowed = self.trie.allowed_mask(prefix)  # [N, C_t]
        tokens = self.code_tokens[t]  # [C_t]
        out = torch.full_like(scores, float("-inf"))  # [N, V_tok]
        out[:, tokens] = scores[:, tokens].masked_fill(~allowed, float("-inf"))
        return out  # type: ignore[return-value]


class T5SemanticRecommender(nn.Module):
    """T5 over semantic-id tokens: history codes in, next item's codes out; trie-constrained beam search."""

    model_type = "t5-semantic"  # llmrec.models.MODELS key and config.json "model_type"
    config: T5SemanticConfig
    # buffers (register_buffer): declared for the type checker, which otherwise sees `Tensor | Module`
    is_seen: torch.Tensor

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len

    @property
    def n_items(self) -> int:
        return self.config.n_items

    def __init__(self, config: T5SemanticConfig, semantic_ids: SemanticIds) -> None:
        super().__init__()
        c = self.config = config
        if semantic_ids.n_items != c.n_items or tuple(semantic_ids.codebook_sizes) != tuple(c.codebook_sizes):
            raise ValueError(
                f"semantic ids ({semantic_ids.n_items} items, sizes {semantic_ids.codebook_sizes}) do not match the "
                f"config ({c.n_items} items, sizes {c.codebook_sizes})"
            )
        self.semantic_ids = semantic_ids
        self.trie = semantic_ids.build_trie()
        n_code_tokens = sum(c.codebook_sizes)
        if c.t5 is None:
            t5_config = T5Config(  # type: ignore[call-arg]  # decoder_start_token_id goes through **kwargs
                vocab_size=N_SPECIAL + n_code_tokens,
                d_model=c.d_model,
                d_kv=c.d_model // c.n_heads,
                d_ff=c.d_ff,
                num_layers=c.n_layers,
                num_decoder_layers=c.n_layers,
                num_heads=c.n_heads,
                dropout_rate=c.dropout,
                pad_token_id=PAD_TOKEN,
                eos_token_id=EOS_TOKEN,
                decoder_start_token_id=BOS_TOKEN,
            )
        else:
            t5_config = T5Config.from_dict(c.t5)
        if c.code_token_start + n_code_tokens > t5_config.vocab_size:
            raise ValueError(f"code tokens end at {c.code_token_start + n_code_tokens} > vocab {t5_config.vocab_size}")
        self.t5 = T5ForConditionalGeneration(t5_config)
        # Token tables: code c at position t is token start_t + c, positions laid out one after the other.
        starts = c.code_token_start + np.concatenate([[0], np.cumsum(c.codebook_sizes)[:-1]]).astype(np.int64)
        self.code_tokens = [torch.arange(s, s + n) for s, n in zip(starts.tolist(), c.codebook_sizes, strict=True)]
        token_code = torch.full((t5_config.vocab_size,), -1, dtype=torch.long)
        for tokens in self.code_tokens:
            token_code[tokens] = torch.arange(len(tokens))
        self.token_code = token_code  # [V_tok]
        codes = semantic_ids.codes  # [V+1, T], row 0 = PAD_CODE
        item_tokens = torch.stack([self.code_tokens[t][codes[:, t].clamp_min(0)] for t in range(c.depth)], 1)
        item_tokens[PAD_ID] = PAD_TOKEN
        self.item_tokens = item_tokens  # [V+1, T] token ids of every item's id
        # Items seen as a training target (set by `set_seen_items`); the others are cold (cold_weight).
        self.register_buffer("is_seen", torch.ones(c.n_items + 1, dtype=torch.bool))

    # ---- pretrained variant ----------------------------------------------------------------------
    @classmethod
    def from_t5_checkpoint(
        cls, path: str | Path, semantic_ids: SemanticIds, **config: Any
    ) -> tuple[T5SemanticRecommender, PreTrainedTokenizerBase]:
        """Start from the T5 checkpoint and tokenizer in local directory `path` (never a hub name: no network).

        Adds one token ``<c{t}_{code}>`` per code to the tokenizer and the embeddings (after the checkpoint's
        vocabulary, so they are contiguous) and writes histories as the prompt of `PROMPT`. `config`: other
        T5SemanticConfig fields (max_seq_len, num_beams, ...). Returns the model and the extended tokenizer.
        """
        from transformers import AutoTokenizer

        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        pretrained = T5ForConditionalGeneration.from_pretrained(str(path))
        sizes = tuple(semantic_ids.codebook_sizes)
        new = [f"<c{t}_{code}>" for t, n in enumerate(sizes) for code in range(n)]
        start = len(tokenizer)
        if tokenizer.add_tokens(new, special_tokens=True) != len(new):
            raise ValueError(f"{path}: the tokenizer already has code tokens such as {new[0]}")
        ids = tokenizer.convert_tokens_to_ids(new)
        if ids != list(range(start, start + len(new))):
            raise ValueError(f"{path}: the added code tokens did not get contiguous ids")
        vocab = max(pretrained.config.vocab_size, len(tokenizer))  # T5 checkpoints pad their vocab (32128 > 32100)
        pretrained.resize_token_embeddings(vocab, mean_resizing=False)
        prompt = tuple(tuple(tokenizer(p, add_special_tokens=False).input_ids) for p in PROMPT)
        t5 = {k: v for k, v in pretrained.config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
        cfg = T5SemanticConfig(
            n_items=semantic_ids.n_items, codebook_sizes=sizes, code_token_start=start, t5=t5, prompt_ids=prompt, **config
        )
        model = cls(cfg, semantic_ids)
        model.t5.load_state_dict(pretrained.state_dict())
        return model, tokenizer

    def set_seen_items(self, seen: torch.Tensor) -> None:
        """seen: [V+1] bool, True for the items that were a training target (the others are cold items)."""
        self.is_seen.copy_(seen.to(torch.bool))

    # ---- inputs ---------------------------------------------------------------------------------
    def encoder_inputs(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """item_ids [B, L] left-padded -> (input_ids [B, S], attention_mask [B, S]), left-padded compactly.

        From scratch: the codes of the most recent `max_seq_len` items, then EOS. Pretrained: prefix, the items
        joined by the separator, suffix, EOS. EOS ends every row, so an empty history is still a valid input.
        """
        c = self.config
        item_ids = item_ids[:, -c.max_seq_len :]
        B, L = item_ids.shape
        is_real = item_ids != PAD_ID  # [B, L]
        tokens = self.item_tokens.to(item_ids.device)[item_ids]  # [B, L, T]
        keep = is_real[:, :, None].expand_as(tokens)  # [B, L, T]
        eos = cast(int, self.t5.config.eos_token_id)  # set to an int in __init__
        if c.prompt_ids is not None:
            prefix, sep, suffix = (torch.tensor(p, dtype=torch.long, device=item_ids.device) for p in c.prompt_ids)
            sep_b = sep.expand(B, L, len(sep))  # [B, L, |sep|] separator before every item but the first real one
            first = (~is_real).sum(1)  # [B] column of the first real item
            sep_keep = is_real[:, :, None] & (torch.arange(L, device=item_ids.device) != first[:, None])[:, :, None]
            tokens = torch.cat([sep_b, tokens], 2)  # [B, L, |sep| + T]
            keep = torch.cat([sep_keep.expand_as(sep_b), keep], 2)
            head = prefix.expand(B, len(prefix))
            tail = torch.cat([suffix, torch.tensor([eos], device=item_ids.device)]).expand(B, len(suffix) + 1)
        else:
            head = item_ids.new_zeros(B, 0)
            tail = torch.full((B, 1), eos, dtype=torch.long, device=item_ids.device)
        ids = torch.cat([head, tokens.reshape(B, -1), tail], 1)  # [B, S]
        mask = torch.cat(
            [torch.ones_like(head, dtype=torch.bool), keep.reshape(B, -1), torch.ones_like(tail, dtype=torch.bool)], 1
        )
        # Move padding to the left, keeping token order (T5's relative positions then count real tokens only).
        order = torch.sort(mask.to(torch.int8), dim=1, stable=True).indices  # [B, S]
        ids, mask = ids.gather(1, order), mask.gather(1, order)
        width = int(mask.sum(1).max())
        ids, mask = ids[:, -width:], mask[:, -width:]
        return ids.masked_fill(~mask, cast(int, self.t5.config.pad_token_id)), mask.long()

    # ---- training ---------------------------------------------------------------------------------
    def forward(self, batch: SeqBatch) -> Seq2SeqOutput:
        """Histories `batch.item_ids` [B, L]; with targets, the target is the last column's, `targets[:, -1]` [B]."""
        input_ids, attention_mask = self.encoder_inputs(batch.item_ids)
        if batch.targets is None:
            raise ValueError("forward needs targets; use generate or score to recommend")
        target = batch.targets[:, -1]  # [B]
        labels = self.item_tokens.to(target.device)[target].contiguous()  # [B, T]; T5's loss needs contiguous labels
        out = self.t5(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        return Seq2SeqOutput(logits=out.logits, loss=out.loss)

    # ---- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, item_ids: torch.Tensor, k: int, num_beams: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k next items by trie-constrained beam search: (items [B, K], scores [B, K]), best first.

        Every item is a real item (1..n_items) and appears once; scores are beam log-probabilities, decreasing. A row
        holds at most `num_beams` items (plus the cold items when cold_weight > 0); the rest is item 0 with score -inf.
        """
        nb = num_beams or self.config.num_beams
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        input_ids, attention_mask = self.encoder_inputs(item_ids)
        B, T = input_ids.shape[0], self.config.depth
        beam_flags: dict[str, Any] = {"length_penalty": 0.0, "early_stopping": True} if nb > 1 else {"output_logits": True}
        gen = GenerationConfig(  # type: ignore[no-untyped-call]
            num_beams=nb,
            num_return_sequences=nb,
            max_new_tokens=T,
            do_sample=False,
            decoder_start_token_id=self.t5.config.decoder_start_token_id,
            pad_token_id=self.t5.config.pad_token_id,
            eos_token_id=self.t5.config.eos_token_id,
            return_dict_in_generate=True,
            output_scores=True,
            **beam_flags,  # length_penalty 0: every id has T codes, rank by the plain sum of log-probabilities
        )
        mask = _TrieMask(self.trie, self.code_tokens, self.token_code.to(input_ids.device))
        out = self.t5.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=gen,
            logits_processor=LogitsProcessorList([mask]),
        )
        seqs = out.sequences[:, 1 : 1 + T]  # [B * nb, T] generated tokens after the start token
        codes = self.token_code.to(seqs.device)[seqs]  # [B * nb, T]
        items = self.trie.items_of(codes) if seqs.shape[1] == T else seqs.new_zeros(seqs.shape[0])  # [B * nb]
        items = items.view(B, nb)
        if nb > 1:
            scores = out.sequences_scores.view(B, nb).float()
        else:  # greedy decoding (one beam) reports raw logits: score the path as beam search would
            logp = torch.stack(out.logits, 1).float().log_softmax(-1)  # [B, T, V_tok]
            scores = logp.gather(2, seqs[:, :, None])[:, :, 0].sum(1, keepdim=True)  # [B, 1]
        scores = scores.masked_fill((items == PAD_ID) | (scores < -1e8), float("-inf"))  # invalid or filler beams
        items = items.masked_fill(torch.isinf(scores), PAD_ID)
        cold = torch.nonzero(~self.is_seen[1:])[:, 0] + 1  # [M] items never seen as a target
        if self.config.cold_weight > 0 and len(cold):
            cold_scores = self.score_candidates(item_ids, cold) + math.log(self.config.cold_weight)  # [B, M]
            items = torch.cat([items, cold.expand(B, -1)], 1)
            scores = torch.cat([scores, cold_scores], 1)
        items, scores = _dedupe_sorted(items, scores)
        return items[:, :k], scores[:, :k]

    @torch.no_grad()
    def score_candidates(self, item_ids: torch.Tensor, candidates: torch.Tensor, max_rows: int = 4096) -> torch.Tensor:
        """Exact log P(codes of each candidate | history): item_ids [B, L], candidates [C] -> [B, C].

        Teacher-forced, unconstrained softmax, so equal to the beam score of a candidate that beam search returns.
        The encoder runs once per history; the decoder on at most `max_rows` (history, candidate) pairs at a time."""
        from transformers.modeling_outputs import BaseModelOutput

        input_ids, attention_mask = self.encoder_inputs(item_ids)
        hidden = self.t5.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, S, D]
        C = candidates.shape[0]
        labels = self.item_tokens.to(candidates.device)[candidates]  # [C, T]
        out = []
        step = max(1, max_rows // max(1, C))
        for s in range(0, hidden.shape[0], step):
            h = hidden[s : s + step].repeat_interleave(C, 0)  # [b * C, S, D]
            m = attention_mask[s : s + step].repeat_interleave(C, 0)
            lab = labels.repeat(h.shape[0] // C, 1)  # [b * C, T]
            logits = self.t5(encoder_outputs=BaseModelOutput(last_hidden_state=h), attention_mask=m, labels=lab).logits
            logp = logits.float().log_softmax(-1).gather(2, lab[:, :, None])[:, :, 0].sum(1)  # [b * C]
            out.append(logp.view(-1, C))
        return torch.cat(out)  # [B, C]

    @torch.no_grad()
    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids [B, L] -> [B, V+1] for the common evaluator: beam items get their beam score, all others -inf."""
        items, scores = self.generate(item_ids, k=self.config.n_items)
        out = torch.full((item_ids.shape[0], self.config.n_items + 1), float("-inf"))
        out.scatter_(1, items, scores)  # item 0 (filler) gets -inf, as padding should
        out[:, PAD_ID] = float("-inf")
        return out

    # ---- persistence (safetensors + JSON, no pickle) -----------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """nn.Module.load_state_dict that also accepts a state saved by `save_pretrained`, where tied tensors (T5's
        shared embeddings) are stored once: a missing name is filled from the stored name sharing its memory."""
        state = dict(state_dict)
        own = self.state_dict()
        first: dict[int, str] = {}
        for k, v in own.items():
            first.setdefault(v.data_ptr(), k)
        for k, v in own.items():
            if k not in state and first[v.data_ptr()] in state:
                state[k] = state[first[v.data_ptr()]]
        return super().load_state_dict(state, strict=strict, assign=assign)

    def save_pretrained(self, path: str | Path) -> None:
        """config.json, model.safetensors and the semantic ids (semantic_ids.*: codes, centroids, stats)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"model_type": "t5-semantic", **self.config.to_dict()}, indent=2))
        save_file(_untied(self.state_dict()), str(path / "model.safetensors"))
        self.semantic_ids.save(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> T5SemanticRecommender:
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        cfg.pop("model_type", None)
        model = cls(T5SemanticConfig.from_dict(cfg), SemanticIds.load(path))
        state = load_file(str(path / "model.safetensors"))
        model.load_state_dict(state)
        model.eval()
        return model


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with each storage once (safetensors refuses tensors that share memory, as tied weights do)."""
    out, seen = {}, set()
    for k, v in state.items():
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            out[k] = v.contiguous()
    return out


def _dedupe_sorted(items: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows best first, each item once (its best score); repeats and fillers become item 0 / -inf at the end."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    items, scores = items.gather(1, order), scores.gather(1, order)  # [B, N]
    same = (items[:, :, None] == items[:, None, :]).tril(-1).any(2)  # [B, N] an earlier (better) copy exists
    scores = scores.masked_fill(same | (items == PAD_ID), float("-inf"))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    items, scores = items.gather(1, order), scores.gather(1, order)
    return items.masked_fill(torch.isinf(scores), PAD_ID), scores


SEMANTIC_ID_KEYS = ("n_levels", "codebook_size", "semantic_seed", "text_model", "semantic_source", "collab_model")  # ids, not T5


def _check(params: dict[str, Any]) -> None:
    """The T5's [model] section: T5SemanticConfig fields (sizes come from the data) and the semantic-id keys."""
    build(
        T5SemanticConfig, params, section="model", allowed_extra=SEMANTIC_ID_KEYS, derived={"n_items": 1, "codebook_sizes": (1,)}
    )


def _fit(req: FitInput) -> tuple[T5SemanticRecommender, dict[str, Any]]:
    # The one import from models/ up into training (tests/test_import_direction.py names it): the T5 trains its
    # own way, semantic ids of the items first, then the T5 over them.
    from llmrec.training.semantic import fit_request

    return fit_request(req)


SPEC = ModelSpec("t5-semantic", T5SemanticRecommender, examples=(), check=_check, fit=_fit)
