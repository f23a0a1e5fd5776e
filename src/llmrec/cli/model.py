"""Model commands: ``llmrec train``, ``evaluate``, ``meta-train``, ``map-cold-items``, ``tune`` and ``export``.

Each parses its options, makes one library call (`llmrec.experiment.run_training`,
`llmrec.eval.leave_one_out.evaluate_model` / `llmrec.eval.cold_start.evaluate_cold_start_artifact`,
`llmrec.meta.training.meta_train_model`, `llmrec.models.cold_items.map_cold_items_artifact`, `llmrec.tune.tune`,
`llmrec.export.export_artifact`) and prints the result. The commands are registered on the root app in
`llmrec.cli`. Imports of torch and the library happen inside the functions (``llmrec --help`` stays light).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from llmrec.cli.common import (
    DATASET_HELP,
    DEVICE_HELP,
    Threads,
    config_sections,
    console,
    dataset_arg,
    err_console,
    fmt_int,
    say,
    use_threads,
    user_errors,
)
from llmrec.models import DEFAULT_MODEL, training_names

if TYPE_CHECKING:
    from llmrec.data import PreparedDataset
    from llmrec.eval.cold_start import ColdStartResult

__all__ = ["evaluate_cmd", "export_cmd", "map_cold_items_cmd", "meta_train_cmd", "train_cmd", "tune_cmd"]

QUIET_HELP = "No progress: no bar inside each epoch (shown only on a terminal), no line per epoch or trial."
FORCE_HELP = "Train even when the estimated peak memory exceeds the available memory (the estimate is an upper bound)."


def train_cmd(
    dataset: Annotated[str, typer.Option(help="A prepared dataset folder, or a registry name (prepared with defaults).")],
    out: Annotated[Path, typer.Option("--out", help="Model artifact folder to write.")],
    model: Annotated[
        str, typer.Option(help=f"{' | '.join(training_names())} (the registered models and their presets)")
    ] = DEFAULT_MODEL,
    config: Annotated[Path | None, typer.Option(help="TOML file with [model] and [train] sections.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. train.lr=1e-3 (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=N.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted training of the same --out.")] = False,
    threads: Threads = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (auto: CUDA when available).")] = "auto",
    track: Annotated[
        str | None, typer.Option(help="Log params, per-epoch metrics and the summary to: tensorboard | mlflow.")
    ] = None,
    track_uri: Annotated[
        str | None,
        typer.Option(
            help="tensorboard: log folder (default ./tensorboard); mlflow: a folder or tracking URI (default $MLFLOW_TRACKING_URI, else ./mlruns)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    """Train a model; early stopping on validation NDCG@10; writes a self-describing artifact folder.

    Runs data-parallel (DDP) when launched with `torchrun --nproc-per-node N` or `accelerate launch
    --num_processes N`: the global batch is split across processes, only rank 0 writes.
    """
    with user_errors():
        use_threads(threads)  # checked before anything else; run_training sets them again in each process
        sections = config_sections(config, [*(set_ or []), *([f"train.epochs={epochs}"] if epochs is not None else [])])
        if quiet:  # no bar inside the epochs, no line per epoch
            sections.setdefault("train", {})["progress"] = False
        from llmrec.experiment import run_training
        from llmrec.outputs import claim_folder

        # checked and locked before any work; --resume takes the same lock (the training state is beside `out`)
        with claim_folder(out, "model", inputs={"--dataset": dataset, "--config": config}) as target:
            run = run_training(
                dataset,
                target,
                model,
                sections,
                resume=resume,
                device=device,
                threads=threads,
                track=track,
                track_uri=track_uri,
                status=err_console.status,
                note=lambda line: say(line, err=True),
                force=force,
            )
    if not run.is_main:
        return
    summary = run.summary
    console.print(f"trained {summary['model']}", markup=False)
    console.print(_training_table(summary, out))
    for split, c in (summary.get("most_popular") or {}).items():  # llmrec.eval.popularity
        say(f"vs most-popular ({split} NDCG@10): {c['model']:.4f} vs {c['most_popular']:.4f}, p = {c['p_value']:.3g}")
    for line in summary.get("warnings") or ():
        say(f"warning: {line}", err=True)
    say(f"model written to {out}")


def _training_table(summary: dict[str, Any], out: Path) -> Table:
    """`train`'s closing summary: best epoch, the validation metrics of that epoch, time (4 decimals, no JSON)."""
    from llmrec.artifact import Artifact

    table = Table("", "", show_header=False)
    fixed = int(summary.get("train", {}).get("selected_epoch") or 0)
    if fixed and "best_epoch" in summary:  # train.selected_epoch: one fixed-length run, nothing was validated
        train = summary["train"]
        if train.get("refit_on_valid") and train.get("refit") == "continue":
            epochs = f"{summary['epochs_run']} on training events, then {train.get('refit_epochs')} on train + valid events"
            table.add_row("epochs", f"{epochs} (train.selected_epoch, refit continue; no selection run)")
        else:
            events = "train + valid" if train.get("refit_on_valid") else "training"
            table.add_row("epochs", f"{summary['epochs_run']} on {events} events (train.selected_epoch; no selection run)")
    elif "best_epoch" in summary:
        stopped = " (stopped early)" if summary.get("stopped_early") else ""
        table.add_row("best epoch", f"{summary['best_epoch']} of {summary['epochs_run']} run{stopped}")
        rows = Artifact(out).training_log()  # train/metrics.csv, one row per epoch
        best = next((r for r in rows if r.get("epoch") and int(float(r["epoch"])) == summary["best_epoch"]), None)
        shown = {k.removeprefix("valid_"): float(v) for k, v in (best or {}).items() if k.startswith("valid_") and v}
        if not shown and summary.get("best_valid") is not None:
            shown = {str(summary.get("train", {}).get("metric", "valid")): float(summary["best_valid"])}
        for name, value in shown.items():
            table.add_row(f"valid {name}", f"{value:.4f}")
        train = summary.get("train", {})
        if train.get("refit_on_valid") and train.get("refit") == "continue":
            n = train.get("refit_epochs")
            more = f"{n} more epoch{'' if n == 1 else 's'} on train + valid events"
            table.add_row("then", f"the epoch-{summary['best_epoch']} model trained {more} (refit continue)")
        elif train.get("refit_on_valid"):
            table.add_row("then", f"refit on train + valid events for {summary['best_epoch']} epochs")
    if "item_text" in summary:
        text = summary["item_text"]
        encoder = {True: "all-MiniLM-L6-v2", "minilm": "all-MiniLM-L6-v2", "llm": "the packaged LLM"}.get(text, str(text))
        table.add_row("text", f"item titles / text through {encoder}" if text else "none (ids and categories)")
    table.add_row("time", f"{summary['seconds']:.1f} s")
    if "world_size" in summary:
        table.add_row("processes", str(summary["world_size"]))
    return table


