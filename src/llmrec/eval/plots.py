"""The PNG of an evaluation report: metrics by user segment, and the training curve when a log is given.

Drawn with matplotlib's object API on an explicit Agg canvas (no pyplot global state, no GUI backend); matplotlib
is imported only when a figure is drawn. `llmrec.eval.report` builds the report and writes the PNG beside it.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PLOT_METRICS", "TRAINING_LOG_COLUMNS", "figure", "read_training_log"]

TRAINING_LOG_COLUMNS = ("epoch", "train_loss", "valid_ndcg@10")
PLOT_METRICS = ("ndcg@10", "recall@10")  # the bars of each segment


def read_training_log(path: Path) -> dict[str, list[float]]:
    """The columns of a training log CSV (`TRAINING_LOG_COLUMNS`); a blank cell is NaN.

    The validation column may be absent: a run of a fixed number of epochs (`train.selected_epoch`) validates
    nothing, and its curve is the training loss alone."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in TRAINING_LOG_COLUMNS[:2] if c not in header]
        if missing:
            raise ValueError(f"{path}: training log lacks columns {missing}")
        columns: dict[str, list[float]] = {c: [] for c in TRAINING_LOG_COLUMNS}
        for row in reader:
            for c in TRAINING_LOG_COLUMNS:
                # Validation may run every few epochs only, or never; a blank cell is a gap, not an error.
                cell = (row.get(c) or "").strip()
                columns[c].append(float(cell) if cell else math.nan)
    return columns


def figure(report: Mapping[str, Any], training_log_csv: Path | None, *, heading: str, splits: Sequence[str]) -> Any:
    """The report's matplotlib Figure (segments, and the training curve when a log is given).

    heading: the figure's title ("<model> on <dataset>"); splits: the report's split names, as asked."""
    if "MPLCONFIGDIR" not in os.environ:
        # matplotlib writes a font cache to ~/.config by default, which may be read-only or shared.
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="llmrec-mpl-")
    # The object API with an explicit Agg canvas: no pyplot global state, no GUI backend, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_panels = 2 if training_log_csv is not None else 1
    fig = Figure(figsize=(7 * n_panels, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    # The long "<model> on <dataset>" heading is the figure's title, laid out above the panels by the
    # constrained layout; each panel keeps a short title of its own, so no two titles can overlap.
    seen = "seen items excluded" if report.get("protocol", {}).get("exclude_seen") else "seen items not excluded"
    fig.suptitle(f"{heading} ({seen})", fontsize=11, wrap=True)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]

    ax = axes[0]
    splits = [s for s in splits if report.get("segments", {}).get(s)]
    split = "test" if "test" in splits else (splits[-1] if splits else None)
    if split is None:
        ax.text(0.5, 0.5, "no segments", ha="center", va="center")
        ax.set_axis_off()
    else:
        segments: Mapping[str, Mapping[str, Any]] = report["segments"][split]
        names = list(segments)
        x = np.arange(len(names))
        width = 0.8 / len(PLOT_METRICS)
        top = 0.0
        for i, metric in enumerate(PLOT_METRICS):
            heights = [segments[s].get(metric) for s in names]
            # Empty segments have no value (null); draw them as 0 so the row of bars stays aligned.
            clean = [h if isinstance(h, int | float) and math.isfinite(h) else 0.0 for h in heights]
            ax.bar(x + (i - (len(PLOT_METRICS) - 1) / 2) * width, clean, width, label=metric)
            top = max(top, *clean)
        ax.set_xticks(x, [f"{s}\n(n={segments[s].get('n', '?')})" for s in names], fontsize=7)
        ax.set_ylabel("metric value")
        ax.set_title(f"{split} by segment", fontsize=10)
        ax.set_ylim(0.0, 1.25 * top if top > 0 else 1.0)  # headroom so the legend never covers a bar
        ax.legend(loc="upper center", ncols=len(PLOT_METRICS))

    if training_log_csv is not None:
        log = read_training_log(Path(training_log_csv))
        ax_loss = axes[1]
        ax_loss.plot(log["epoch"], log["train_loss"], marker="o", color="tab:blue", label="train_loss")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("train loss")
        ax_valid = ax_loss.twinx()
        points = [(e, v) for e, v in zip(log["epoch"], log["valid_ndcg@10"], strict=True) if math.isfinite(v)]
        if points:
            ex, vy = zip(*points, strict=True)
            ax_valid.plot(ex, vy, marker="s", color="tab:orange", label="valid ndcg@10")
        ax_valid.set_ylabel("valid ndcg@10")
        handles = ax_loss.get_legend_handles_labels()[0] + ax_valid.get_legend_handles_labels()[0]
        ax_loss.legend(handles=handles, loc="center right")
        ax_loss.set_title("training curve", fontsize=10)
    return fig
