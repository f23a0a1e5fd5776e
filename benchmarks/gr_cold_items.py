"""Cold items in generative retrieval: can the T5 reach items it never generated in training through their
text-derived semantic ids?

Usage: python benchmarks/gr_cold_items.py WORK_DIR [--threads 1] [--valid-warm-users 3000] [--tolerance 0.02] [--final]

WORK_DIR holds data/ (a prepared dataset) and t5/ (a t5-semantic artifact trained on it, e.g. by
benchmarks/seq2seq_beauty.py). The cold items are the items that were never a training target of that T5 (its
`is_seen` mask): on a cold-item split (`llmrec data prepare --split cold-item`) the held-out items, on the standard
split the few items whose every event is a first event or a validation / test target. Their semantic ids come from
their text like every other item's, so beam search can produce them; the T5 simply never learned to.

Rows (test targets split into cold and warm; Recall@10 / NDCG@10 with 95% bootstrap CIs):
- the T5 as trained (plain trie-constrained beam search, 20 beams);
- + cold weight: every cold item joins the beams with its exact log-probability + log w (T5SemanticConfig.cold_weight);
  w chosen on validation: the largest cold Recall@10 whose warm NDCG@10 stays >= (1 - tolerance) x the plain T5's
  (validation: every cold target and a fixed random sample of warm targets);
- + cold quota s/10 (TIGER's epsilon): the last s of the 10 places hold the T5's best cold items;
- the new-items list: the T5 ranks the cold items only.
The reference is a random ranking of the cold items (Recall@10 = 10 / M for M cold items). Test targets are read
only with --final. Reuses the scoring helpers of benchmarks/cold_items.py (the same rules as its ml-100k rows).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_items import (  # noqa: E402  (a sibling benchmark script, not a package)
    T5_WEIGHTS,
    _calibrate,
    _cold_ranks,
    _quota_ranks,
    _random_reference,
    _ranks,
    _summary,
    _t5_full_scores,
    _with_cold_offset,
)
from llmrec.data import PreparedDataset  # noqa: E402
from llmrec.models.seq2seq import T5SemanticRecommender  # noqa: E402

QUOTA_SLOTS = (1, 2)


def _summ(ranks: np.ndarray, mask: np.ndarray, n_boot: int) -> dict[str, Any]:
    """`_summary`, or NaNs with n = 0 when no target falls in the mask (a tiny split may have no cold target)."""
    if not mask.any():
        return {
            "n": 0,
            **{k: math.nan for k in ("recall@10", "ndcg@10")},
            "recall@10_ci": [math.nan] * 2,
            "ndcg@10_ci": [math.nan] * 2,
        }
    return _summary(ranks, mask, n_boot)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--valid-warm-users", type=int, default=3000)
    ap.add_argument("--tolerance", type=float, default=0.02, help="warm NDCG@10 loss the cold weight may cost (0.02)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--final", action="store_true", help="read the test targets (only for the reported run)")
    a = ap.parse_args()
    if not 0.0 <= a.tolerance < 1.0:
        ap.error(f"--tolerance must be in [0, 1), got {a.tolerance}")
    for sub in ("data/manifest.json", "t5/config.json"):
        if not (a.work / sub).is_file():
            print(f"error: {a.work / sub}: not found (WORK_DIR needs data/ and t5/)", file=sys.stderr)
            return 2
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    ds = PreparedDataset.load(a.work / "data")
    model = T5SemanticRecommender.from_pretrained(a.work / "t5").eval()
    is_cold = ~model.is_seen.numpy().copy()
    is_cold[0] = False
    cold = torch.from_numpy(np.flatnonzero(is_cold))
    n_cold = len(cold)
    _log(f"{ds.n_items} items, {n_cold} never a training target of the T5 ({int(ds.is_cold_item.sum())} held out by the split)")

    valid = ds.eval_examples("valid")
    cold_v_all = is_cold[valid.targets]
    warm_idx = np.flatnonzero(~cold_v_all)
    rng = np.random.default_rng(0)
    warm_pick = rng.choice(warm_idx, size=min(a.valid_warm_users, len(warm_idx)), replace=False)
    v_idx = np.sort(np.concatenate([np.flatnonzero(cold_v_all), warm_pick]))
    v_hist, v_tgt = [valid.histories[i] for i in v_idx], valid.targets[v_idx]
    cold_v = is_cold[v_tgt]
    t0 = time.perf_counter()
    with torch.no_grad():
        sv = _t5_full_scores(model, v_hist, cold)
    _log(f"validation: {len(v_idx)} users ({int(cold_v.sum())} cold targets) scored in {time.perf_counter() - t0:.0f}s")
    offsets = [-math.inf, *[math.log(w) for w in T5_WEIGHTS]]

    def ranks_at(scores: tuple[torch.Tensor, torch.Tensor], targets: np.ndarray, off: float) -> np.ndarray:
        full, cs = scores
        return _ranks(full if off == -math.inf else _with_cold_offset(full, cold, cs, off), targets)

    chosen, grid, met = _calibrate(lambda off: ranks_at(sv, v_tgt, off), v_tgt, cold_v, offsets, keep=1.0 - a.tolerance)
    _log(f"cold weight {math.exp(chosen):.3g} chosen on validation (warm floor kept: {met})")

    out: dict[str, Any] = {
        "work": str(a.work),
        "reported_split": "test" if a.final else "valid (dry run without --final: the calibration users again)",
        "items": ds.n_items,
        "cold_items": n_cold,
        "held_out_by_split": int(ds.is_cold_item.sum()),
        "cold_weight": math.exp(chosen),
        "cold_weight_valid_grid": grid,
        "warm_tolerance": a.tolerance,
        "valid_users": {"cold": int(cold_v.sum()), "warm": int((~cold_v).sum())},
        "random_over_cold_items": _random_reference(n_cold),
        "random_over_all_items": _random_reference(ds.n_items),
    }
    if a.final:
        test = ds.eval_examples("test")
        t_hist, t_tgt = test.histories, test.targets
    else:
        t_hist, t_tgt = v_hist, v_tgt
    cold_t = is_cold[t_tgt]
    t0 = time.perf_counter()
    with torch.no_grad():
        st = sv if not a.final else _t5_full_scores(model, t_hist, cold)
    out["scored_s"] = round(time.perf_counter() - t0, 1)
    rows: dict[str, Any] = {}
    for label, off in (("t5 as trained", -math.inf), (f"t5 + cold weight {math.exp(chosen):.3g}", chosen)):
        r = ranks_at(st, t_tgt, off)
        rows[label] = {m: _summ(r, mask, a.n_boot) for m, mask in (("cold", cold_t), ("warm", ~cold_t))}
    for s in QUOTA_SLOTS:
        r = _quota_ranks(st[0], cold, st[1], t_tgt, s)
        rows[f"t5 + cold quota {s}/10"] = {m: _summ(r, mask, a.n_boot) for m, mask in (("cold", cold_t), ("warm", ~cold_t))}
    shelf = _cold_ranks(st[1][torch.from_numpy(cold_t)], cold, t_tgt[cold_t]).numpy()
    rows["new-items list (cold items only)"] = {"cold": _summ(shelf, np.ones(len(shelf), dtype=bool), a.n_boot)}
    out["test_targets"] = {"cold": int(cold_t.sum()), "warm": int((~cold_t).sum())}
    out["rows"] = rows
    rnd = out["random_over_cold_items"]["recall@10"]
    base = rows["t5 as trained"]["warm"]["ndcg@10"]
    lines = [
        f"{out['test_targets']['cold']} cold targets ({n_cold} cold items), {out['test_targets']['warm']} warm; "
        f"random over the cold items: Recall@10 {rnd:.4f}",
        "",
        "| row | cold R@10 [95% CI] | x random over cold | cold N@10 | warm N@10 | warm / as trained |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in rows.items():
        c = v["cold"]
        w = v.get("warm")
        lines.append(
            f"| {k} | {c['recall@10']:.4f} [{c['recall@10_ci'][0]:.4f}, {c['recall@10_ci'][1]:.4f}] | "
            f"{c['recall@10'] / rnd:.2f}x | {c['ndcg@10']:.4f} | "
            + (f"{w['ndcg@10']:.4f} | {w['ndcg@10'] / base:.3f} |" if w else " | |")
        )
    out["table_md"] = lines
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    name = "gr_cold_items.json" if a.final else "gr_cold_items_valid.json"
    (a.work / name).write_text(json.dumps(out, indent=1, default=float))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
