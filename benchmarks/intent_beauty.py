"""Natural-language intent on a shop catalogue: do text queries find the products asked for? (docs/trust.md)

Usage: python benchmarks/intent_beauty.py PREPARED_DIR [--model MODEL_DIR] [--encoders minilm,llm]
                                          [--llm-layer L] [--users 300] [--weights 0.5,0.7,0.9,1.0]
                                          [--seed 0] [--threads 1] [--json OUT.json]

Queries and their relevant items: benchmarks/intent_beauty_queries.json (35 queries; an item is relevant when its
title matches the query's keyword rule, see the file's "about" and "rule"; the labels never look at an encoder).
For each encoder (MiniLM: the packaged all-MiniLM-L6-v2; llm: the packaged SmolLM2-135M-Instruct read as an
encoder, `llmrec.index.llm.LLMEncoder`, mean-pooled centred states of layer --llm-layer, by default the
encoder's own), item texts are the catalogue's (`llmrec.index.text_encoder.item_texts`: the title) encoded
through llmrec's text cache:

- search: the 10 items most similar to the query over the whole catalogue; precision@10 = share relevant, the
  mean over queries (every query has at least 10 relevant items, so 1.0 is reachable).
- with --model: the query blended into a trained model's recommendations (`Recommender.recommend_batch(...,
  query=Q, query_weight=w)`, seen items left out) for --users users drawn at random (seeded), each from its
  validation history (the sequence without its last two items); precision@10 over users and queries, the share
  of the unblended top-10 that survives, and the share of users whose top-10 no other user gets (how personal
  the lists stay).
- with --model: service latency of a query request (POST /v1/recommend with `query`, k = 10, a known user) in
  process through FastAPI's TestClient, warm (the encoder loaded and the catalogue encoded at start-up, one
  warm-up request), each query once: median and 90th percentile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.artifact import text_cache_dir
from llmrec.data import PreparedDataset
from llmrec.index.text_encoder import TextEncoder, encode_items

QUERIES = Path(__file__).with_name("intent_beauty_queries.json")
K = 10


def _norm(text: str | None) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))


def _pattern(term: str) -> re.Pattern[str]:
    """A rule's term as a whole-word pattern over normalised text (a trailing * allows any ending)."""
    star = term.endswith("*")
    body = re.escape(_norm(term.rstrip("*")))
    return re.compile(r"(?<![a-z0-9])" + body + (r"[a-z0-9]*" if star else "") + r"(?![a-z0-9])")


def label(titles: list[str | None], query: dict[str, Any]) -> set[int]:
    """Item indices (1-based, as item_idx) whose title satisfies the query's rule."""
    groups = [[_pattern(t) for t in group] for group in query["all"]]
    excluded = [_pattern(t) for t in query.get("none", [])]
    out = set()
    for i, title in enumerate(titles, start=1):
        text = _norm(title)
        if all(any(p.search(text) for p in g) for g in groups) and not any(p.search(text) for p in excluded):
            out.add(i)
    return out


def _encoder(name: str, layer: int | None) -> TextEncoder:
    if name == "minilm":
        from llmrec.index.text_encoder import SentenceTransformerEncoder

        return SentenceTransformerEncoder()
    if name == "llm":
        from llmrec.index.llm import LLMEncoder

        return LLMEncoder() if layer is None else LLMEncoder(layer=layer)
    raise SystemExit(f"error: --encoders: unknown encoder {name!r} (minilm, llm)")


def _search(emb: np.ndarray, q: np.ndarray, relevant: list[set[int]]) -> list[float]:
    sims = q @ emb[1:].T  # [Q, V]
    top = np.argsort(-sims, axis=1, kind="stable")[:, :K] + 1  # item_idx
    return [len(set(row.tolist()) & rel) / K for row, rel in zip(top, relevant, strict=True)]


