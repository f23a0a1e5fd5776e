"""Train and evaluate the next-item LM on a prepared dataset; print valid and test metrics as JSON.

Usage: python benchmarks/train_lm.py PREPARED_DIR RUN_DIR [--set model.d_model=128 --set train.lr=1e-3 ...] [--no-test]
Hyperparameters are picked on the validation metrics; the test line is printed for the record only. With --no-test the
test targets are not read at all (use it for tuning runs, so that no choice can see them).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from llmrec.data import PreparedDataset
from llmrec.eval.evaluate import compute_ranks
from llmrec.eval.metrics import summarize
from llmrec.train import TrainConfig, fit, make_score_fn


def _coerce(v: str) -> object:
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("run_dir")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--attributes", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-test", action="store_true", help="evaluate on validation only; never read the test targets")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model_params: dict[str, object] = {}
    train_params: dict[str, object] = {}
    for s in a.set:
        key, val = s.split("=", 1)
        sec, name = key.split(".", 1)
        (model_params if sec == "model" else train_params)[name] = _coerce(val)
    ds = PreparedDataset.load(a.prepared)
    t0 = time.perf_counter()
    model, result, _ = fit(ds, model_params, TrainConfig(**train_params), use_attributes=a.attributes, run_dir=a.run_dir)
    train_s = time.perf_counter() - t0
    out = {"params": {"model": model_params, "train": train_params, "attributes": a.attributes}}
    for split in ("valid",) if a.no_test else ("valid", "test"):
        ex = ds.eval_examples(split)
        t1 = time.perf_counter()
        ranks = compute_ranks(make_score_fn(model), ex.histories, ex.targets)
        out[f"{split}_eval_s"] = round(time.perf_counter() - t1, 2)
        out[split] = {k: round(v, 4) for k, v in summarize(ranks, (5, 10, 20)).items() if k[:4] in ("ndcg", "reca")}
    out.update(best_epoch=result.best_epoch, epochs=result.epochs_run, train_s=round(train_s, 1))
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out), flush=True)
    json.dump(out, open(f"{a.run_dir}/result.json", "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
