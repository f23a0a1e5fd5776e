"""Validation NDCG@10 of next-item-lm models, overall and on targets with few training interactions.

Usage: python benchmarks/item_text_effect.py PREPARED_DIR MODEL_DIR [MODEL_DIR ...] [--max-count 5]

Full ranking over all items, seen items excluded, validation targets only (the test targets are not read).
"Rare" targets are items with at most --max-count interactions in the training sequences. Prints one JSON
line per model, then (for two or more models) a paired test of each model's NDCG@10 against the first one's.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from llmrec.data import PreparedDataset
from llmrec.eval.evaluate import compute_ranks, paired_test
from llmrec.eval.metrics import ndcg_at_k, summarize
from llmrec.models.next_item_lm import NextItemLM
from llmrec.training import make_score_fn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--max-count", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    ex = ds.eval_examples("valid")
    rare = ds.item_popularity()[ex.targets] <= a.max_count  # [N]
    per_user = []
    for path in a.models:
        model = NextItemLM.from_pretrained(path).eval()
        with torch.no_grad():
            ranks = compute_ranks(make_score_fn(model), ex.histories, ex.targets, exclude_seen=True)
        row = {
            "model": path,
            "text_dim": model.config.text_dim,
            "valid_ndcg@10": round(summarize(ranks, (10,))["ndcg@10"], 4),
            "valid_recall@10": round(summarize(ranks, (10,))["recall@10"], 4),
            f"rare_le{a.max_count}_n": int(rare.sum()),
            f"rare_le{a.max_count}_ndcg@10": round(summarize(ranks[rare], (10,))["ndcg@10"], 4) if rare.any() else None,
            f"rare_le{a.max_count}_recall@10": round(summarize(ranks[rare], (10,))["recall@10"], 4) if rare.any() else None,
            f"rare_le{a.max_count}_recall@100": round(float((ranks[rare] <= 100).mean()), 4) if rare.any() else None,
            f"rare_le{a.max_count}_median_rank": float(np.median(ranks[rare])) if rare.any() else None,
        }
        print(json.dumps(row), flush=True)
        per_user.append(ndcg_at_k(ranks, 10))
    for path, values in zip(a.models[1:], per_user[1:], strict=True):
        t = paired_test(values, per_user[0])
        print(json.dumps({"paired_ndcg@10": f"{path} - {a.models[0]}", **{k: round(v, 4) for k, v in t.items()}}))


if __name__ == "__main__":
    main()
