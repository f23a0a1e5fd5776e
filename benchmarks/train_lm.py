"""Train and evaluate the next-item LM on a prepared dataset; print validation (and, with --final, test) metrics as JSON.

Usage: python benchmarks/train_lm.py PREPARED_DIR RUN_DIR [--set model.d_model=128 --set train.lr=1e-3 ...] [--final]
Hyperparameters are picked on the validation metrics. The test targets are read only with --final, the one run that
reports a chosen setting, so no tuning run can see them. Each split is ranked once and reported with seen items not
excluded (`valid`, `test`) and excluded (`valid_exclude_seen`, `test_exclude_seen`; a repeated target is a miss).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from llmrec.data import PreparedDataset
from llmrec.eval.evaluate import evaluate_split_both
from llmrec.eval.metrics import summarize
from llmrec.training import TrainConfig, fit, make_score_fn


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
    ap.add_argument("--final", action="store_true", help="also read the test targets (only for the reported setting)")
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
    for split in ("valid", "test") if a.final else ("valid",):
        ex = ds.eval_examples(split)
        t1 = time.perf_counter()
        both = evaluate_split_both(make_score_fn(model), ex.histories, ex.targets, ks=(5, 10, 20), n_boot=0)
        out[f"{split}_eval_s"] = round(time.perf_counter() - t1, 2)
        for key, r in (("", both["include_seen"]), ("_exclude_seen", both["exclude_seen"])):
            out[split + key] = {k: round(v, 4) for k, v in summarize(r.ranks, (5, 10, 20)).items() if k[:4] in ("ndcg", "reca")}
        out[f"{split}_repeat_targets"] = both["exclude_seen"].repeat_targets
    out.update(best_epoch=result.best_epoch, epochs=result.epochs_run, train_s=round(train_s, 1))
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out), flush=True)
    json.dump(out, open(f"{a.run_dir}/result.json", "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
