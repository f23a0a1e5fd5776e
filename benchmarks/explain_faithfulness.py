"""Faithfulness and speed of the explanations on a trained model artifact (docs/trust.md).

Usage: python benchmarks/explain_faithfulness.py MODEL_DIR OUT_DIR [--users 300] [--threads 1] [--curve-steps 10]
       [--rule singles]

- Deletion test (llmrec.explain.attribution.deletion_test) on validation histories (each user's sequence without
  its last two items), explaining the model's top-1 unseen item: how often deleting the top-2 attributed history
  items lowers its score more than deleting 2 random ones (5 random pairs per user), for occlusion and for
  gradient × input; the deletion curves (m = 0..curve_steps) go to OUT_DIR/deletion_curve.png. Only histories
  with more than `--curve-steps` items in the model's window are cases (the others are skipped and counted):
  on ml-100k that is every user; on beauty (median validation history: 4 items) `--curve-steps 10` keeps the
  long-history minority, and `--curve-steps 2` keeps every history of 3 or more items.
  The occlusion test is repeated over the cases whose top-1 explanation names an item (what a user reads).
- Deletion of what the text cites: for every sampled history (3 items or more in the window) whose top-1
  explanation names items, delete the cited items (each occurrence in the window) vs as many random window items
  (5 draws): how often the cited deletion lowers the item's score more (a draw of the cited items themselves is a
  tie, no win), also over the draws that differ from the cited items. With a group reason the text cites the
  group's most attributed items, not necessarily the history's top-2, so this is the faithfulness of the words.
- Reason-naming share: of the top-5 explanations `Recommender.explain` gives the sampled users (their validation
  histories, as in the deletion test: no explanation of the test split), how many name a history item (``Explanation.cited`` not empty), overall and by the
  number of items in the model's window (1-3, 4-10, 11+); the same for two models of the same architecture that
  know nothing (the null the rule must not fool), each explaining its own top-5: **shuffled** (each weight
  tensor's values permuted, the trained scales kept) and **reinit** (weights re-drawn from the initialisation).
- Latency of occlusion (and gradient × input) for one 50-item history, explaining the top-5 items: median of
  50 runs after 5 warm-up runs; `occlusion_reasons` (the catalogue-wide test explain uses), the same with single
  items only (the rule before groups), and the former path (occlusion of the 5 items + the score spread).
`--rule singles` measures the rule before groups (single items only, REASON_LEVEL for every window) through the
same `Recommender.explain` path. Writes OUT_DIR/explain.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.data.sequences import pad_left
from llmrec.explain import attribution
from llmrec.explain.attribution import (
    deletion_test,
    gradient_x_input,
    occlusion,
    occlusion_reasons,
    score_spread,
    target_scores,
)
from llmrec.recommend import Recommender


def _median_ms(fn: Callable[[], object], runs: int = 50) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def _shuffled(model: Any, seed: int = 1) -> Any:
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            flat = p.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=g)])
    return out.eval()


def _reinit(model: Any, seed: int = 1) -> Any:
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    out.apply(type(out)._init_weights)  # Linear and Embedding; TV-Rec's filter taps as in its __init__:
    for m in out.modules():
        if hasattr(m, "coef") and hasattr(m, "basis"):
            with torch.no_grad():
                m.coef.normal_(0.0, 1e-3)
                m.basis.normal_(0.0, 1e-3)
    return out.eval()


def _naming_share(rec: Recommender, served: list[np.ndarray]) -> dict[str, Any]:
    naming: dict[str, list[int]] = {"1-3": [0, 0], "4-10": [0, 0], "11+": [0, 0]}
    for h in served:
        w = min(len(h), rec.max_seq_len)
        bucket = "1-3" if w <= 3 else "4-10" if w <= 10 else "11+"
        explained = rec.explain_history(h, k=5)
        naming[bucket][0] += sum(bool(e.cited) for e in explained)
        naming[bucket][1] += len(explained)
    named, total = sum(v[0] for v in naming.values()), sum(v[1] for v in naming.values())
    return {
        "all": round(named / max(1, total), 4),
        **{f"window {b}": round(v[0] / v[1], 4) if v[1] else None for b, v in naming.items()},
        "explanations": total,
    }


def _cited_deletion(rec: Recommender, histories: list[np.ndarray], n_random: int = 5, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    wins: list[bool] = []
    identical: list[bool] = []
    drops_cited: list[float] = []
    drops_random: list[float] = []
    n_cited: list[int] = []
    for h in histories:
        window = range(max(0, len(h) - rec.max_seq_len), len(h))
        if len(window) < 3:
            continue
        (e,) = rec.explain_history(h, k=1)
        if not e.cited:
            continue
        j = rec.item_index[e.recommendation.item_id]
        cited = [t for t in window if rec.raw_ids[h[t] - 1] in e.cited]  # every occurrence in the window
        draws = [window.start + rng.choice(len(window), len(cited), replace=False) for _ in range(n_random)]
        variants = [h, np.delete(h, cited)] + [np.delete(h, d) for d in draws]
        s = target_scores(rec.model, pad_left(variants, rec.max_seq_len), torch.tensor([j]))[:, 0].numpy()
        drop_cited, drop_random = s[0] - s[1], s[0] - s[2:]  # scalar, [R]
        wins.extend((drop_cited > drop_random).tolist())
        identical.extend(set(d.tolist()) == set(cited) for d in draws)
        drops_cited.append(float(drop_cited))
        drops_random.append(float(drop_random.mean()))
        n_cited.append(len(e.cited))
    if not wins:
        return {"cases": 0}
    distinct = ~np.array(identical)
    return {
        "cases": len(drops_cited),
        "win_rate": round(float(np.mean(wins)), 4),
        "identical_rate": round(float(np.mean(identical)), 4),
        "win_rate_distinct": round(float(np.mean(np.array(wins)[distinct])), 4) if distinct.any() else None,
        "mean_drop_cited": round(float(np.mean(drops_cited)), 4),
        "mean_drop_random": round(float(np.mean(drops_random)), 4),
        "mean_items_cited": round(float(np.mean(n_cited)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, default=300, help="users sampled (seeded) for the deletion test")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rule", choices=("default", "singles"), default="default", help="singles: the rule before groups")
    ap.add_argument(
        "--curve-steps", type=int, default=10, help="deletion curve length; histories with at most this many items are skipped"
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.rule == "singles":  # occlusion_reasons reads these on each call that Recommender.explain makes
        attribution.REASON_GROUPS = ()
        attribution.REASON_LEVEL_LONG = attribution.REASON_LEVEL
    a.out.mkdir(parents=True, exist_ok=True)
    rec = Recommender.load(a.model)
    valid = [h[:-2] for h in rec.histories.values()]
    pick = np.random.default_rng(0).choice(len(valid), min(a.users, len(valid)), replace=False)
    histories = [valid[i] for i in sorted(pick)]

    window = np.array([min(len(h), rec.max_seq_len) for h in histories])
    results: dict[str, object] = {
        "model": str(a.model),
        "users": len(histories),
        "threads": a.threads,
        "curve_steps": a.curve_steps,
        "rule": a.rule,
        "reason_groups": list(attribution.REASON_GROUPS),
        "reason_levels": [attribution.REASON_LEVEL, attribution.REASON_LEVEL_LONG],
        "users_skipped_short_history": int((window <= a.curve_steps).sum()),
        "history_window_length_quartiles": np.percentile(window[window > a.curve_steps], [25, 50, 75]).tolist()
        if (window > a.curve_steps).any()
        else None,
    }
    curves = {}
    for method in ("occlusion", "gradient"):
        t = time.perf_counter()
        r = deletion_test(rec.model, histories, rec.max_seq_len, method=method, n_remove=2, curve_steps=a.curve_steps, n_random=5)
        results[method] = {**r.to_dict(), "seconds": round(time.perf_counter() - t, 1)}
        curves[method] = r
        print(
            method,
            f"cases {r.n_cases}",
            f"win rate {r.win_rate:.3f}",
            f"drop top-2 {r.mean_drop_attributed:.3f}",
            f"random {r.mean_drop_random:.3f}",
        )
    # The same test over the cases whose top-1 explanation names an item: the faithfulness of what a user reads.
    named_cases = [h for h in histories if rec.explain_history(h, k=1)[0].cited]
    try:
        r = deletion_test(rec.model, named_cases, rec.max_seq_len, n_remove=2, curve_steps=a.curve_steps, n_random=5)
        results["occlusion_named_only"] = r.to_dict()
        print("occlusion, named top-1 only", f"cases {r.n_cases}", f"win rate {r.win_rate:.3f}")
    except ValueError as err:  # no named case long enough
        results["occlusion_named_only"] = {"error": str(err)}

    results["cited_deletion_top1"] = _cited_deletion(rec, histories)
    print("deleting what the top-1 text cites vs as many random items:", json.dumps(results["cited_deletion_top1"]))

    served = histories  # validation histories, all lengths (the deletion test skips short ones)
    results["naming_share_top5"] = _naming_share(rec, served)
    print("share of top-5 explanations that name an item:", json.dumps(results["naming_share_top5"]))
    trained = rec.model
    for name, null in (("shuffled", _shuffled(trained)), ("reinit", _reinit(trained))):
        rec.model = null  # the null explains its own top-5 through the same path
        try:
            results[f"naming_share_top5_{name}"] = _naming_share(rec, served)
        finally:
            rec.model = trained
        print(f"... by the {name} model:", json.dumps(results[f"naming_share_top5_{name}"]))

    h50 = next(h for h in valid if len(h) >= 50)[-50:]
    top5 = rec.score_batch([h50])[0].topk(5).indices.numpy()
    results["latency_ms_50_items"] = {
        "occlusion_top1": _median_ms(lambda: occlusion(rec.model, h50, top5[:1], rec.max_seq_len)),
        "occlusion_top5": _median_ms(lambda: occlusion(rec.model, h50, top5, rec.max_seq_len)),
        "gradient_top1": _median_ms(lambda: gradient_x_input(rec.model, h50, top5[:1], rec.max_seq_len)),
        "occlusion_reasons_top5": _median_ms(lambda: occlusion_reasons(rec.model, h50, top5, rec.max_seq_len)),
        "occlusion_reasons_top5_singles_only": _median_ms(
            lambda: occlusion_reasons(rec.model, h50, top5, rec.max_seq_len, level=attribution.REASON_LEVEL, group_sizes=())
        ),
        "former_occlusion_top5_and_spread": _median_ms(
            lambda: (occlusion(rec.model, h50, top5, rec.max_seq_len), score_spread(rec.model, h50, rec.max_seq_len))
        ),
        "explain_k5": _median_ms(lambda: rec.explain(history=[rec.raw_ids[i - 1] for i in h50], k=5), runs=20),
    }
    print("latency (ms, 50-item history):", json.dumps(results["latency_ms_50_items"]))
    (a.out / "explain.json").write_text(json.dumps(results, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    m = np.arange(len(curves["occlusion"].curve_attributed))
    ax.plot(m, curves["occlusion"].curve_attributed, "o-", label="top attributed (occlusion)")
    ax.plot(m, curves["gradient"].curve_attributed, "s-", label="top attributed (gradient × input)")
    ax.plot(m, curves["occlusion"].curve_random, "x--", label="random")
    ax.set_xlabel("history items deleted")
    ax.set_ylabel("mean drop of the top-1 item's score")
    ax.set_title(f"Deletion curve, {curves['occlusion'].n_cases} users")
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out / "deletion_curve.png", dpi=120)
    print("wrote", a.out / "explain.json", a.out / "deletion_curve.png")


if __name__ == "__main__":
    main()
