"""How strong must an attribution be before an explanation may name a history item? (docs/trust.md)

Usage: python benchmarks/explain_threshold.py MODEL_DIR OUT_JSON [--users 200] [-k 5] [--threads 1] [--seed 0]

For `--users` stored histories (a seeded draw) the trained model recommends its top-k unseen items, and each is
explained by occlusion (`llmrec.explain.attribution.occlusion`). The explanation's strength is the strongest
per-item attribution divided by the standard deviation of the model's scores over the catalogue for that history
(`llmrec.explain.attribution.strength`): a drop of 0.01 is nothing when the scores spread over several units.
The same is measured for two models that explain nothing, with the same architecture and the same recommended
items: **reinit** (the weights re-drawn from the model's own initialisation) and **shuffled** (each weight tensor's
values permuted, so the weight scales stay those of the trained model). The threshold is the larger of the two
null models' 95th percentiles: an item is named only when its attribution is stronger than 95% of what a model
with no knowledge produces. Writes the percentiles, the threshold and the share of the trained model's
explanations that keep an item to OUT_JSON, and prints them.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.explain.attribution import occlusion, score_spread, strength
from llmrec.recommend import Recommender

QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)


def _reinit(model: Any, seed: int) -> Any:
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    out.apply(type(out)._init_weights)
    return out.eval()


def _shuffled(model: Any, seed: int) -> Any:
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            flat = p.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=g)])
    return out.eval()


def _measure(
    rec: Recommender, model: Any, histories: list[np.ndarray], k: int, rng: np.random.Generator | None = None
) -> dict[str, list[float]]:
    """Strongest per-item attribution (score units) and its strength, for each (history, recommended item); with
    `rng`, for k random unseen catalogue items instead of the recommended ones."""
    weights: list[float] = []
    strengths: list[float] = []
    for h in histories:
        if rng is None:
            recs = rec.recommend_batch([h], k, exclude_seen=True)[0]  # the trained model's items, for every variant
            targets = [rec.item_index[r.item_id] for r in recs]
        else:
            unseen = np.setdiff1d(np.arange(1, rec.n_items + 1), h)
            targets = rng.choice(unseen, size=k, replace=False).tolist()
        w = occlusion(model, h, targets, rec.max_seq_len)  # [K, T]
        spread = score_spread(model, h, rec.max_seq_len)
        for j, row in zip(targets, w, strict=True):
            per_item: dict[int, float] = {}
            for item, a in zip(h.tolist(), row.tolist(), strict=True):
                if item != j:
                    per_item[item] = per_item.get(item, 0.0) + a
            top = max(per_item.values(), default=0.0)
            weights.append(top)
            strengths.append(strength(top, spread))
    return {"weight": weights, "strength": strengths}


def _quantiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{round(q * 100)}": float(np.quantile(arr, q)) for q in QUANTILES} | {"mean": float(arr.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rec = Recommender.load(args.model, device="cpu")
    rng = np.random.default_rng(args.seed)
    users = sorted(rec.histories)
    chosen = rng.choice(len(users), size=min(args.users, len(users)), replace=False)
    histories = [rec.histories[users[i]] for i in sorted(chosen)]
    histories = [h for h in histories if len(h)]

    variants = {
        "trained": rec.model,
        "reinit": _reinit(rec.model, args.seed),
        "shuffled": _shuffled(rec.model, args.seed),
    }
    measured = {name: _measure(rec, model, histories, args.k) for name, model in variants.items()}
    measured["random-item"] = _measure(rec, rec.model, histories, args.k, np.random.default_rng(args.seed))
    threshold = float(np.quantile(measured["random-item"]["strength"], 0.95))
    trained = np.asarray(measured["trained"]["strength"])
    result = {
        "model": str(args.model),
        "histories": len(histories),
        "explanations": len(trained),
        "k": args.k,
        "threshold": threshold,
        "trained_named_share": float((trained >= threshold).mean()),
        "named_share": {n: float((np.asarray(m["strength"]) >= threshold).mean()) for n, m in measured.items()},
        "strength": {n: _quantiles(m["strength"]) for n, m in measured.items()},
        "weight": {n: _quantiles(m["weight"]) for n, m in measured.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(trained)} explanations of {len(histories)} histories (top-{args.k})")
    print(f"{'':10} {'strength p50':>13} {'p95':>8} {'weight p50':>11} {'p95':>8}")
    for n in measured:
        s, w = result["strength"][n], result["weight"][n]
        print(f"{n:10} {s['p50']:13.4f} {s['p95']:8.4f} {w['p50']:11.4f} {w['p95']:8.4f}")
    print(f"threshold (p95 strength of random unseen items under the trained model): {threshold:.4f}")
    print(f"trained explanations that name an item: {result['trained_named_share']:.1%}")


if __name__ == "__main__":
    main()