def _metrics_table(report: dict[str, Any], splits: list[str], ks: list[int]) -> Table:
    table = Table(
        "split", *(f"{m}@{k}" for k in ks for m in ("R", "N")), "MRR", "users", title="full ranking (R = recall, N = NDCG)"
    )
    for split in splits:
        row = report[split]
        cells = [f"{row[f'{m}@{k}']:.4f}" for k in ks for m in ("recall", "ndcg")]
        table.add_row(split, *cells, f"{row['mrr']:.4f}", fmt_int(report["n_users"][split]))
    return table


def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    out: Annotated[Path | None, typer.Option(help="Report JSON path (a .md and a .png are written beside it).")] = None,
    dataset: Annotated[
        str | None, typer.Option(help=DATASET_HELP.rstrip(".") + "; default: the one the model was trained on.")
    ] = None,
    exclude_seen: Annotated[
        bool | None,
        typer.Option(
            "--exclude-seen/--include-seen",
            " /--no-exclude-seen",
            help="Do not rank items already in the history [default: loo, the model's served rule; cold-start, yes].",
        ),
    ] = None,
    sampled: Annotated[int, typer.Option(help="Also report the sampled-negatives protocol with this many negatives.")] = 0,
    n_boot: Annotated[
        int, typer.Option(help="Bootstrap resamples for the 95% confidence intervals (0..100,000; 0: none).")
    ] = 1000,
    baseline: Annotated[Path | None, typer.Option(help="Another model folder: adds a paired test against it.")] = None,
    protocol: Annotated[
        str, typer.Option(help="loo: warm users, leave-one-out | cold-start: held-out users, first n = 1, 2, 3, 5 items.")
    ] = "loo",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    threads: Threads = 0,
) -> None:
    """Full-ranking evaluation: leave-one-out (valid and test) or cold-start users; Recall/NDCG@k with 95% CIs."""
    with user_errors(), ExitStack() as claimed:
        use_threads(threads)
        from llmrec.eval.stats import check_n_boot
        from llmrec.identity import check_model_dataset, dataset_for_model

        check_n_boot(n_boot, "--n-boot")  # before the data is read: 10^10 resamples would need ~600 GiB

        if protocol not in ("loo", "cold-start"):
            raise ValueError(f"--protocol must be loo or cold-start, got {protocol!r}")
        if out is not None:  # checked and locked before any work; a report never goes into a model or dataset folder
            from llmrec.outputs import claim_file

            inputs = {"--model": model, "--dataset": dataset, "--baseline": baseline}
            out = claimed.enter_context(claim_file(out, inputs=inputs, beside=(".md", ".png")))
        # never score a model on data it was not trained on (the same check as llmrec.evaluate)
        prepared = dataset_for_model(model, dataset, status=err_console.status)
        if baseline is not None:
            check_model_dataset(baseline, prepared, option="--baseline")
        if protocol == "cold-start":
            from llmrec.eval.cold_start import evaluate_cold_start_artifact, write_cold_start

            cold = evaluate_cold_start_artifact(
                model, prepared, exclude_seen=exclude_seen is not False, n_boot=n_boot, device=device
            )
            paths = write_cold_start(cold, out, model) if out is not None else []
        else:
            from llmrec.eval.leave_one_out import evaluate_model, write_evaluation

            report = evaluate_model(
                model,
                prepared,
                exclude_seen=exclude_seen,
                n_boot=n_boot,
                sampled_negatives=sampled,
                baseline_dir=baseline,
                progress=True,  # a progress bar per split, on stderr
                device=device,
            )
            paths = write_evaluation(report, out, model) if out is not None else []
    if protocol == "cold-start":
        _print_cold_start(cold, prepared, exclude_seen=exclude_seen is not False)
    else:
        _print_loo(report, prepared, exclude_seen=bool(report["protocol"]["exclude_seen"]), baseline=baseline)
    for p in paths:
        say(f"wrote {p}")


