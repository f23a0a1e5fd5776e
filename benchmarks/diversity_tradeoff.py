"""Accuracy–diversity trade-off of MMR re-ranking on the validation split (docs/trust.md).

Usage: python benchmarks/diversity_tradeoff.py MODEL_DIR OUT_DIR [--candidates 100] [--threads 1]

For every user: history = sequence without its last two items, target = the second-to-last item (the validation
example of the leave-one-out split). The model scores all items, seen items are excluded, the top
--candidates go through MMR (llmrec.rerank.mmr_rerank, Jaccard similarity of genres) for λ = 0, 0.1, ..., 1,
and the top-10 is scored: NDCG@10 (one relevant item), ILD@10, coverage@10, Gini@10 and novelty@10
(llmrec.eval.diversity). Writes OUT_DIR/diversity.json and OUT_DIR/diversity_tradeoff.png (NDCG@10 against ILD@10).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from llmrec.eval.diversity import diversity_report
from llmrec.recommend import Recommender
from llmrec.rerank import mmr_rerank

K = 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    rec = Recommender.load(a.model)
    seqs = list(rec.histories.values())
    histories = [s[:-2] for s in seqs]
    targets = np.array([s[-2] for s in seqs])
    scores = torch.cat([rec.score_batch(histories[i : i + 256]) for i in range(0, len(histories), 256)])  # [U, V+1]
    for i, h in enumerate(histories):
        scores[i, torch.from_numpy(h)] = float("-inf")
    top = scores.topk(a.candidates, dim=1)
    cand, val = top.indices.numpy(), top.values.numpy()
    features, metric = rec.diversity_features()
    item_users = np.bincount(np.concatenate([np.unique(h) for h in histories]), minlength=rec.n_items + 1)

    rows = []
    for lam in np.round(np.linspace(0.0, 1.0, 11), 2):
        lists = mmr_rerank(cand, val, features, K, float(lam), metric)  # [U, K]
        hit = lists == targets[:, None]
        pos = hit.argmax(1)
        ndcg = np.where(hit.any(1), 1.0 / np.log2(pos + 2.0), 0.0).mean()
        report = diversity_report(
            lists, n_items=rec.n_items, features=features, metric=metric, item_users=item_users, n_users=len(histories)
        )
        row = {"lambda": float(lam), f"ndcg@{K}": float(ndcg), f"hit@{K}": float(hit.any(1).mean()), **report}
        rows.append(row)
        print(json.dumps({k: round(v, 4) for k, v in row.items()}))
    result = {"model": str(a.model), "users": len(histories), "candidates": a.candidates, "metric": metric, "rows": rows}
    (a.out / "diversity.json").write_text(json.dumps(result, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    x, y = [r[f"ild@{K}"] for r in rows], [r[f"ndcg@{K}"] for r in rows]
    ax.plot(x, y, "o-")
    for r, xi, yi in zip(rows, x, y, strict=True):
        ax.annotate(f"λ={r['lambda']:.1f}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"ILD@{K} (1 − Jaccard of genres)")
    ax.set_ylabel(f"NDCG@{K} (validation)")
    ax.set_title(f"MMR on the top-{a.candidates}: accuracy vs diversity")
    fig.tight_layout()
    fig.savefig(a.out / "diversity_tradeoff.png", dpi=120)
    print("wrote", a.out / "diversity.json", a.out / "diversity_tradeoff.png")


if __name__ == "__main__":
    main()
