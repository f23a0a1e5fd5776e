"""Which text encoder knows the catalogue best: MiniLM against a decoder LLM's layers, with nothing trained.

Usage: python benchmarks/llm_item_encoder.py PREPARED_DIR [--llm PATH] [--layers 8 12 16 20 24 -1]
       [--users 3000] [--threads 2] [--json OUT.json]

Each item text (`llmrec.index.text_encoder.item_texts`) is encoded by the packaged all-MiniLM-L6-v2 and by the LLM
(default SmolLM2-135M-Instruct; mean-pooled, centred hidden states of each layer in --layers, all from one pass).
For --users random users (seed 0), every item is ranked by the cosine similarity of its text to the text of the
user's last training item; the validation target is read (seen items excluded, full ranking), the test target
never. The vectors are written into llmrec's text-embedding cache under each encoder's name, so a training run with
the same encoder afterwards encodes nothing. Prints one JSON line per encoder with NDCG@10, Recall@10 and the
encoding speed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np
import torch

from llmrec.artifact import text_cache_dir
from llmrec.data import PreparedDataset
from llmrec.eval.metrics import summarize
from llmrec.index.llm import LLMEncoder
from llmrec.index.text_encoder import SentenceTransformerEncoder, encode_items, item_texts


class _Precomputed:
    """Vectors already computed, served under an encoder's name so `encode_items` caches them."""

    def __init__(self, name: str, table: dict[str, np.ndarray]) -> None:
        self.name, self._table = name, table
        self.dim = next(iter(table.values())).shape[0]

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.stack([self._table[t] for t in texts])


def _ranks(emb: np.ndarray, last: np.ndarray, targets: np.ndarray, seen: list[np.ndarray]) -> np.ndarray:
    scores = emb[last] @ emb.T  # [U, V+1]
    scores[:, 0] = -np.inf
    for row, items in enumerate(seen):
        scores[row, items] = -np.inf
    target = scores[np.arange(len(targets)), targets][:, None]
    return (scores > target).sum(1) + (scores == target).sum(1)  # pessimistic ties, 1-based


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("--llm", default=None)
    ap.add_argument("--layers", type=int, nargs="+", default=[8, 12, 16, 20, 24, -1])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    ex = ds.eval_examples("valid")
    pick = np.random.default_rng(0).choice(len(ex.targets), size=min(a.users, len(ex.targets)), replace=False)
    hist = [np.asarray(ex.histories[i]) for i in pick]
    last, targets = np.array([h[-1] for h in hist]), ex.targets[pick]
    cache = text_cache_dir()
    rows = []

    t0 = time.perf_counter()
    minilm = encode_items(ds.items, ds.domain, SentenceTransformerEncoder(), cache)
    rows.append({"encoder": "all-MiniLM-L6-v2", "seconds": round(time.perf_counter() - t0, 1), "emb": minilm})

    texts = item_texts(ds.items, ds.domain)
    unique = sorted(set(texts), key=len)
    enc = LLMEncoder(a.llm)
    t0 = time.perf_counter()
    by_layer = enc.encode_layers(unique, a.layers, batch_size=64)
    seconds = time.perf_counter() - t0
    for layer, vectors in by_layer.items():
        name = LLMEncoder(a.llm, layer=layer).name
        emb = encode_items(ds.items, ds.domain, _Precomputed(name, dict(zip(unique, vectors, strict=True))), cache)
        rows.append({"encoder": name, "seconds": round(seconds, 1), "emb": emb})

    out = []
    for row in rows:
        emb = row.pop("emb")
        m = summarize(_ranks(emb, last, targets, hist), (10,))
        line = {
            **row,
            "users": len(targets),
            "valid_ndcg@10": round(m["ndcg@10"], 4),
            "valid_recall@10": round(m["recall@10"], 4),
            "texts": len(unique),
        }
        print(json.dumps(line), flush=True)
        out.append(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
