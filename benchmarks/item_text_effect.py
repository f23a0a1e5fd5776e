"""NDCG@10 of trained models, overall and by segment: rare targets and users with short histories.

Usage: python benchmarks/item_text_effect.py PREPARED_DIR MODEL_DIR [MODEL_DIR ...] [--max-count 5]
       [--short-user 5] [--split test --final] [--json OUT.json]

Full ranking over all items, seen items excluded. Validation targets by default; ``--split test`` reads the test
targets and must be marked ``--final`` (one read per reported recipe). Segments:
- "rare" targets: items with at most --max-count interactions in the training sequences (the long tail);
- "short" users: at most --short-user training items (the user's sequence before the validation target).
Any llmrec model folder loads (`llmrec.models.load_model`). Prints one JSON line per model, then (for two or more
models) a paired test of each model's per-example NDCG@10 against the first one's, overall and per segment.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from llmrec.data import PreparedDataset
from llmrec.eval.evaluate import compute_ranks, paired_test
from llmrec.eval.metrics import ndcg_at_k, summarize
from llmrec.models import load_model
from llmrec.training import make_score_fn


def _summary(ranks: np.ndarray, prefix: str) -> dict[str, float | int]:
    if not len(ranks):
        return {f"{prefix}n": 0}
    m = summarize(ranks, (10,))
    return {f"{prefix}n": len(ranks), f"{prefix}ndcg@10": round(m["ndcg@10"], 4), f"{prefix}recall@10": round(m["recall@10"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--max-count", type=int, default=5)
    ap.add_argument("--short-user", type=int, default=5)
    ap.add_argument("--split", choices=("valid", "test"), default="valid")
    ap.add_argument("--final", action="store_true", help="required with --split test: this run reads the test targets")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    if a.split == "test" and not a.final:
        sys.exit("error: --split test reads the test targets; mark the run --final")
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    ex = ds.eval_examples(a.split)
    valid = ds.eval_examples("valid")
    train_len = dict(zip(valid.user_idx.tolist(), (len(h) for h in valid.histories), strict=True))
    rare = ds.item_popularity()[ex.targets] <= a.max_count  # [N]
    short = np.array([train_len.get(int(u), 0) <= a.short_user for u in ex.user_idx])  # [N]
    segments = {"": np.ones(len(rare), dtype=bool), f"rare_le{a.max_count}_": rare, f"short_le{a.short_user}_": short}
    rows, per_example = [], []
    for path in a.models:
        model = load_model(path)
        model.eval() if isinstance(model, torch.nn.Module) else None
        with torch.no_grad():
            ranks = compute_ranks(make_score_fn(model), ex.histories, ex.targets, exclude_seen=True)
        row: dict[str, object] = {
            "model": path,
            "split": a.split,
            "text_dim": getattr(model, "config", None) and getattr(model.config, "text_dim", 0),
        }  # type: ignore[attr-defined]
        for name, mask in segments.items():
            row.update(_summary(ranks[mask], name))
        print(json.dumps(row), flush=True)
        rows.append(row)
        per_example.append(ndcg_at_k(ranks, 10))
    for path, values in zip(a.models[1:], per_example[1:], strict=True):
        for name, mask in segments.items():
            t = paired_test(values[mask], per_example[0][mask])
            line = {"paired_ndcg@10": f"{path} - {a.models[0]}", "segment": name.rstrip("_") or "all"}
            print(json.dumps({**line, **{k: round(v, 4) for k, v in t.items()}}), flush=True)
            rows.append({**line, **t})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