def _print_loo(report: dict[str, Any], prepared: PreparedDataset, *, exclude_seen: bool, baseline: Path | None) -> None:
    console.print(_metrics_table(report, ["valid", "test"], [5, 10, 20]))
    other = "include_seen" if exclude_seen else "exclude_seen"
    console.print(
        f"seen items {'excluded' if exclude_seen else 'not excluded'}; ranking over all {prepared.n_items:,} items; "
        f"with seen items {'not excluded' if exclude_seen else 'excluded'}: test NDCG@10 {report[f'test_{other}']['ndcg@10']:.4f}, "
        f"Recall@10 {report[f'test_{other}']['recall@10']:.4f} (report key test_{other}); "
        f"repeat test targets (already in the history): {report['repeat_targets'].get('test', 0)}",
        markup=False,
        soft_wrap=True,
    )
    served = report["protocol"].get("served_exclude_seen")
    if served is not None:  # the model's seen-item rule (llmrec.eval.seen_rule): what recommend and serve do
        same = "as above" if served == exclude_seen else "the other protocol"
        say(f"served: seen items {'excluded' if served else 'kept'} (the model's rule; {same})")
    if report["protocol"].get("refit_on_valid") is False:
        console.print(
            "valid item not a training target: the model was trained on training events only", markup=False, soft_wrap=True
        )
    if report["protocol"].get("valid_held_out") is False:
        held_out = ", ".join(f"{k} {v:.4f}" for k, v in report["protocol"].get("selection_valid", {}).items() if v is not None)
        console.print(
            "note: the model was refit on train + valid events, so its valid row is not held out; "
            f"held-out validation of the selection run: {held_out or 'none (a fixed number of epochs, no selection run)'}",
            markup=False,
            soft_wrap=True,
        )
    _print_popularity(report)
    for split, tests in report.get("extra", {}).get("paired", {}).items():
        if isinstance(tests, dict):
            for metric, t in tests.items():
                console.print(
                    f"paired vs {baseline} ({split} {metric}): diff {t['mean_diff']:+.4f} "
                    f"[{t['ci_lo']:+.4f}, {t['ci_hi']:+.4f}], p = {t['p_value']:.4f}",
                    markup=False,
                    soft_wrap=True,
                )


