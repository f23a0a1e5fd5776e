"""Encode a prepared catalogue with the text encoder, cold then warm (cached), and optionally build semantic ids.

Usage: python benchmarks/text_encode.py PREPARED_DIR CACHE_DIR [--model PATH] [--threads 2]
                                        [--semantic-ids OUT_DIR --levels 3 --codes 64 --seed 0]
Prints one JSON line. The cold run starts from an empty CACHE_DIR (it is cleared) and includes loading the model;
the warm run uses a fresh encoder object, so it shows that a cached catalogue never loads the model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from llmrec.data import PreparedDataset  # noqa: E402
from llmrec.index import SentenceTransformerEncoder, build_semantic_ids, encode_items  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("cache_dir")
    ap.add_argument("--model", default=None, help="local sentence-transformers directory (default: all-MiniLM-L6-v2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--semantic-ids", default=None, help="also build semantic ids and save them here")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    cache = Path(a.cache_dir)
    shutil.rmtree(cache, ignore_errors=True)

    t0 = time.perf_counter()
    cold = encode_items(ds.items, ds.domain, SentenceTransformerEncoder(a.model), cache)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm_encoder = SentenceTransformerEncoder(a.model)
    warm = encode_items(ds.items, ds.domain, warm_encoder, cache)
    t_warm = time.perf_counter() - t0
    assert (cold == warm).all() and warm_encoder._model is None
    out: dict[str, object] = {
        "dataset": ds.manifest.get("name", a.prepared),
        "items": ds.n_items,
        "dim": cold.shape[1],
        "threads": a.threads,
        "cold_s": round(t_cold, 2),
        "warm_s": round(t_warm, 2),
    }
    if a.semantic_ids:
        t0 = time.perf_counter()
        ids = build_semantic_ids(cold, n_levels=a.levels, codebook_size=a.codes, seed=a.seed)
        out["semantic_ids_s"] = round(time.perf_counter() - t0, 2)
        ids.save(a.semantic_ids)
        out["semantic_ids"] = ids.stats()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
