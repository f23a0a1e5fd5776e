"""End-to-end time of `llmrec recommend --query` in a fresh process, cold and warm; and whether the stored float16
catalogue embeddings rank like float32 ones encoded on the fly.

Usage: python benchmarks/query_latency.py --model M --user U [--query Q] [--repeats 3] [--work DIR] [--threads N]
                                         [--check-ranking]

Each case runs ``llmrec recommend --model M --user U -k 10 --json [--query Q]`` as a new process (Python start,
imports, model and encoder load, the query) and times it by wall clock:

    plain        no query: what any command-line recommendation costs
    query-cold   the first query, with an empty text cache (LLMREC_CACHE_DIR is a fresh folder under --work)
    query-warm   the next --repeats queries, same cache, each right after a plain call (both see the same load;
                 query_minus_plain is what the query adds)

For an artifact that stores its catalogue's text embeddings (trained with model.item_text = true, or exported),
cold and warm differ only by the operating system's file cache; without them, the cold call encodes the catalogue.
--check-ranking: encode the catalogue in float32 here and compare each query's similarity and top-10 with the
stored (float16) vectors. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUERIES = [
    "a light-hearted animated film for the kids",
    "a tense thriller with a twist",
    "a romantic comedy set in new york",
    "a war film",
    "science fiction in space",
]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return time.perf_counter() - t


def check_ranking(model: Path) -> dict[str, float]:
    """Stored float16 vs float32 encoded now: largest similarity difference, and top-10 agreement per query."""
    import numpy as np

    from llmrec.index.text_encoder import default_encoder, encode_items
    from llmrec.index.text_store import read_item_text
    from llmrec.recommend import Recommender

    rec = Recommender.load(model)
    domain = str(rec.meta.get("domain") or "generic")
    enc = default_encoder()
    from llmrec.index.text_encoder import item_texts

    stored, why = read_item_text(model, enc.name, item_texts(rec.items, domain))
    if stored is None:
        raise SystemExit(f"{model}: {why}")
    fresh = encode_items(rec.items, domain, enc, None, progress=False)  # [V+1, D] float32, no cache
    diffs, same_top = [], []
    for q in QUERIES:
        v = enc.encode([q])[0]
        a, b = stored[1:] @ v, fresh[1:] @ v
        diffs.append(float(np.abs(a - b).max()))
        same_top.append(float(list(np.argsort(-a)[:10]) == list(np.argsort(-b)[:10])))
    return {"max_abs_similarity_diff": max(diffs), "top10_identical_share": statistics.mean(same_top)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--user", required=True)
    ap.add_argument("--query", default=QUERIES[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(".tmp/query-latency"))
    ap.add_argument("--check-ranking", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of each call (0: torch's default)")
    a = ap.parse_args()
    llmrec = str(Path(sys.executable).with_name("llmrec"))
    cache = a.work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "LLMREC_CACHE_DIR": str(cache)}
    if a.threads:
        env["OMP_NUM_THREADS"] = str(a.threads)  # torch's thread count in the child
    base = [llmrec, "recommend", "--model", str(a.model), "--user", a.user, "-k", "10", "--json"]
    cold = _run([*base, "--query", a.query], env)
    plain, warm = [], []
    for _ in range(a.repeats):  # alternated, so both see the same machine load
        plain.append(_run(base, env))
        warm.append(_run([*base, "--query", a.query], env))
    result: dict[str, object] = {
        "model": str(a.model),
        "stores_text_embeddings": (a.model / "item_text.json").is_file(),
        "plain_s": [round(t, 2) for t in plain],
        "query_cold_s": round(cold, 2),
        "query_warm_s": [round(t, 2) for t in warm],
        "query_warm_median_s": round(statistics.median(warm), 2),
        "plain_median_s": round(statistics.median(plain), 2),
        "query_minus_plain_median_s": round(statistics.median(q - p for q, p in zip(warm, plain, strict=True)), 2),
        "threads": a.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if a.check_ranking:
        result.update(check_ranking(a.model))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
