"""Train and evaluate several models on one prepared dataset with the same evaluator; print a comparison table.

Usage: python benchmarks/compare.py PREPARED_DIR OUT_DIR [--models most-popular,item-knn,sasrec,next-item-lm]
       [--config-dir configs/beauty] [--threads 2] [--exclude-seen] [--final]
A model's config is read from CONFIG_DIR/<model>.toml when that file exists. Full ranking, leave-one-out; each report
holds both seen-item protocols (the table shows the one asked for, --exclude-seen or not) and states whether the model
was refit on train + valid. The test targets are read only with --final (once per model, after training chose its
epoch on valid); without it the table compares validation numbers, which are not held out for a refit model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from llmrec.config import load_toml
from llmrec.data import PreparedDataset
from llmrec.eval.report import comparison_markdown
from llmrec.experiment import check_settings, evaluate_model, train_model, write_evaluation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", default="most-popular,item-knn,sasrec,next-item-lm")
    ap.add_argument("--config-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exclude-seen", action="store_true", help="the table ranks with seen items excluded")
    ap.add_argument("--final", action="store_true", help="also read the test targets (only for the reported comparison)")
    a = ap.parse_args()
    split = "test" if a.final else "valid"
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    reports = {}
    for name in a.models.split(","):
        cfg = a.config_dir / f"{name}.toml" if a.config_dir else None
        sections = load_toml(cfg) if cfg is not None and cfg.exists() else {}
        t0 = time.perf_counter()
        summary = train_model(ds, a.prepared.resolve(), check_settings(name, sections, progress=False), a.out / name)
        t1 = time.perf_counter()
        report = evaluate_model(
            a.out / name, ds, splits=("valid", "test") if a.final else ("valid",), exclude_seen=a.exclude_seen
        )
        report["train_seconds"] = round(t1 - t0, 1)
        report["eval_seconds"] = round(time.perf_counter() - t1, 1)
        write_evaluation(report, a.out / f"{name}.json", a.out / name)
        reports[name] = report
        shown = {f"{split}_{k}": round(report[split][k], 4) for k in ("recall@10", "ndcg@10")}
        print(
            name,
            json.dumps({"valid_ndcg@10": round(report["valid"]["ndcg@10"], 4), **shown}),
            summary.get("best_epoch"),
            f"refit_on_valid={report['protocol'].get('refit_on_valid')}",
            f"train {report['train_seconds']}s",
            flush=True,
        )
    table = comparison_markdown(reports, split=split)
    (a.out / "comparison.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