def _blended(
    model: Path, encoder: TextEncoder, queries: list[str], relevant: list[set[int]], users: int, weights: list[float], seed: int
) -> dict[str, Any]:
    from llmrec.recommend import Recommender

    rec = Recommender.load(model, device="cpu")
    rec.text_encoder = encoder
    picked = np.random.default_rng(seed).choice(len(rec.histories), size=min(users, len(rec.histories)), replace=False)
    seqs = list(rec.histories.values())
    histories = [seqs[i][:-2] for i in sorted(picked) if len(seqs[i]) > 2]

    def top_ids(query: str | None, w: float) -> np.ndarray:
        lists = rec.recommend_batch(histories, K, exclude_seen=True, query=query, query_weight=w)
        return np.array([[rec.item_index[r.item_id] for r in recs] for recs in lists])  # [U, K]

    plain = top_ids(None, 0.0)
    out: dict[str, Any] = {"users": len(histories), "unique_lists_without_query": _unique(plain)}
    for w in weights:
        precision, kept, unique = [], [], []
        for query, rel in zip(queries, relevant, strict=True):
            top = top_ids(query, w)
            precision.append(float(np.mean([len(set(row.tolist()) & rel) / K for row in top])))
            kept.append(float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(top, plain, strict=True)])))
            unique.append(_unique(top))
        out[f"w={w}"] = {
            "precision@10": float(np.mean(precision)),
            "plain_top10_kept": float(np.mean(kept)),
            "unique_lists": float(np.mean(unique)),
        }
    return out


def _unique(top: np.ndarray) -> float:
    """Share of users whose top-10 (as a set) no other user gets: how personal the lists stay."""
    lists = [frozenset(row.tolist()) for row in top]
    counts: dict[frozenset[int], int] = {}
    for row in lists:
        counts[row] = counts.get(row, 0) + 1
    return sum(counts[row] == 1 for row in lists) / len(lists)


def _service_latency(model: Path, encoder: TextEncoder, queries: list[str]) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from llmrec.recommend import Recommender
    from llmrec.serve import create_app

    rec = Recommender.load(model, device="cpu")
    rec.text_encoder = encoder
    user = next(u for u, h in rec.histories.items() if len(h) >= 5)
    seconds = []
    with TestClient(create_app(rec, queries=True)) as client:
        client.post("/v1/recommend", json={"user_id": user, "k": K, "query": "warm-up"}).raise_for_status()
        for query in queries:
            t = time.perf_counter()
            client.post("/v1/recommend", json={"user_id": user, "k": K, "query": query}).raise_for_status()
            seconds.append(time.perf_counter() - t)
    ms = sorted(s * 1000 for s in seconds)
    return {"median_ms": statistics.median(ms), "p90_ms": ms[int(0.9 * (len(ms) - 1))], "max_ms": ms[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prepared", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--encoders", default="minilm,llm")
    ap.add_argument("--llm-layer", type=int, default=None, help="default: LLMEncoder's own (12)")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--weights", default="0.5,0.7,0.9,1.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    spec = json.loads(QUERIES.read_text())
    ds = PreparedDataset.load(a.prepared)
    titles = ds.items.sort("item_idx")["title"].to_list()
    queries = [q["query"] for q in spec["queries"]]
    relevant = [label(titles, q) for q in spec["queries"]]
    result: dict[str, Any] = {
        "queries": len(queries),
        "relevant_per_query": dict(zip(queries, map(len, relevant), strict=True)),
        "load_average_before": os.getloadavg(),
        "encoders": {},
    }
    weights = [float(w) for w in a.weights.split(",")]
    for name in a.encoders.split(","):
        encoder = _encoder(name, a.llm_layer)
        t = time.perf_counter()
        emb = encode_items(ds.items, ds.domain, encoder, text_cache_dir(), progress=False)  # [V+1, E]
        items_s = time.perf_counter() - t
        encoder.encode(["warm-up"])
        t = time.perf_counter()
        q = np.stack([encoder.encode([query])[0] for query in queries])  # one at a time, as a request does
        per_query_ms = (time.perf_counter() - t) / len(queries) * 1000
        search = _search(emb, q, relevant)
        row: dict[str, Any] = {
            "encoder": encoder.name,
            "catalogue_seconds": round(items_s, 1),
            "query_encode_ms": round(per_query_ms, 1),
            "search_precision@10": float(np.mean(search)),
            "search_per_query": dict(zip(queries, search, strict=True)),
            "queries_below_0.8": [qq for qq, p in zip(queries, search, strict=True) if p < 0.8],
        }
        if a.model is not None:
            row["blended"] = _blended(a.model, encoder, queries, relevant, a.users, weights, a.seed)
            row["service"] = _service_latency(a.model, encoder, queries)
        result["encoders"][name] = row
        print(json.dumps({k: v for k, v in row.items() if k != "search_per_query"}))
    result["load_average_after"] = os.getloadavg()
    if a.json is not None:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
