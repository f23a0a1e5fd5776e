"""Refit by continuing the selected model: which tail (epochs, peak learning rate) matches a refit from scratch.

Usage: python benchmarks/refit_continue.py PREPARED_DIR SELECTION_MODEL [--tail EPOCHS:LR_FRACTION ...]
       [--split valid|test --final] [--threads 2] [--json OUT.json]

SELECTION_MODEL is a model trained on the training events only (``refit_on_valid = false``) with the recipe in its
training.json, e.g. the selection run of `llmrec train`. Each tail loads its weights, trains ``EPOCHS`` more epochs
on train + valid events at peak learning rate ``LR_FRACTION`` x the recipe's lr (fresh optimizer, warm-up, cosine
decay: `train.refit = "continue"`), then ranks every item for the chosen split (full ranking, seen items excluded).
The validation targets are trained on by the tail, so choose on a dataset whose test targets are a validation set:
prepare the data with each user's last event removed (its "test" target is then the real validation item).
Prints one JSON line per tail: NDCG@10 / Recall@10 and the tail's training seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace

import torch

from llmrec.data import PreparedDataset
from llmrec.eval.evaluate import compute_ranks
from llmrec.eval.metrics import summarize
from llmrec.models import load_model
from llmrec.training import TrainConfig, make_score_fn
from llmrec.training.fit import examples_for
from llmrec.training.loop import train_loop


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("selection")
    ap.add_argument("--tail", action="append", default=[], help="EPOCHS:LR_FRACTION, e.g. 3:0.2 (repeatable)")
    ap.add_argument("--split", choices=("valid", "test"), default="test")
    ap.add_argument("--final", action="store_true", help="required with --split test on a dataset whose test is real")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    if a.split == "test" and not a.final and "shift" not in ds.name:
        sys.exit("error: --split test reads the test targets; mark the run --final (or use a shifted dataset)")
    with open(f"{a.selection}/training.json") as f:
        recorded = json.load(f)["train"]
    known = {f.name for f in fields(TrainConfig)}
    base = TrainConfig(**{k: v for k, v in recorded.items() if k in known})
    base = replace(base, progress=False, num_threads=a.threads, selected_epoch=0)
    ex = ds.eval_examples(a.split)
    rows = []
    for tail in a.tail or ["3:0.2"]:
        epochs, frac = tail.split(":")
        model = load_model(a.selection)
        assert isinstance(model, torch.nn.Module)
        windows = examples_for(ds.train_sequences(through="valid"), model.max_seq_len, base.examples)
        t0 = time.perf_counter()
        if int(epochs) > 0:  # 0: the selected model as it is (no refit)
            train_loop(model, windows, replace(base, epochs=int(epochs), lr=base.lr * float(frac)))  # type: ignore[type-var]
        seconds = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            ranks = compute_ranks(make_score_fn(model), ex.histories, ex.targets, exclude_seen=True)
        m = summarize(ranks, (10,))
        row = {"tail": tail, "split": a.split, "ndcg@10": round(m["ndcg@10"], 4), "recall@10": round(m["recall@10"], 4)}
        row["train_seconds"] = round(seconds, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
