"""Evaluation reports: one JSON document per model run, rendered to Markdown and a PNG.

`build_report` turns `EvalResult`s into a plain, JSON-serialisable dict whose top level maps each split
name to its metrics (``report["test"]["ndcg@10"]``, under the seen-item protocol asked for), beside ``ci``,
``segments``, ``n_users``, ``repeat_targets``, ``protocol``, ``model`` and ``dataset`` (the dataset's name).
Given the same splits under the other seen-item protocol, it also writes ``<split>_exclude_seen`` and
``<split>_include_seen`` (with their intervals under ``ci``), so one report compares with published tables
of either kind. Sampled-negative metrics, when given, live under their own
``sampled`` key with ``sampled-<n>/`` prefixes and are never merged into the split tables.

`write_report` writes ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` side by side, each atomically, so
a crashed or concurrent run never leaves a half-written report. `comparison_markdown` puts several
reports in one table. The PNG is drawn by `llmrec.eval.plots` (matplotlib is imported only when a plot is drawn).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.atomic import atomic_write
from llmrec.eval.plots import TRAINING_LOG_COLUMNS as TRAINING_LOG_COLUMNS  # re-exported
from llmrec.eval.plots import figure

if TYPE_CHECKING:  # keeps `import llmrec.eval.report` itself free of the evaluate module's torch import
    from llmrec.eval.evaluate import EvalResult

__all__ = ["build_report", "comparison_markdown", "write_report"]

# Top-level report keys that are not split names.
RESERVED_KEYS = frozenset(
    {"model", "dataset", "protocol", "n_users", "ci", "segments", "sampled", "extra", "repeat_targets"}
    | {"most_popular", "warnings"}  # the check against most-popular (`llmrec.eval.popularity`)
    | {"examples"}  # a few users by name (`llmrec.eval.examples`)
)
# `<split><suffix>`: the split's metrics with seen items excluded / not excluded, beside the split as asked.
PROTOCOL_SUFFIXES = {True: "_exclude_seen", False: "_include_seen"}
_SEGMENT_COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr")


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
    other_protocol: Mapping[str, EvalResult] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable report of one model's full-ranking results, keyed by split name.

    protocol: how the numbers were made (split rule, max_seq_len, ...); ``ranking`` ("full"),
    ``exclude_seen`` and ``ks`` are filled in from the results, and a conflicting value is an error.
    sampled: optional split -> `sampled_metrics` output; every key must carry the ``sampled-`` prefix.
    other_protocol: the same splits and users under the other seen-item protocol (`evaluate_split_both`);
    written as ``<split>_exclude_seen`` / ``<split>_include_seen`` beside the split as asked.
    """
    if not results:
        raise ValueError("results must hold at least one split")
    clash = RESERVED_KEYS.intersection(results)
    if clash:
        raise ValueError(f"split names {sorted(clash)} are reserved report keys")
    suffixed = [s for s in results if s.endswith(tuple(PROTOCOL_SUFFIXES.values()))]
    if suffixed:
        raise ValueError(f"split names {suffixed} end in a reserved protocol suffix")

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

    variants: dict[str, EvalResult] = {split + PROTOCOL_SUFFIXES[exclude_seen]: r for split, r in results.items()}
    if other_protocol is not None:
        for split, other in other_protocol.items():
            mine = results.get(split)
            if mine is None or other.exclude_seen == exclude_seen or other.n != mine.n:
                raise ValueError(
                    f"other_protocol[{split!r}] must be split {split!r} of the same users under the other seen-item protocol"
                )
            variants[split + PROTOCOL_SUFFIXES[other.exclude_seen]] = other

    report: dict[str, Any] = {"model": model_name, "dataset": dataset, "protocol": proto}
    for split, result in results.items():
        report[split] = dict(result.metrics)
    for name, result in sorted(variants.items()):
        report[name] = dict(result.metrics)
    report["n_users"] = {split: r.n for split, r in results.items()}
    report["repeat_targets"] = {split: r.repeat_targets for split, r in results.items()}
    report["ci"] = {split: {m: list(b) for m, b in r.ci.items()} for split, r in {**results, **variants}.items()}
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
    """The splits as asked (``valid``, ``test``), without their ``_exclude_seen`` / ``_include_seen`` variants."""
    suffixes = tuple(PROTOCOL_SUFFIXES.values())
    return [k for k, v in report.items() if k not in RESERVED_KEYS and isinstance(v, Mapping) and not k.endswith(suffixes)]


