"""Validation curves of several training runs in one PNG (one line per run), from each run's metrics.csv.

Usage: python benchmarks/plot_curves.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...] [--metric valid_ndcg@10]
A JSON file with the same curves is written beside the PNG (OUT.json), so the numbers stay readable.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--metric", default="valid_ndcg@10")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves: dict[str, dict[str, list[float]]] = {}
    for spec in a.runs:
        label, _, run = spec.partition("=")
        with (Path(run) / "metrics.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        curves[label] = {
            "epoch": [float(r["epoch"]) for r in rows],
            a.metric: [float(r[a.metric]) for r in rows],
            "train_seconds": [float(r["train_seconds"]) for r in rows],
        }
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, c in curves.items():
        ax.plot(c["epoch"], c[a.metric], marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(a.metric)
    ax.set_title(a.title or a.metric, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    out.with_suffix(".json").write_text(json.dumps(curves, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
