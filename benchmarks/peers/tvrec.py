"""TV-Rec (Shin et al., NeurIPS 2025) run from its own checkout, beside llmrec, on the same data and machine.

The peer's code is never copied into llmrec: every command takes the path of a checkout of the public repository
(github yehjin-shin/TV-Rec) and imports or runs it from there.

Usage:
  python benchmarks/peers/tvrec.py checkpoint CHECKOUT PREPARED_DIR [--final] [--threads 1]
      Score the repository's published Beauty checkpoint (output/TVRec_Beauty_best.pt) with llmrec's evaluator
      (`llmrec.eval.ranking.compute_ranks`, full ranking, seen items excluded and not): the peer's network
      computes the scores, llmrec ranks them. Validation always; test only with --final. Prints one JSON line.
  python benchmarks/peers/tvrec.py train CHECKOUT RUN_DIR [--threads 2] [--epochs 200]
      Train TV-Rec with the repository's own command for Beauty (its run.sh line: lr 5e-4, dropout 0.5, M 32,
      max length 50, reg weight 0; Adam, batch 256, patience 10 on validation NDCG@20), on the CPU with
      --num_workers 0, writing the peer's log to RUN_DIR; then `summary` of it.
  python benchmarks/peers/tvrec.py drop CHECKOUT PREPARED_DIR [MODEL_DIR ...] --final [--threads 1]
      NDCG@10 (seen excluded) of the checkpoint and of llmrec models on validation, test, and test without the
      validation item in the history: where the validation-to-test drop comes from. Reads test: --final.
  python benchmarks/peers/tvrec.py summary LOG [--metrics-csv PATH]
      Per-epoch validation NDCG@10 / HR@10 and seconds, best epoch, and the test line of a peer log (JSON); with
      --metrics-csv also the epochs as llmrec's train/metrics.csv columns (epoch, valid_ndcg@10, valid_recall@10,
      train_seconds), which `benchmarks/plot_curves.py` draws beside llmrec runs. `train` writes RUN_DIR/metrics.csv.

PREPARED_DIR is `llmrec data prepare --dataset beauty` output: its raw item ids are the integer ids of the
peer's data/Beauty.txt (the same file, sha256 226cce9c...), so raw id = the peer's item index.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The Beauty line of the repository's run.sh, as published.
BEAUTY_ARGS = [
    "--data_name=Beauty",
    "--model=TVRec",
    "--lr=0.0005",
    "--reg_weight=0",
    "--hidden_dropout_prob=0.5",
    "--M=32",
    "--max_seq_length=50",
]


def _load_peer_model(checkout: Path) -> Any:
    """The peer's TVRecModel with its published Beauty weights (CPU), built by the peer's own argument parser."""
    sys.path.insert(0, str(checkout))
    from model import MODEL_DICT  # type: ignore[import-not-found]  # the peer's package, from the checkout
    from utils import parse_args  # type: ignore[import-not-found]

    argv, sys.argv = sys.argv, ["main.py", *BEAUTY_ARGS, "--no_cuda", f"--data_dir={checkout}/data/"]
    try:
        args = parse_args()
    finally:
        sys.argv = argv
    args.device = "cpu"
    args.item_size = 12102  # max item id of Beauty.txt + 1, as main.py sets it
    args.num_users = 22364
    model = MODEL_DICT["tvrec"](args=args)
    state = torch.load(checkout / "output" / "TVRec_Beauty_best.pt", map_location="cpu")
    # TV-Rec has no position embeddings (its time-variant filters carry position); its table exists unused and is
    # absent from the checkpoint, which the peer's Trainer.load also tolerates.
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"position_embeddings.weight"}:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    model.eval()
    for block in model.item_encoder.blocks:
        block.layer.calculate_func_H()  # what the peer's Trainer does before every evaluation
    return model, args


def _peer_scorer(checkout: Path, ds: Any) -> Callable[[list[np.ndarray]], torch.Tensor]:
    """Scores [B, V+1] in llmrec's item order from the peer's network with its published Beauty weights."""
    model, args = _load_peer_model(checkout)
    raw = np.array([0, *map(int, ds.raw_item_ids())], dtype=np.int64)  # internal index -> peer item id
    max_len = int(args.max_seq_length)

    def score(histories: list[np.ndarray]) -> torch.Tensor:
        x = np.zeros((len(histories), max_len), dtype=np.int64)  # the peer's left padding to max length
        for i, h in enumerate(histories):
            h = raw[h[-max_len:]]
            x[i, max_len - len(h) :] = h
        with torch.no_grad():
            out = model.predict(torch.from_numpy(x), None)[:, -1, :]  # [B, D]
            s = out @ model.item_embeddings.weight.T  # [B, 12102] over the peer's ids
        scores = s[:, torch.from_numpy(raw)]  # [B, V+1] in llmrec's item order
        scores[:, 0] = -torch.inf
        return scores

    return score


def checkpoint(a: argparse.Namespace) -> int:
    from llmrec.data import PreparedDataset
    from llmrec.eval.metrics import summarize
    from llmrec.eval.ranking import compute_ranks

    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    score = _peer_scorer(Path(a.checkout), ds)
    res: dict[str, Any] = {"model": "TV-Rec published Beauty checkpoint", "scored_by": "llmrec compute_ranks"}
    t0 = time.perf_counter()
    for split in ("valid", "test") if a.final else ("valid",):
        ex = ds.eval_examples(split)
        for excl in (True, False):
            ranks = compute_ranks(score, ex.histories, ex.targets, exclude_seen=excl)
            m = summarize(ranks, (10, 20))
            key = f"{split}_{'exclude' if excl else 'include'}_seen"
            res[key] = {k: round(v, 4) for k, v in m.items() if k[:4] in ("ndcg", "reca")}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res), flush=True)
    return 0


def drop(a: argparse.Namespace) -> int:
    """Where the validation-to-test drop is: NDCG@10 (seen excluded) of the peer's checkpoint and of llmrec
    models on three inputs: validation (history s[:-2], its newest item was a training target of this user),
    test (s[:-1], its newest item, the validation item, never was), and test without the validation item
    (history s[:-2], the target two steps ahead). Reads test targets, so --final is required."""
    from llmrec.artifact import open_artifact
    from llmrec.data import PreparedDataset
    from llmrec.data.sequences import pad_left
    from llmrec.eval.metrics import summarize
    from llmrec.eval.ranking import compute_ranks

    if not a.final:
        print("drop reads the test targets: run it with --final", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    ds = PreparedDataset.load(a.prepared)
    scorers: dict[str, Callable[[list[np.ndarray]], torch.Tensor]] = {"TV-Rec checkpoint": _peer_scorer(Path(a.checkout), ds)}
    for path in a.models:
        model = open_artifact(path).model().eval()

        def score(histories: list[np.ndarray], m: Any = model) -> torch.Tensor:
            with torch.no_grad():
                out: torch.Tensor = m.score(pad_left(histories, m.config.max_seq_len))
                return out

        scorers[path] = score
    va, te = ds.eval_examples("valid"), ds.eval_examples("test")
    if not np.array_equal(va.user_idx, te.user_idx):
        raise SystemExit("validation and test users differ")
    inputs = {
        "valid": (va.histories, va.targets),
        "test": (te.histories, te.targets),
        "test_without_valid_item": ([h[:-1] for h in te.histories], te.targets),
    }
    rows = []
    for name, score in scorers.items():
        row: dict[str, Any] = {"model": name}
        for key, (hist, targets) in inputs.items():
            row[key] = round(summarize(compute_ranks(score, hist, targets, exclude_seen=True), (10,))["ndcg@10"], 4)
        row["drop"] = round(row["test"] / row["valid"] - 1.0, 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) - (.*)$")


def summarize_log(log: Path) -> dict[str, Any]:
    """Epoch rows {epoch, loss, valid ndcg@10/hr@10/ndcg@20, train_s, valid_s} and the test line of a peer log."""
    rows: list[dict[str, Any]] = []
    test: dict[str, Any] | None = None
    last_t: datetime | None = None
    in_test = False
    for line in log.read_text().splitlines():
        m = _TIME.match(line)
        if m is None:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        msg = m.group(2)
        if "Test Score" in msg:
            in_test = True
        if msg.startswith("{'epoch'"):
            d = ast.literal_eval(msg)
            rows.append({"epoch": d["epoch"] + 1, "loss": float(d["rec_loss"]), "train_s": None})
            if last_t is not None:
                rows[-1]["train_s"] = round((t - last_t).total_seconds(), 1)
        elif msg.startswith("{'Epoch'"):
            d = ast.literal_eval(msg)
            vals = {k.lower(): float(v) for k, v in d.items() if k != "Epoch"}
            if in_test:
                test = vals
            elif rows:
                rows[-1].update({f"valid_{k}": v for k, v in vals.items()})
                rows[-1]["valid_s"] = round((t - last_t).total_seconds(), 1) if last_t else None
        last_t = t
    scored = [r for r in rows if "valid_ndcg@20" in r]
    best = max(scored, key=lambda r: r["valid_ndcg@20"]) if scored else None  # the peer selects on NDCG@20
    return {"epochs": rows, "best_epoch": best["epoch"] if best else None, "best": best, "test": test}


def write_metrics_csv(summary: dict[str, Any], path: Path) -> None:
    """The peer's epochs in llmrec's metrics.csv columns (HR@10 is Recall@10 with one target per user)."""
    scored = [r for r in summary["epochs"] if "valid_ndcg@10" in r]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "valid_ndcg@10", "valid_recall@10", "train_seconds"])
        for r in scored:
            w.writerow([r["epoch"], r["valid_ndcg@10"], r["valid_hr@10"], r["train_s"]])


def train(a: argparse.Namespace) -> int:
    run = Path(a.run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "main.py",
        *BEAUTY_ARGS,
        "--train_name=TVRec_Beauty_cpu",
        f"--output_dir={run}/",
        "--no_cuda",
        "--num_workers=0",
        f"--epochs={a.epochs}",
    ]
    env = {"OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads), "PATH": "/usr/bin:/bin"}
    (run / "command.txt").write_text(" ".join(cmd) + "\n")
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=a.checkout, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = summarize_log(run / "TVRec_Beauty_cpu.log")
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    (run / "summary.json").write_text(json.dumps(res, indent=1))
    write_metrics_csv(res, run / "metrics.csv")
    print(json.dumps({k: v for k, v in res.items() if k != "epochs"}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("checkpoint")
    c.add_argument("checkout")
    c.add_argument("prepared")
    c.add_argument("--final", action="store_true", help="also read the test targets")
    c.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("train")
    t.add_argument("checkout")
    t.add_argument("run_dir")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--epochs", type=int, default=200)
    d = sub.add_parser("drop")
    d.add_argument("checkout")
    d.add_argument("prepared")
    d.add_argument("models", nargs="*", help="llmrec model folders to compare with the checkpoint")
    d.add_argument("--final", action="store_true", help="required: reads the test targets")
    d.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("summary")
    s.add_argument("log")
    s.add_argument("--metrics-csv", default=None, help="also write the epochs as llmrec's metrics.csv columns")
    a = ap.parse_args()
    if a.cmd == "checkpoint":
        return checkpoint(a)
    if a.cmd == "train":
        return train(a)
    if a.cmd == "drop":
        return drop(a)
    res = summarize_log(Path(a.log))
    if a.metrics_csv:
        write_metrics_csv(res, Path(a.metrics_csv))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