def title(report: Mapping[str, Any]) -> str:
    """ "<model> on <dataset>": the heading of the Markdown and the PNG."""
    dataset = report.get("dataset", "?")
    if isinstance(dataset, Mapping):  # reports written before datasets had a name held the manifest's source
        dataset = dataset.get("dataset") or dataset.get("name") or dataset.get("path") or "?"
    return f"{report.get('model', '?')} on {dataset}"


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


def _seen_phrase(exclude_seen: Any) -> str:
    if exclude_seen:
        return (
            "**excluded**: every item in the user's history is removed from the ranking, the target included, "
            "so a target the user had already consumed counts as a miss (the RecBole / BSARec convention)"
        )
    return "**not excluded**: items already in the user's history are ranked like any other"


def _refit_phrase(protocol: Mapping[str, Any]) -> str:
    refit = protocol.get("refit_on_valid")
    if refit is None and protocol.get("valid_held_out") is not None:  # reports written before refit_on_valid
        refit = not protocol["valid_held_out"]
    if refit is None:
        return "not recorded (the artifact has no training record)"
    if refit:
        held = ", ".join(f"{k} {_fmt(v)}" for k, v in protocol.get("selection_valid", {}).items() if v is not None)
        return (
            "**yes**: the model was refit on train + valid events after model selection, so its valid numbers are "
            f"not held out; held-out validation of the selection run: {held or 'not recorded'}"
        )
    return "**no**: trained on training events only; valid and test are both held out"


def _protocol_lines(report: Mapping[str, Any]) -> list[str]:
    proto = report.get("protocol", {})
    n_users = report.get("n_users", {})
    repeats = report.get("repeat_targets", {})
    lines = [
        "Ranking is **full**: each target is ranked against all items in the catalogue (ties counted pessimistically).",
        "",
        "| protocol | |",
        "|---|---|",
        f"| seen items (tables below) | {_seen_phrase(proto.get('exclude_seen'))} |",
        f"| validation item a training target | {_refit_phrase(proto)} |",
    ]
    if repeats:
        cells = ", ".join(f"{split} {_fmt(n)} of {_fmt(n_users.get(split))}" for split, n in repeats.items())
        lines.append(f"| repeat targets (already in the history) | {cells} |")
    return lines


def _both_protocols_table(report: Mapping[str, Any]) -> list[str]:
    """Each split with seen items excluded and not excluded, when the report holds both."""
    rows = []
    for split in _splits(report):
        for exclude, suffix in PROTOCOL_SUFFIXES.items():
            metrics = report.get(split + suffix)
            if isinstance(metrics, Mapping):
                rows.append((split, exclude, metrics, report.get("ci", {}).get(split + suffix, {})))
    if not any(not exclude for _, exclude, _, _ in rows) or not any(exclude for _, exclude, _, _ in rows):
        return []
    ks = [k for k in (10, 20) if any(f"ndcg@{k}" in m for _, _, m, _ in rows)]
    header = "| split | seen items | " + " | ".join(f"recall@{k} | ndcg@{k} (95% CI)" for k in ks) + " |"
    lines = ["", "## Both seen-item protocols", "", header, "|---|---|" + "---:|---|" * len(ks)]
    for split, exclude, metrics, ci in rows:
        cells = []
        for k in ks:
            bounds = ci.get(f"ndcg@{k}")
            ndcg = _fmt(metrics.get(f"ndcg@{k}"))
            cells += [_fmt(metrics.get(f"recall@{k}")), f"{ndcg} [{_fmt(bounds[0])}, {_fmt(bounds[1])}]" if bounds else ndcg]
        lines.append(f"| {split} | {'excluded' if exclude else 'not excluded'} | " + " | ".join(cells) + " |")
    return lines


