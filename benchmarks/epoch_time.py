"""Seconds per training epoch of `llmrec train` on a prepared dataset, and where a step's time goes.

Trains EPOCHS epochs without the refit (the selection run's epochs: training + the validation ranking) and prints
each epoch's training seconds and total seconds from the run's metrics.csv; with --profile, the torch operators
that took the most CPU time over the training steps (validation excluded), grouped by input shape.

    python benchmarks/epoch_time.py runs/beauty/data OUT --threads 2 --epochs 2
    python benchmarks/epoch_time.py runs/beauty/data OUT --threads 2 --epochs 1 --profile --set model.item_text=true

Extra `--set` options go to `llmrec train` unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="prepared dataset folder")
    ap.add_argument("out", type=Path, help="model folder to write (as llmrec train --out: its own output is replaced)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--model", default=None, help="model type (default: the library default)")
    ap.add_argument("--profile", action="store_true", help="print the top operators of the training steps")
    ap.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    args = ap.parse_args()

    import torch.profiler

    import llmrec.training.loop as loop
    from llmrec.cli import main as cli_main

    train_loop = loop.train_loop
    tables: list[str] = []

    def profiled(*a: Any, **k: Any) -> Any:
        k["evaluate"] = None  # the steps only: validation is timed by metrics.csv's seconds
        with torch.profiler.profile(record_shapes=True) as prof:
            result = train_loop(*a, **k)
        averages = prof.key_averages(group_by_input_shape=True)
        tables.append(averages.table(sort_by="self_cpu_time_total", row_limit=20, max_shapes_column_width=60))
        return result

    if args.profile:
        for module in list(sys.modules.values()):
            if module is not None and getattr(module, "train_loop", None) is train_loop:
                module.train_loop = profiled  # type: ignore[attr-defined]
    argv = ["train", "--dataset", str(args.data), "--out", str(args.out), "--threads", str(args.threads), "--quiet"]
    argv += ["--set", f"train.epochs={args.epochs}", "--set", "train.refit_on_valid=false"]
    if args.model:
        argv += ["--model", args.model]
    for setting in args.settings:
        argv += ["--set", setting]
    sys.argv = ["llmrec", *argv]
    try:
        cli_main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    if tables:
        print(tables[0])
        return
    with (args.out / "train" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    epochs = [{"epoch": int(float(r["epoch"])), "train_seconds": round(float(r["train_seconds"]), 2)} for r in rows]
    previous = 0.0
    for e, r in zip(epochs, rows, strict=True):
        e["seconds"] = round(float(r["seconds"]) - previous, 2)  # training + validation of this epoch
        previous = float(r["seconds"])
    print(json.dumps({"threads": args.threads, "settings": args.settings, "epochs": epochs}, indent=2))


if __name__ == "__main__":
    main()
