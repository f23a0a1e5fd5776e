"""Natural-language intent on a shop catalogue: do text queries find the products asked for? (docs/trust.md)

Usage: python benchmarks/intent_beauty.py PREPARED_DIR [--model MODEL_DIR] [--encoders minilm,llm]
                                          [--queries FILE.json] [--select] [--llm-layer L] [--users 300]
                                          [--weights 0.5,0.7,0.9,1.0] [--seed 0] [--threads 1] [--json OUT.json]

Queries and their relevant items: --queries, by default the TEST set benchmarks/intent_beauty_queries.json (35
queries); benchmarks/intent_beauty_valid_queries.json holds 31 VALIDATION queries for choosing the blend. An
item is relevant when its title matches the query's keyword rule (see each file's "about" and "rule"; the labels
never look at an encoder). For each encoder (MiniLM: the packaged all-MiniLM-L6-v2; llm: the packaged
SmolLM2-135M-Instruct read as an encoder, `llmrec.index.llm.LLMEncoder`, mean-pooled centred states of layer
--llm-layer, by default the encoder's own), item texts are the catalogue's (`llmrec.index.text_encoder.item_texts`:
the title) encoded through llmrec's text cache:

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
- with --model --select (meant for the validation queries): choose the blend. Every weight of a 0.05 grid and
  every normalisation in NORMALISERS is scored (the model's scores computed once per user, then mixed with each
  query's similarities; the "z" path is checked against `recommend_batch`). Per normalisation the chosen weight
  is the smallest whose precision@10 reaches TARGET (the most personal lists that meet it; none reaching it: the
  smallest within CLOSE of the best, which is also reported); another normalisation replaces the library's
  z-score only by the rule in `_decide`. For comparison, GATES: the query as a filter and the model as the
  ranker (each user's C most similar unseen items, ordered by the model's score).
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

QUERIES = Path(__file__).with_name("intent_beauty_queries.json")  # the test set
VALID_QUERIES = Path(__file__).with_name("intent_beauty_valid_queries.json")  # for choosing the blend
K = 10
GRID = [round(0.05 * i, 2) for i in range(21)]  # query weights scored by --select
TARGET = 0.8  # --select: the chosen weight is the smallest whose precision@10 reaches this (issue 30's target)
CLOSE = 0.01  # --select, reported too: the smallest weight within this much precision@10 of the best
GATES = (10, 12, 15, 20, 30, 50)  # --select, for comparison: candidates per user for the gate
NORMALISERS = ("z", "minmax", "rank")  # z: the library's `blend_query`; the others: `_normalised`


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


def _recommender_and_users(model: Path, encoder: TextEncoder, users: int, seed: int) -> tuple[Any, list[np.ndarray]]:
    """The model with `encoder` for queries, and --users validation histories drawn at random (seeded)."""
    from llmrec.recommend import Recommender

    rec = Recommender.load(model, device="cpu")
    rec.text_encoder = encoder
    picked = np.random.default_rng(seed).choice(len(rec.histories), size=min(users, len(rec.histories)), replace=False)
    seqs = list(rec.histories.values())
    return rec, [seqs[i][:-2] for i in sorted(picked) if len(seqs[i]) > 2]


def _precision(top: np.ndarray, rel: set[int]) -> float:
    """Mean share of relevant items in each row's top-k [U, K]."""
    return float(np.mean([len(set(row.tolist()) & rel) / K for row in top]))


def _kept(top: np.ndarray, plain: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(top, plain, strict=True)]))


def _blended(
    model: Path, encoder: TextEncoder, queries: list[str], relevant: list[set[int]], users: int, weights: list[float], seed: int
) -> dict[str, Any]:
    rec, histories = _recommender_and_users(model, encoder, users, seed)

    def top_ids(query: str | None, w: float) -> np.ndarray:
        lists = rec.recommend_batch(histories, K, exclude_seen=True, query=query, query_weight=w)
        return np.array([[rec.item_index[r.item_id] for r in recs] for recs in lists])  # [U, K]

    plain = top_ids(None, 0.0)
    out: dict[str, Any] = {"users": len(histories), "unique_lists_without_query": _unique(plain)}
    for w in weights:
        precision, kept, unique, per_query = [], [], [], {}
        for query, rel in zip(queries, relevant, strict=True):
            top = top_ids(query, w)
            precision.append(_precision(top, rel))
            kept.append(_kept(top, plain))
            unique.append(_unique(top))
            per_query[query] = precision[-1]
        out[f"w={w}"] = {
            "precision@10": float(np.mean(precision)),
            "plain_top10_kept": float(np.mean(kept)),
            "unique_lists": float(np.mean(unique)),
            "per_query": per_query,
        }
    return out