def _paired_table(paired: Mapping[str, Any]) -> list[str]:
    """The paired test against a baseline model as a table: one row per split and metric."""
    lines = [
        "",
        "## Paired test against a baseline",
        "",
        (
            f"Baseline: `{paired.get('baseline', '?')}`, ranked on the same users under the same protocol. Difference = "
            "this model minus the baseline, with a paired-bootstrap 95% CI and a sign-flip permutation p-value."
        ),
        "",
        "| split | metric | this model | baseline | difference (95% CI) | p-value | users |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for split, tests in paired.items():
        if not isinstance(tests, Mapping):
            continue
        for metric, t in tests.items():
            diff = f"{float(t['mean_diff']):+.4f} [{float(t['ci_lo']):+.4f}, {float(t['ci_hi']):+.4f}]"
            lines.append(
                f"| {split} | {metric} | {_fmt(t.get('mean_a'))} | {_fmt(t.get('mean_b'))} | {diff} "
                f"| {_fmt(t.get('p_value'))} | {_fmt(int(t['n']) if t.get('n') is not None else None)} |"
            )
    return lines


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
    from llmrec.eval.examples import report_markdown
    from llmrec.eval.popularity import popularity_markdown

    lines = [f"# {title(report)}", ""]
    lines += [f"**Warning:** {w}." for w in report.get("warnings") or ()]
    lines += [""] if report.get("warnings") else []
    lines += _protocol_lines(report)
    lines += ["", "Intervals are 95% percentile-bootstrap intervals over users."]
    lines += _both_protocols_table(report)
    for split in _splits(report):
        n = report.get("n_users", {}).get(split)
        seen = "seen items excluded" if report.get("protocol", {}).get("exclude_seen") else "seen items not excluded"
        lines += ["", f"## {split} ({_fmt(n)} users, {seen})", ""]
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
    extra = dict(report.get("extra") or {})
    paired = extra.pop("paired", None)
    if isinstance(paired, Mapping):
        lines += _paired_table(paired)
    lines += ["", *popularity_markdown(report.get("most_popular") or {})]
    lines += report_markdown(report)  # the served seen-item rule and example users (`llmrec.eval.examples`)
    lines += ["## Protocol", ""]
    lines += [f"- {key}: {json.dumps(value)}" for key, value in report.get("protocol", {}).items()]
    if extra:
        lines += ["", "## Extra", "", "```json", json.dumps(extra, indent=2), "```"]
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

    def exclude_seen(r: Mapping[str, Any]) -> Any:
        for exclude, suffix in PROTOCOL_SUFFIXES.items():  # a protocol variant states its own
            if split.endswith(suffix):
                return exclude
        return r.get("protocol", {}).get("exclude_seen")

    datasets = distinct(lambda r: r.get("dataset"))
    excludes = distinct(exclude_seen)
    users = distinct(lambda r: r.get("n_users", {}).get(split))
    lines.append("")
    if len(datasets) == 1 and len(excludes) == 1 and len(users) == 1:
        first = next(iter(reports.values()))
        seen = "excluded" if exclude_seen(first) else "not excluded"
        lines.append(f"Split `{split}` of {first.get('dataset')}; full ranking over all items; seen items {seen}.")
    else:
        lines.append(
            "**Warning:** these reports differ in dataset, seen-item exclusion or number of users; "
            "their numbers are not comparable."
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Plot (drawn by `llmrec.eval.plots`)
# ----------------------------------------------------------------------------------------------------


def _figure(report: Mapping[str, Any], training_log_csv: Path | None) -> Any:
    """The report's matplotlib Figure (segments, and the training curve when a log is given)."""
    return figure(report, training_log_csv, heading=title(report), splits=_splits(report))


def _plot_png(report: Mapping[str, Any], training_log_csv: Path | None) -> bytes:
    fig = _figure(report, training_log_csv)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------


def write_report(report: Mapping[str, Any], out_json: Path, *, training_log_csv: Path | None = None) -> list[Path]:
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
        atomic_write(path, data)
    return [out_json, out_md, out_png]
