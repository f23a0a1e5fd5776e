"""Generative retrieval on Amazon Beauty, the published protocol (leave-one-out, full ranking), under a CPU budget.

Usage: python benchmarks/seq2seq_beauty.py WORK_DIR [--minutes 60] [--valid-users 2000] [--threads 1]
                                           [--set model.d_model=128 --set train.lr=1e-3 ...]
                                           [--refit-epochs N]   # N chosen on valid by an earlier run (its best epoch):
                                                                # no selection run, train N epochs on train + valid
                                           [--final]            # read the test targets (only for the reported run)

1. data/   beauty prepared with the defaults (`llmrec data prepare --dataset beauty`: 22,363 users, 12,101 items);
2. t5/     `fit_t5_semantic` (MiniLM text embeddings -> 3 x 256 residual k-means codes + disambiguation, T5 trained on
           every prefix), stopped by the wall-clock budget (`train.max_minutes`) or by early stopping on NDCG@10 of a
           fixed random sample of validation users (the full 22k-user validation costs minutes of beam search);
3. result.json: the per-epoch validation curve and TIGER's numbers for reference; with --final also the test metrics
   with 95% CIs (seen items not excluded). Without --final the test targets are never read.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.config import merge_sections, parse_overrides
from llmrec.data import PrepareConfig, PreparedDataset, prepare, read_dataset
from llmrec.eval.evaluate import compute_ranks, evaluate_split
from llmrec.eval.metrics import summarize
from llmrec.experiment import fit_t5_semantic
from llmrec.models.seq2seq import T5SemanticRecommender
from llmrec.training.fit import make_score_fn, save_artifact
from llmrec.training.loop import TrainConfig

DEFAULTS = {
    "model": {"max_seq_len": 20, "d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 256, "n_levels": 3, "codebook_size": 256},
    "train": {"epochs": 200, "patience": 3, "lr": 2e-3, "progress": False, "refit_on_valid": False},
}
TIGER = {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--valid-users", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--final", action="store_true", help="also read the test targets (only for the reported run)")
    ap.add_argument(
        "--refit-epochs",
        type=int,
        default=None,
        help="skip selection: train this many epochs (chosen on valid earlier) on train + valid",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    work: Path = a.work
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if not (work / "data" / "manifest.json").exists():
        raw, source = read_dataset("beauty")
        prepare(raw, PrepareConfig(), source=source).save(work / "data")
    ds = PreparedDataset.load(work / "data")
    refit = {"refit_on_valid": True} if a.refit_epochs else {}
    sections = merge_sections(DEFAULTS, {"train": {"max_minutes": a.minutes, **refit}}, parse_overrides(a.set))
    valid = ds.eval_examples("valid")
    sample = np.random.default_rng(0).choice(len(valid), size=min(a.valid_users, len(valid)), replace=False)

    def evaluate(model: Any) -> dict[str, float]:
        ranks = compute_ranks(make_score_fn(model), [valid.histories[i] for i in sample], valid.targets[sample])
        m = summarize(ranks, (5, 10))
        return {k: m[k] for k in m if k.startswith(("ndcg@", "recall@"))}

    if not (work / "t5" / "config.json").exists():
        t0 = time.perf_counter()
        cfg = TrainConfig(**sections["train"])
        model, result = fit_t5_semantic(
            ds, sections["model"], cfg, run_dir=work / "run", evaluate=evaluate, selected_epoch=a.refit_epochs
        )
        save_artifact(model, ds, work / "t5")
        (work / "t5" / "training.json").write_text(
            json.dumps(
                {
                    "model": "t5-semantic",
                    "params": sections,
                    "refit_epochs": a.refit_epochs,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                    "seconds": time.perf_counter() - t0,
                },
                indent=1,
            )
        )
        _log(f"trained: best epoch {result.best_epoch}/{result.epochs_run} ({time.perf_counter() - t0:.0f}s)")
    model = T5SemanticRecommender.from_pretrained(work / "t5")
    out: dict[str, Any] = {"config": sections, "semantic_ids": model.semantic_ids.stats(), "tiger": TIGER}
    for split in ("test",) if a.final else ():  # validation: the sampled users of the curve (choices never see test)
        ex = ds.eval_examples(split)
        t0 = time.perf_counter()
        r = evaluate_split(make_score_fn(model), ex.histories, ex.targets, ks=(5, 10, 20), n_boot=1000, batch_size=256)
        out[f"{split}_eval_s"] = round(time.perf_counter() - t0, 1)
        out[split] = {k: round(v, 4) for k, v in r.metrics.items() if k[:4] in ("ndcg", "reca")}
        out[f"{split}_ci"] = {k: [round(x, 4) for x in v] for k, v in r.ci.items()}
        _log(f"{split}: {out[split]} ({out[f'{split}_eval_s']}s)")
    curve = (work / "run" / "metrics.csv").read_text().splitlines()
    out["curve_csv"] = curve
    out["training"] = json.loads((work / "t5" / "training.json").read_text())
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    (work / "result.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("test", "test_ci", "tiger", "wall_s") if k in out}))


if __name__ == "__main__":
    sys.exit(main())
