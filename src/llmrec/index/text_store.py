"""The catalogue's text embeddings stored in a model artifact, so that a text query encodes only itself.

Two files beside the weights (names in `llmrec.artifact`)::

    item_text.safetensors   tensor "embeddings" [n_items + 1, D] float16, row 0 (padding) zeros, unit rows
    item_text.json          {"encoder": name, "dim": D, "n_items": V, "dtype": "float16", "texts_sha256": hex}

``encoder`` is the text encoder's `name` (it follows the weights), ``texts_sha256`` the digest of the item texts
(`llmrec.index.text_encoder.item_texts`) they were encoded from: stored vectors of another encoder, dimension or
catalogue are never used. float16 halves the file; the cosine similarities move by about 1e-3 at most, which
leaves a query's ranking unchanged within that tolerance (`tests/index/test_text_store.py`).

They are written when a model that reads item text is trained (`llmrec.training.fit.store_item_text`) and by
``llmrec export``. An artifact without them still answers queries: `catalogue_embeddings` then encodes the
catalogue through the on-disk text cache (`llmrec.index.text_encoder.encode_items`) and says so once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from llmrec.artifact import TEXT_EMBEDDINGS, TEXT_EMBEDDINGS_META
from llmrec.atomic import atomic_file, atomic_write
from llmrec.index.text_encoder import TextEncoder, encode_items, item_texts

__all__ = ["catalogue_embeddings", "read_item_text", "texts_digest", "write_item_text"]

log = logging.getLogger("llmrec.index")


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over the item texts in item order (what the stored vectors were encoded from)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def write_item_text(folder: str | Path, embeddings: np.ndarray, encoder_name: str, texts: Sequence[str]) -> Path:
    """Store `embeddings` [n_items + 1, D] (row 0 = padding) of `texts` by encoder `encoder_name` in `folder`.

    The vectors first, the JSON last (each atomically): a folder with the JSON has both."""
    folder = Path(folder)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(texts) + 1:
        raise ValueError(f"expected [{len(texts) + 1}, D] embeddings, got {list(embeddings.shape)}")
    with atomic_file(folder / TEXT_EMBEDDINGS) as tmp:
        save_file({"embeddings": np.ascontiguousarray(embeddings, dtype=np.float16)}, str(tmp))
    meta = {
        "encoder": encoder_name,
        "dim": int(embeddings.shape[1]),
        "n_items": len(texts),
        "dtype": "float16",
        "texts_sha256": texts_digest(texts),
    }
    atomic_write(folder / TEXT_EMBEDDINGS_META, json.dumps(meta, indent=2).encode())
    return folder / TEXT_EMBEDDINGS


def read_item_text(folder: str | Path, encoder_name: str, texts: Sequence[str]) -> tuple[np.ndarray | None, str]:
    """The stored embeddings [n_items + 1, D] float32 when they were made by `encoder_name` from `texts`, else
    (None, why not) in words."""
    folder = Path(folder)
    meta_path, path = folder / TEXT_EMBEDDINGS_META, folder / TEXT_EMBEDDINGS
    if not meta_path.is_file() or not path.is_file():
        return None, "the artifact stores no item text embeddings"
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        emb = load_file(str(path))["embeddings"]
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        return None, f"its stored item text embeddings are unreadable ({e})"
    if meta.get("encoder") != encoder_name:
        return None, f"its item text embeddings are of encoder {meta.get('encoder')!r}, the query encoder is {encoder_name!r}"
    if meta.get("n_items") != len(texts) or meta.get("texts_sha256") != texts_digest(texts):
        return None, "its item text embeddings were encoded from another catalogue"
    if emb.ndim != 2 or emb.shape != (len(texts) + 1, meta.get("dim")):
        return None, f"its item text embeddings have shape {list(emb.shape)}, not [{len(texts) + 1}, {meta.get('dim')}]"
    return emb.astype(np.float32), ""


def catalogue_embeddings(
    folder: str | Path | None,
    items: pl.DataFrame,
    domain: str,
    encoder: TextEncoder,
    cache_dir: str | Path | None,
    *,
    store: bool = False,
) -> np.ndarray:
    """[n_items + 1, D] float32 text embeddings of the catalogue: the ones stored in the artifact `folder` when
    they fit `encoder` and the catalogue, else encoded through the text cache `cache_dir` (logged once, with why),
    and with `store` written into `folder`."""
    texts = item_texts(items, domain)
    why = "no artifact folder"
    if folder is not None:
        stored, why = read_item_text(folder, encoder.name, texts)
        if stored is not None:
            return stored
    emb = encode_items(items, domain, encoder, cache_dir, progress=False)  # [V+1, D]
    if store and folder is not None:
        write_item_text(folder, emb, encoder.name, texts)
        log.info("%s: %s; encoded %d item texts and stored them", folder, why, len(texts))
    elif folder is not None:
        log.warning(
            "%s: %s; encoded %d item texts through the cache %s (llmrec export stores them in the artifact)",
            folder,
            why,
            len(texts),
            cache_dir,
        )
    return emb