def _unique(top: np.ndarray) -> float:
    """Share of users whose top-10 (as a set) no other user gets: how personal the lists stay."""
    lists = [frozenset(row.tolist()) for row in top]
    counts: dict[frozenset[int], int] = {}
    for row in lists:
        counts[row] = counts.get(row, 0) + 1
    return sum(counts[row] == 1 for row in lists) / len(lists)


# ---- --select: choosing the blend on the validation queries ----------------------------------------------------
def _normalised(x: torch.Tensor, how: str) -> torch.Tensor:
    """Rows of [B, V+1] put on a common [0, 1] scale over their finite entries in columns 1..V (column 0 and −inf
    entries become −inf). minmax: (x − min) / (max − min); rank: the share of the row's finite entries ranked
    below (ties in column order)."""
    x = x.double()
    finite = torch.isfinite(x)
    finite[:, 0] = False
    if how == "minmax":
        lo = torch.where(finite, x, torch.inf).amin(1, keepdim=True)  # [B, 1]
        hi = torch.where(finite, x, -torch.inf).amax(1, keepdim=True)
        out = (x - lo) / (hi - lo).clamp_min(1e-12)
    elif how == "rank":
        order = torch.where(finite, x, -torch.inf).argsort(dim=1, stable=True)  # ascending; −inf first
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(x.shape[1]).expand_as(order))
        n_out = (~finite).sum(1, keepdim=True)  # [B, 1] entries ranked below every finite one
        out = (ranks - n_out).double() / (x.shape[1] - n_out).clamp_min(2).sub(1).double()
    else:
        raise ValueError(f"unknown normalisation {how!r}")
    return torch.where(finite, out, -torch.inf)


def _mix(model_scores: torch.Tensor, similarity: torch.Tensor, w: float) -> torch.Tensor:
    """(1 − w)·a + w·b for already normalised [B, V+1] and [1, V+1]; −inf where either is."""
    mixed = (1.0 - w) * model_scores + w * similarity
    return torch.where(torch.isfinite(model_scores) & torch.isfinite(similarity), mixed, -torch.inf)


def _select(
    model: Path, encoder: TextEncoder, queries: list[str], relevant: list[set[int]], users: int, seed: int
) -> dict[str, Any]:
    from llmrec.filters import apply_masks
    from llmrec.rerank import blend_query

    rec, histories = _recommender_and_users(model, encoder, users, seed)
    scores = rec.score_batch(histories)  # [U, V+1], once: the query does not change the model's scores
    excluded, blocked = [True] * len(histories), [rec.masks.blocked(None)] * len(histories)

    def top(blended: torch.Tensor, k: int = K) -> torch.Tensor:
        return apply_masks(blended.clone(), histories, excluded, blocked).topk(k, dim=1).indices  # [U, k]

    sims = [rec.query_similarity(q) for q in queries]  # [V+1] each
    plain = top(scores).numpy()
    # the fast "z" path is the library's: the same lists as recommend_batch
    lists = rec.recommend_batch(histories, K, exclude_seen=True, query=queries[0], query_weight=0.5)
    via_library = np.array([[rec.item_index[r.item_id] for r in recs] for recs in lists])
    assert (via_library == top(blend_query(scores, sims[0], 0.5)).numpy()).all(), "the fast path disagrees with recommend_batch"
    curves: dict[str, dict[str, dict[str, float]]] = {}
    per_query: dict[str, list[list[float]]] = {}
    for how in NORMALISERS:
        base = None if how == "z" else _normalised(scores, how)
        normal_sims = [None if how == "z" else _normalised(s.unsqueeze(0), how) for s in sims]
        curves[how], per_query[how] = {}, []
        for w in GRID:
            precision, kept, unique = [], [], []
            for sim, normal_sim, rel in zip(sims, normal_sims, relevant, strict=True):
                blended = blend_query(scores, sim, w) if base is None or normal_sim is None else _mix(base, normal_sim, w)
                t = top(blended).numpy()
                precision.append(_precision(t, rel))
                kept.append(_kept(t, plain))
                unique.append(_unique(t))
            per_query[how].append(precision)
            curves[how][f"{w:.2f}"] = {
                "precision@10": float(np.mean(precision)),
                "plain_top10_kept": float(np.mean(kept)),
                "unique_lists": float(np.mean(unique)),
            }
            print(how, f"w={w:.2f}", json.dumps(curves[how][f"{w:.2f}"]), flush=True)
    chosen = {how: _chosen_weight(curve) for how, curve in curves.items()}
    near_best = {how: _near_best_weight(curve) for how, curve in curves.items()}
    gates = {}
    model_scores = apply_masks(scores.clone(), histories, excluded, blocked)  # [U, V+1], seen items −inf
    for c in GATES:  # each user's c most similar unseen items, ordered by the model's score
        precision, unique = [], []
        for sim, rel in zip(sims, relevant, strict=True):
            candidates = top(sim.unsqueeze(0).expand_as(scores), c)  # [U, c]
            gated = torch.full_like(model_scores, -torch.inf).scatter_(1, candidates, model_scores.gather(1, candidates))
            t = gated.topk(K, dim=1).indices.numpy()  # [U, K]
            precision.append(_precision(t, rel))
            unique.append(_unique(t))
        gates[str(c)] = {"precision@10": float(np.mean(precision)), "unique_lists": float(np.mean(unique))}
        print("gate", c, json.dumps(gates[str(c)]), flush=True)
    decision = _decide({how: curves[how][f"{chosen[how]:.2f}"] for how in NORMALISERS})
    best = decision["normalisation"]
    return {
        "users": len(histories),
        "unique_lists_without_query": _unique(plain),
        "curves": curves,
        "chosen_weight": chosen,
        "near_best_weight": near_best,
        "gates": gates,
        "decision": decision,
        "per_query_at_choice": dict(zip(queries, per_query[best][GRID.index(chosen[best])], strict=True)),
    }


