"""Evaluation reports: one JSON document per model run, rendered to Markdown and a PNG.

`build_report` turns `EvalResult`s into a plain, JSON-serialisable dict whose top level maps each split
name to its metrics (``report["test"]["ndcg@10"]``), beside ``ci``, ``segments``, ``n_users``,
``protocol``, ``model`` and ``dataset``. Sampled-negative metrics, when given, live under their own
``sampled`` key with ``sampled-<n>/`` prefixes and are never merged into the split tables.

`write_report` writes ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` side by side, each atomically, so
a crashed or concurrent run never leaves a half-written report. `comparison_markdown` puts several
reports in one table. Matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # keeps `import llmrec.eval.report` itself free of the evaluate module's torch import
    from llmrec.eval.evaluate import EvalResult

__all__ = ["build_report", "comparison_markdown", "write_report"]

# Top-level report keys that are not split names.
RESERVED_KEYS = frozenset({"model", "dataset", "protocol", "n_users", "ci", "segments", "sampled", "extra"})
TRAINING_LOG_COLUMNS = ("epoch", "train_loss", "valid_ndcg@10")
_SEGMENT_COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr")
_PLOT_METRICS = ("ndcg@10", "recall@10")


# ----------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays unwrapped, tuples to lists, NaN/inf to null.

    Strict JSON has no NaN; empty segments (mean over no users) become null instead of breaking readers.
    """
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def build_report(
    results: Mapping[str, EvalResult],
    *,
    model_name: str,
    dataset: str,
    protocol: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    sampled: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable report of one model's full-ranking results, keyed by split name.

    protocol: how the numbers were made (split rule, max_seq_len, ...); ``ranking`` ("full"),
    ``exclude_seen`` and ``ks`` are filled in from the results, and a conflicting value is an error.
    sampled: optional split -> `sampled_metrics` output; every key must carry the ``sampled-`` prefix.
    """
    if not results:
        raise ValueError("results must hold at least one split")
    clash = RESERVED_KEYS.intersection(results)
    if clash:
        raise ValueError(f"split names {sorted(clash)} are reserved report keys")

    exclude = {r.exclude_seen for r in results.values()}
    if len(exclude) != 1:
        raise ValueError("all splits in one report must share exclude_seen")
    exclude_seen = exclude.pop()
    proto = dict(protocol)
    # Reports hold full-ranking numbers only; a caller who says otherwise has mixed protocols.
    if proto.get("ranking", "full") != "full":
        raise ValueError(f"protocol ranking must be 'full', got {proto['ranking']!r}")
    if proto.get("exclude_seen", exclude_seen) != exclude_seen:
        raise ValueError("protocol['exclude_seen'] disagrees with the results")
    proto["ranking"] = "full"
    proto["exclude_seen"] = exclude_seen
    proto.setdefault("ks", sorted({k for r in results.values() for k in r.ks}))

    report: dict[str, Any] = {"model": model_name, "dataset": dataset, "protocol": proto}
    for split, result in results.items():
        report[split] = dict(result.metrics)
    report["n_users"] = {split: r.n for split, r in results.items()}
    report["ci"] = {split: {m: list(b) for m, b in r.ci.items()} for split, r in results.items()}
    report["segments"] = {split: r.segments for split, r in results.items()}
    if sampled is not None:
        for split, values in sampled.items():
            bad = [k for k in values if not k.startswith("sampled-")]
            if bad:
                raise ValueError(f"sampled metrics must be keyed 'sampled-<n>/...', got {bad[:3]} in {split!r}")
        report["sampled"] = {split: dict(values) for split, values in sampled.items()}
    if extra is not None:
        report["extra"] = dict(extra)
    out: dict[str, Any] = _jsonable(report)
    return out


def _splits(report: Mapping[str, Any]) -> list[str]:
    return [k for k, v in report.items() if k not in RESERVED_KEYS and isinstance(v, Mapping)]


# ----------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.4f}"


def _ks_in(metrics: Mapping[str, Any]) -> list[int]:
    ks = {int(key.split("@", 1)[1]) for key in metrics if key.startswith("recall@")}
    return sorted(ks)


def _protocol_line(report: Mapping[str, Any]) -> str:
    proto = report.get("protocol", {})
    seen = (
        "Seen items were **excluded** from ranking (the target itself is always ranked)."
        if proto.get("exclude_seen")
        else "Seen items were **not excluded**: items already in the user's history are ranked like any other."
    )
    return (
        "Ranking is **full**: each target is ranked against all items in the catalogue "
        f"(ties counted pessimistically). {seen}"
    )


def _metrics_table(metrics: Mapping[str, Any], ci: Mapping[str, Any]) -> list[str]:
    def with_ci(key: str) -> str:
        bounds = ci.get(key)
        cell = _fmt(metrics.get(key))
        return f"{cell} [{_fmt(bounds[0])}, {_fmt(bounds[1])}]" if bounds else cell

    lines = [
        "| k | recall@k (95% CI) | ndcg@k (95% CI) | precision@k | mrr@k |",
        "|---:|---|---|---:|---:|",
    ]
    for k in _ks_in(metrics):
        lines.append(
            f"| {k} | {with_ci(f'recall@{k}')} | {with_ci(f'ndcg@{k}')} "
            f"| {_fmt(metrics.get(f'precision@{k}'))} | {_fmt(metrics.get(f'mrr@{k}'))} |"
        )
    lines.append("")
    lines.append(f"MRR (untruncated): {_fmt(metrics.get('mrr'))}. hit@k equals recall@k (one target per user).")
    return lines


def _segments_table(segments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not segments:
        return []
    present = {key for seg in segments.values() for key in seg}
    columns = [c for c in _SEGMENT_COLUMNS if c in present]
    lines = [
        "| segment | n | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for name, seg in segments.items():
        cells = " | ".join(_fmt(seg.get(c)) for c in columns)
        lines.append(f"| {name} | {_fmt(seg.get('n'))} | {cells} |")
    return lines


def _markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# {report.get('model', '?')} on {report.get('dataset', '?')}", "", _protocol_line(report), ""]
    lines.append("Intervals are 95% percentile-bootstrap intervals over users.")
    protocol = report.get("protocol", {})
    if protocol.get("valid_held_out") is False:
        held = ", ".join(f"{k} {_fmt(v)}" for k, v in protocol.get("selection_valid", {}).items())
        lines += [
            "",
            "**The model was refit on train + valid events after model selection: its valid numbers are not "
            f"held out.** Held-out validation of the selection run: {held or 'not recorded'}.",
        ]
    for split in _splits(report):
        n = report.get("n_users", {}).get(split)
        lines += ["", f"## {split} ({_fmt(n)} users)", ""]
        lines += _metrics_table(report[split], report.get("ci", {}).get(split, {}))
        segments = report.get("segments", {}).get(split, {})
        if segments:
            lines += ["", f"### Segments ({split})", ""]
            lines += _segments_table(segments)
    if report.get("sampled"):
        lines += [
            "",
            "## Sampled-negative metrics (legacy protocol)",
            "",
            "Target ranked against a sample of negatives only. These inflate hit rates several-fold and are "
            "**not comparable** with the full-ranking tables above.",
            "",
            "| split | metric | value |",
            "|---|---|---:|",
        ]
        for split, values in report["sampled"].items():
            lines += [f"| {split} | {key} | {_fmt(v)} |" for key, v in values.items()]
    lines += ["", "## Protocol", ""]
    lines += [f"- {key}: {json.dumps(value)}" for key, value in report.get("protocol", {}).items()]
    if report.get("extra"):
        lines += ["", "## Extra", "", "```json", json.dumps(report["extra"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def comparison_markdown(
    reports: Mapping[str, Mapping[str, Any]],
    split: str = "test",
    metrics: Sequence[str] = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr"),
) -> str:
    """Side-by-side Markdown table of several reports (row label = dict key), best value per column in bold.

    A note under the table states the shared protocol, or warns when the reports differ in dataset,
    seen-item exclusion or user count, since their numbers are then not comparable.
    """
    if not reports:
        raise ValueError("reports must not be empty")
    rows: dict[str, list[float | None]] = {}
    for name, report in reports.items():
        values = report.get(split, {})
        rows[name] = [values.get(m) for m in metrics]
    best: list[float | None] = []
    for j in range(len(metrics)):
        column = [row[j] for row in rows.values()]
        finite = [v for v in column if v is not None and math.isfinite(v)]
        best.append(max(finite) if finite else None)  # every metric here is higher-is-better

    lines = [
        "| model | " + " | ".join(metrics) + " | users |",
        "|---|" + "---:|" * (len(metrics) + 1),
    ]
    for name, values in rows.items():
        cells = []
        for j, v in enumerate(values):
            cell = _fmt(v)
            cells.append(f"**{cell}**" if v is not None and v == best[j] and len(rows) > 1 else cell)
        n = reports[name].get("n_users", {}).get(split)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(n)} |")

    def distinct(get: Any) -> set[str]:
        return {json.dumps(get(r)) for r in reports.values()}

    datasets = distinct(lambda r: r.get("dataset"))
    excludes = distinct(lambda r: r.get("protocol", {}).get("exclude_seen"))
    users = distinct(lambda r: r.get("n_users", {}).get(split))
    lines.append("")
    if len(datasets) == 1 and len(excludes) == 1 and len(users) == 1:
        first = next(iter(reports.values()))
        seen = "excluded" if first.get("protocol", {}).get("exclude_seen") else "not excluded"
        lines.append(
            f"Split `{split}` of {first.get('dataset')}; full ranking over all items; seen items {seen}."
        )
    else:
        lines.append(
            "**Warning:** these reports differ in dataset, seen-item exclusion or number of users; "
            "their numbers are not comparable."
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Plot
# ----------------------------------------------------------------------------------------------------


def _read_training_log(path: Path) -> dict[str, list[float]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in TRAINING_LOG_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: training log lacks columns {missing}")
        columns: dict[str, list[float]] = {c: [] for c in TRAINING_LOG_COLUMNS}
        for row in reader:
            for c in TRAINING_LOG_COLUMNS:
                # Validation may run every few epochs only; a blank cell is a gap, not an error.
                cell = (row[c] or "").strip()
                columns[c].append(float(cell) if cell else math.nan)
    return columns


def _plot_png(report: Mapping[str, Any], training_log_csv: Path | None) -> bytes:
    if "MPLCONFIGDIR" not in os.environ:
        # matplotlib writes a font cache to ~/.config by default, which may be read-only or shared.
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="llmrec-mpl-")
    # The object API with an explicit Agg canvas: no pyplot global state, no GUI backend, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_panels = 2 if training_log_csv is not None else 1
    fig = Figure(figsize=(7 * n_panels, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]

    ax = axes[0]
    splits = [s for s in _splits(report) if report.get("segments", {}).get(s)]
    split = "test" if "test" in splits else (splits[-1] if splits else None)
    if split is None:
        ax.text(0.5, 0.5, "no segments", ha="center", va="center")
        ax.set_axis_off()
    else:
        segments: Mapping[str, Mapping[str, Any]] = report["segments"][split]
        names = list(segments)
        x = np.arange(len(names))
        width = 0.8 / len(_PLOT_METRICS)
        top = 0.0
        for i, metric in enumerate(_PLOT_METRICS):
            heights = [segments[s].get(metric) for s in names]
            # Empty segments have no value (null); draw them as 0 so the row of bars stays aligned.
            clean = [h if isinstance(h, int | float) and math.isfinite(h) else 0.0 for h in heights]
            ax.bar(x + (i - (len(_PLOT_METRICS) - 1) / 2) * width, clean, width, label=metric)
            top = max(top, *clean)
        ax.set_xticks(x, [f"{s}\n(n={segments[s].get('n', '?')})" for s in names], fontsize=7)
        ax.set_ylabel("metric value")
        ax.set_title(f"{report.get('model', '?')} on {report.get('dataset', '?')}: {split} by segment")
        ax.set_ylim(0.0, 1.25 * top if top > 0 else 1.0)  # headroom so the legend never covers a bar
        ax.legend(loc="upper center", ncols=len(_PLOT_METRICS))

    if training_log_csv is not None:
        log = _read_training_log(Path(training_log_csv))
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
        ax_loss.set_title("training curve")

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, then rename over the target (atomic on POSIX)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    report: Mapping[str, Any], out_json: Path, *, training_log_csv: Path | None = None
) -> list[Path]:
    """Write ``out_json`` plus ``.md`` and ``.png`` files with the same stem; returns the three paths.

    training_log_csv: a CSV with columns ``epoch``, ``train_loss``, ``valid_ndcg@10``; when given, the PNG
    gets a second panel with the training curve.
    """
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_md = out_json.with_suffix(".md")
    out_png = out_json.with_suffix(".png")
    clean = _jsonable(report)
    # Render everything before writing anything, so a failure (e.g. a bad CSV) leaves no partial set.
    json_bytes = (json.dumps(clean, indent=2, allow_nan=False) + "\n").encode()
    md_bytes = _markdown(clean).encode()
    png_bytes = _plot_png(clean, training_log_csv)
    for path, data in ((out_json, json_bytes), (out_md, md_bytes), (out_png, png_bytes)):
        _write_atomic(path, data)
    return [out_json, out_md, out_png]