def _print_popularity(report: dict[str, Any]) -> None:
    """The check against most-popular (`llmrec.eval.popularity`): one line per split, warnings on stderr."""
    for split, c in (report.get("most_popular") or {}).items():
        lo, hi = c["ci"]
        say(
            f"vs most-popular ({split} NDCG@10): {c['model']:.4f} vs {c['most_popular']:.4f}, diff {c['diff']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], p = {c['p_value']:.3g}"
        )
    for line in report.get("warnings") or ():
        say(f"warning: {line}", err=True)


def _print_cold_start(results: dict[str, ColdStartResult], prepared: PreparedDataset, *, exclude_seen: bool) -> None:
    first = next(iter(results.values()))
    table = Table("method", "n", "NDCG@10 [95% CI]", "Recall@10 [95% CI]", title=f"cold-start users ({first.n_users})")
    for name, r in results.items():
        for n in r.support_sizes:
            cells = []
            for m in ("ndcg@10", "recall@10"):
                lo, hi = r.ci.get(n, {}).get(m, (float("nan"), float("nan")))
                cells.append(f"{r.metrics[n][m]:.4f} [{lo:.4f}, {hi:.4f}]")
            table.add_row(name, str(n), *cells)
    console.print(table)
    say(
        f"support = the first n items, query = the next item; seen items {'excluded' if exclude_seen else 'not excluded'}; "
        f"ranking over all {prepared.n_items:,} items"
    )


def meta_train_cmd(
    dataset: Annotated[
        str, typer.Option(help="A prepared dataset folder with a cold-user split (cold_valid users pick settings).")
    ],
    base: Annotated[Path, typer.Option(help="The base model artifact (next-item-lm, tvrec, bsarec), trained on this dataset.")],
    out: Annotated[Path, typer.Option("--out", help="Meta-trained artifact folder to write.")],
    method: Annotated[str, typer.Option(help="maml | finetune | in-context | in-context+maml")] = "maml",
    config: Annotated[Path | None, typer.Option(help="TOML with [adapter] [meta] [episodic] [train] sections.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. meta.outer_lr=0.02 (repeatable).")] = None,
    threads: Threads = 0,
) -> None:
    """Meta-train for cold-start users: a per-user adapter (MAML) and/or the LM on short-context episodes."""
    with user_errors():
        sections = config_sections(config, set_)
        use_threads(threads)
        from llmrec.meta.training import meta_train_model
        from llmrec.outputs import claim_folder

        inputs = {"--dataset": dataset, "--base": base, "--config": config}
        with claim_folder(out, "model", inputs=inputs) as target:
            summary = meta_train_model(dataset_arg(dataset, target.parent), base, target, method, sections)
    shown = {k: summary[k] for k in ("method", "valid_zero_shot", "valid", "warm_valid_base", "warm_valid", "seconds")}
    console.print(f"meta-trained {json.dumps(shown)} → {out}", markup=False, soft_wrap=True)


def map_cold_items_cmd(
    model: Annotated[Path, typer.Option(help="A trained next-item-lm artifact.")],
    dataset: Annotated[
        str,
        typer.Option(
            help="The dataset it was trained on, a prepared folder or a registry name (tells which items it never saw)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Artifact folder to write (a copy with the cold items mapped).")],
    ridge: Annotated[float, typer.Option(help="Ridge strength of the text -> embedding regression (>= 0).")] = 0.1,
    method: Annotated[
        str,
        typer.Option(
            help="text-map: a ridge map from text to the trained embeddings; features: zero the items' id rows so a "
            "model trained with item text or attributes places them by those alone."
        ),
    ] = "text-map",
    text_model: Annotated[
        str | None, typer.Option(help="Local sentence-transformers folder (default: all-MiniLM-L6-v2, offline).")
    ] = None,
    threads: Threads = 0,
) -> None:
    """Give items that never occurred in training an embedding mapped from their text, so they can be recommended."""
    with user_errors():
        use_threads(threads)
        from llmrec.models.cold_items import map_cold_items_artifact
        from llmrec.outputs import claim_folder

        inputs = {"--model": model, "--dataset": dataset, "--text-model": text_model}
        with claim_folder(out, "model", inputs=inputs) as target:
            summary = map_cold_items_artifact(
                model,
                dataset_arg(dataset, model.parent),
                target,
                ridge=ridge,
                text_model=text_model,
                progress=True,
                method=method,
            )
    console.print(
        f"mapped {summary['cold_items']} items in no training event"
        f"{' (train + valid: the model was refit)' if summary.get('refit_on_valid') else ''}; of them held out by "
        f"the split as cold items: {summary.get('split_cold_items', 0)}; "
        + (
            f"from {summary['warm_items']} trained items (ridge {summary['ridge']})"
            if summary["method"] == "text-map"
            else "by their item features alone (id rows zeroed)"
        )
        + f" → {out}",
        markup=False,
        soft_wrap=True,
    )


