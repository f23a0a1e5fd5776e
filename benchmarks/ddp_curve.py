"""One process vs DDP: per-step training loss and wall time of `llmrec train` on a real dataset.

Usage: python benchmarks/ddp_curve.py PREPARED_DIR OUT_DIR [--epochs 3] [--nproc 2] [--dropout 0.0]

Runs the same `llmrec train` (same global batch, seed, schedule; no refit) once in one process with
--threads NPROC and once under `torchrun --nproc-per-node NPROC` with one thread per process, then compares the
per-step losses from each run's steps.csv. With dropout 0 the two runs differ only by floating-point summation
order; with dropout > 0 each rank draws its own dropout masks, so the curves agree only statistically.
Writes OUT_DIR/ddp_curve.json and OUT_DIR/ddp_curve.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _run(prepared: str, out: Path, nproc: int, epochs: int, dropout: float, extra: list[str]) -> float:
    if out.exists():
        shutil.rmtree(out)
    base = [sys.executable, "-m", "llmrec.cli", "train"]
    env = dict(os.environ)
    if nproc > 1:
        base = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "llmrec.cli",
            "train",
        ]
        env["OMP_NUM_THREADS"] = "1"
        threads = 1
    else:
        threads = int(os.environ.get("THREADS", "2"))
    cmd = base + ["--dataset", prepared, "--out", str(out), "--model", "next-item-lm", "--device", "cpu"]
    cmd += ["--threads", str(threads)]  # the model its docs/scaling.md numbers were measured with
    cmd += ["--set", f"train.epochs={epochs}", "--set", "train.refit_on_valid=false", "--set", "train.patience=1000"]
    cmd += ["--set", f"model.dropout={dropout}", "--set", f"model.emb_dropout={dropout}", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _steps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path / "train" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([float(r["step"]) for r in rows]), np.array([float(r["loss"]) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.4])
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [x for s in a.set for x in ("--set", s)]
    results = []
    curves = {}
    for dropout in a.dropout:
        t1 = _run(a.prepared, out / f"p1-d{dropout}", 1, a.epochs, dropout, extra)
        tn = _run(a.prepared, out / f"p{a.nproc}-d{dropout}", a.nproc, a.epochs, dropout, extra)
        s1, l1 = _steps(out / f"p1-d{dropout}")
        sn, ln = _steps(out / f"p{a.nproc}-d{dropout}")
        assert np.array_equal(s1, sn), "the runs took different numbers of steps"
        diff = np.abs(l1 - ln)
        rel = diff / np.abs(l1)
        row = {
            "dropout": dropout,
            "steps": int(len(s1)),
            "wall_s_1proc": round(t1, 1),
            f"wall_s_{a.nproc}proc": round(tn, 1),
            "max_abs_loss_diff": float(diff.max()),
            "mean_abs_loss_diff": float(diff.mean()),
            "max_rel_loss_diff": float(rel.max()),
            "final_loss_1proc": float(l1[-20:].mean()),
            f"final_loss_{a.nproc}proc": float(ln[-20:].mean()),
        }
        results.append(row)
        curves[dropout] = (s1, l1, ln)
        print(json.dumps(row), flush=True)
    (out / "ddp_curve.json").write_text(
        json.dumps({"prepared": a.prepared, "epochs": a.epochs, "nproc": a.nproc, "runs": results}, indent=2)
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (dropout, (s, l1, ln)) in zip(axes[0], curves.items(), strict=True):
        ax.plot(s, l1, label="1 process", lw=1.2)
        ax.plot(s, ln, label=f"{a.nproc} processes (DDP, gloo)", lw=1.0, ls="--")
        ax.set_title(f"dropout {dropout}: max |Δloss| {np.abs(l1 - ln).max():.2e}")
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("training loss (global batch)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ddp_curve.png", dpi=110)


if __name__ == "__main__":
    main()