def _chosen_weight(curve: dict[str, dict[str, float]]) -> float:
    """The smallest grid weight whose precision@10 reaches TARGET; if none does, `_near_best_weight`."""
    reaching = [float(w) for w, p in curve.items() if p["precision@10"] >= TARGET]
    return min(reaching) if reaching else _near_best_weight(curve)


def _near_best_weight(curve: dict[str, dict[str, float]]) -> float:
    """The smallest grid weight whose precision@10 is within CLOSE of the curve's best."""
    best = max(p["precision@10"] for p in curve.values())
    return min(float(w) for w, p in curve.items() if p["precision@10"] >= best - CLOSE)


def _decide(at_choice: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Keep the library's z-score unless another normalisation, each at its chosen weight, is as precise (within
    0.005) and more personal (unique lists + 0.05), or more precise (+ 0.01) and as personal (within 0.02)."""
    z = at_choice["z"]
    wins = []
    for how, p in at_choice.items():
        dp, du = p["precision@10"] - z["precision@10"], p["unique_lists"] - z["unique_lists"]
        if how != "z" and ((dp >= -0.005 and du >= 0.05) or (dp >= 0.01 and du >= -0.02)):
            wins.append((p["precision@10"], p["unique_lists"], how))
    return {"normalisation": max(wins)[2] if wins else "z", "beats_z": sorted(h for *_, h in wins)}


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
    ap.add_argument("--queries", type=Path, default=QUERIES, help="the labelled queries (default: the test set)")
    ap.add_argument("--select", action="store_true", help="with --model: choose the blend (on validation queries)")
    ap.add_argument("--llm-layer", type=int, default=None, help="default: LLMEncoder's own (12)")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--weights", default="0.5,0.7,0.9,1.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if a.select and a.model is None:
        raise SystemExit("error: --select needs --model")
    torch.set_num_threads(a.threads)
    spec = json.loads(a.queries.read_text())
    ds = PreparedDataset.load(a.prepared)
    titles = ds.items.sort("item_idx")["title"].to_list()
    queries = [q["query"] for q in spec["queries"]]
    relevant = [label(titles, q) for q in spec["queries"]]
    result: dict[str, Any] = {
        "query_file": a.queries.name,
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
        if a.select:
            row["select"] = _select(a.model, encoder, queries, relevant, a.users, a.seed)
        elif a.model is not None:
            row["blended"] = _blended(a.model, encoder, queries, relevant, a.users, weights, a.seed)
            row["service"] = _service_latency(a.model, encoder, queries)
        result["encoders"][name] = row
        shown = {k: v for k, v in row.items() if k not in ("search_per_query", "select")}
        if "select" in row:
            shown["select"] = {k: row["select"][k] for k in ("users", "chosen_weight", "near_best_weight", "decision")}
        print(json.dumps(shown))
    result["load_average_after"] = os.getloadavg()
    if a.json is not None:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
