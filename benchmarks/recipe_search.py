"""One training recipe of the next-item LM on a prepared dataset, scored on validation under both protocols.

Usage: python benchmarks/recipe_search.py PREPARED_DIR RUN_DIR [--attributes] [--set train.examples=prefixes ...] [--final]
       python benchmarks/recipe_search.py PREPARED_DIR RUN_DIR --final --reuse   (score RUN_DIR/best, the selected
       weights of an earlier run, on valid and test without training again)

Trains on training events only (`train.refit_on_valid=false` unless --set says otherwise), selects the epoch on the
validation metric, and prints validation NDCG/Recall@10,20 with seen items excluded (all history items masked) and not
excluded, the best epoch, seconds per epoch and peak RSS as one JSON line (also RUN_DIR/result.json; the per-epoch
curve is RUN_DIR/metrics.csv). Test targets are read only with --final (the run that reports a chosen recipe).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np
import torch

from llmrec.config import parse_overrides
from llmrec.data import PreparedDataset
from llmrec.eval.evaluate import compute_ranks
from llmrec.eval.metrics import summarize
from llmrec.training import TrainConfig, fit, make_score_fn


def _metrics(model: Any, ds: PreparedDataset, split: str, exclude_seen: bool) -> dict[str, float]:
    ex = ds.eval_examples(split)
    ranks = compute_ranks(make_score_fn(model), ex.histories, ex.targets, exclude_seen=exclude_seen)
    return {k: round(v, 4) for k, v in summarize(ranks, (10, 20)).items() if k[:4] in ("ndcg", "reca")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("run_dir")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--attributes", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--final", action="store_true", help="also read the test targets (only for the reported recipe)")
    ap.add_argument("--reuse", action="store_true", help="score RUN_DIR/best of an earlier run instead of training")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.reuse:
        from llmrec.models import load_model

        ds = PreparedDataset.load(a.prepared)
        model = load_model(f"{a.run_dir}/best")  # any model type (e.g. the best weights of an `llmrec train` run)
        res: dict[str, Any] = {}
        for split in ("valid", "test") if a.final else ("valid",):
            res[f"{split}_exclude_seen"] = _metrics(model, ds, split, True)
            res[f"{split}_include_seen"] = _metrics(model, ds, split, False)
        print(json.dumps(res), flush=True)
        with open(f"{a.run_dir}/final.json" if a.final else f"{a.run_dir}/rescored.json", "w") as f:
            json.dump(res, f, indent=1)
        return 0
    sections = parse_overrides(a.set)
    model_params = sections.get("model", {})
    train_params = {"refit_on_valid": False, "progress": False, **sections.get("train", {})}
    ds = PreparedDataset.load(a.prepared)
    t0 = time.perf_counter()
    model, result, _ = fit(ds, model_params, TrainConfig(**train_params), use_attributes=a.attributes, run_dir=a.run_dir)
    train_s = time.perf_counter() - t0
    epoch_s = [h["train_seconds"] for h in result.history]
    out: dict[str, Any] = {"params": {"model": model_params, "train": train_params, "attributes": a.attributes}}
    out.update(best_epoch=result.best_epoch, epochs=result.epochs_run, train_s=round(train_s, 1))
    out["epoch_s_median"] = round(float(np.median(epoch_s)), 1)
    out["s_to_best"] = round(result.history[result.best_epoch - 1]["seconds"], 1) if result.best_epoch else None
    splits = ("valid", "test") if a.final else ("valid",)
    for split in splits:
        out[f"{split}_exclude_seen"] = _metrics(model, ds, split, True)
        out[f"{split}_include_seen"] = _metrics(model, ds, split, False)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out), flush=True)
    with open(f"{a.run_dir}/result.json", "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