def tune_cmd(
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)],
    out: Annotated[Path, typer.Option(help="Best config file to write (TOML, for `llmrec train --model M --config`).")],
    model: Annotated[
        str,
        typer.Option(
            help="The model to tune: one whose model file declares a search space (tvrec, bsarec, next-item-lm, sasrec)."
        ),
    ] = DEFAULT_MODEL,
    trials: Annotated[int, typer.Option(help="Maximum number of trials.")] = 20,
    budget_minutes: Annotated[float, typer.Option(help="Wall-time budget for the whole search.")] = 60.0,
    config: Annotated[
        Path | None, typer.Option(help="Base config: a key it sets is held fixed, the model's other searched keys vary.")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Base settings, held fixed, e.g. train.epochs=50.")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    threads: Threads = 0,
) -> None:
    """Search a model's hyperparameters (the search space its model file declares, less the keys --config / --set
    fix) with Optuna on the validation metric, pruning poor trials, within the time budget; write the best config."""
    with user_errors():
        use_threads(threads)
        from llmrec.config import check_range
        from llmrec.experiment import check_settings
        from llmrec.outputs import claim_file
        from llmrec.tune import search_space, tune

        check_range("--trials", trials, 1, 100_000)
        check_range("--budget-minutes", budget_minutes, 0.0, low_open=True)
        search_space(model)  # a model without a search space is refused before any work
        sections = config_sections(config, set_)
        run = check_settings(model, sections, progress=False)  # the model's recipe under the base [train] keys
        base_train = run.train
        model_params = dict(sections.get("model", {}))
        use_attributes = bool(model_params.pop("use_attributes", True))
        with claim_file(out, inputs={"--dataset": dataset, "--config": config}) as target:  # before any work
            summary = tune(
                dataset_arg(dataset, target.parent),
                model=model,
                base_model=model_params,
                base_train=base_train,
                n_trials=trials,
                budget_minutes=budget_minutes,
                seed=seed,
                out=target,
                use_attributes=use_attributes,
                force=force,
                on_trial=None if quiet else lambda line: say(line, err=True),  # one line per trial, as it ends
                fixed={*sections.get("model", {}), *sections.get("train", {})},  # what the user set is not searched
            )
    console.print(f"best validation value {summary['best_value']:.4f} after {len(summary['trials'])} trials → {out}")


def export_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    out: Annotated[Path, typer.Option("--out", help="Serving artifact folder to write (without training state).")],
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also write scorer.onnx (next-item LM), checked against PyTorch's scores.")
    ] = False,
    text_embeddings: Annotated[
        bool | None,
        typer.Option(
            "--text-embeddings/--no-text-embeddings",
            help="Store the catalogue's text embeddings, so a --query encodes only itself (default: when the text "
            "encoder is installed).",
            show_default=False,
        ),
    ] = None,
    threads: Threads = 0,
) -> None:
    """A slim copy of a model for serving: no optimizer state, checkpoints or logs; optionally an ONNX scorer."""
    with user_errors():
        use_threads(threads)
        from llmrec.export import export_artifact
        from llmrec.outputs import claim_folder

        with claim_folder(out, "model", inputs={"--model": model}) as target:
            summary = export_artifact(model, target, onnx=onnx, text_embeddings=text_embeddings)
    check = f"; ONNX scores within {summary['onnx_max_abs_diff']:.1e} of PyTorch's" if "onnx_max_abs_diff" in summary else ""
    console.print(
        f"exported {len(summary['files'])} files, {summary['bytes_after'] / 1e6:.1f} MB "
        f"(from {summary['bytes_before'] / 1e6:.1f} MB){check} → {out}",
        markup=False,
        soft_wrap=True,
    )
