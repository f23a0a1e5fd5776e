"""Choose the level of the test for a reason (`llmrec.explain.attribution.occlusion_reasons`) against null models.

Usage: python benchmarks/explain_reason_level.py MODEL_DIR OUT_JSON [--users 300] [--seed 1] [--levels 0.05,0.1,0.2]
       [--groups default,none] [--threads 1]

For a seeded sample of validation histories (each stored sequence without its last two items; use a --seed other
than explain_faithfulness.py's 0, so the level is not chosen on the users it is reported on), each model explains
its own top-5 unseen items, and an explanation names an item when some history item (not the recommended item
itself) passes the test at that level with a positive occlusion weight: what `Recommender.explain` cites. Each
level is tried with and without groups (`--groups`: "default" tries the newest k items deleted together for k in
REASON_GROUPS when no single item passes, "none" single items only, the rule before groups); the level "auto" is
`reason_level` (REASON_LEVEL, REASON_LEVEL_LONG for windows over LONG_WINDOW items), what explain uses. Models:
the trained one, **shuffled** (each weight tensor's values permuted) and **reinit** (weights re-drawn from the
initialisation), as in explain_faithfulness.py; "former" is the former global rule (strongest occlusion weight at
least MIN_STRENGTH standard deviations of the catalogue's scores). Pick the largest level (and a group size) at which the shuffled null
names at most about 10%. Writes the shares (overall and by window length) to OUT_JSON and prints them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explain_faithfulness import _reinit, _shuffled  # same directory: run as a script
from llmrec.explain.attribution import is_weak, occlusion_reasons, score_spread
from llmrec.recommend import Recommender


def _shares(rec: Recommender, histories: list[np.ndarray], levels: list[float | None], groups: list[str]) -> dict[str, Any]:
    rules = [(lv, g) for g in groups for lv in levels]
    keys: list[Any] = [*(f"level {lv or 'auto'}, groups {g}" for lv, g in rules), "former"]
    named: dict[Any, dict[str, list[int]]] = {key: {"1-3": [0, 0], "4-10": [0, 0], "11+": [0, 0]} for key in keys}
    for h in histories:
        w = min(len(h), rec.max_seq_len)
        bucket = "1-3" if w <= 3 else "4-10" if w <= 10 else "11+"
        targets = [rec.item_index[r.item_id] for r in rec.recommend_batch([h], 5, exclude_seen=True)[0]]
        for lv, g in rules:
            sizes = () if g == "none" else None
            weights, reasons = occlusion_reasons(rec.model, h, targets, rec.max_seq_len, level=lv, group_sizes=sizes)
            for j, wk, rk in zip(targets, weights, reasons, strict=True):
                named[f"level {lv or 'auto'}, groups {g}"][bucket][0] += bool(np.any(rk & (wk > 0) & (h != j)))
                named[f"level {lv or 'auto'}, groups {g}"][bucket][1] += 1
        spread = score_spread(rec.model, h, rec.max_seq_len)  # the former rule: strongest weight >= MIN_STRENGTH x spread
        for j, wk in zip(targets, weights, strict=True):
            per_item: dict[int, float] = {}
            for item, a in zip(h.tolist(), wk.tolist(), strict=True):
                if item != j:
                    per_item[item] = per_item.get(item, 0.0) + a
            named["former"][bucket][0] += bool(per_item) and not is_weak(max(per_item.values()), spread)
            named["former"][bucket][1] += 1
    out: dict[str, Any] = {}
    for lv, by in named.items():
        n, total = sum(v[0] for v in by.values()), sum(v[1] for v in by.values())
        out[lv] = {
            "all": round(n / max(1, total), 4),
            **{f"window {b}": round(v[0] / v[1], 4) if v[1] else None for b, v in by.items()},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--levels", default="0.05,0.1,0.2,auto")
    ap.add_argument("--groups", default="default,none", help="default: REASON_GROUPS after the singles; none: singles only")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    levels = [None if x == "auto" else float(x) for x in a.levels.split(",")]
    groups = a.groups.split(",")
    rec = Recommender.load(a.model)
    valid = [h[:-2] for h in rec.histories.values() if len(h) > 2]
    pick = np.random.default_rng(a.seed).choice(len(valid), min(a.users, len(valid)), replace=False)
    histories = [valid[i] for i in sorted(pick)]
    trained = rec.model
    results: dict[str, Any] = {"model": str(a.model), "users": len(histories), "seed": a.seed, "threads": a.threads}
    for name, model in (("trained", trained), ("shuffled", _shuffled(trained)), ("reinit", _reinit(trained))):
        rec.model = model
        try:
            results[name] = _shares(rec, histories, levels, groups)
        finally:
            rec.model = trained
        print(name, json.dumps(results[name]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
