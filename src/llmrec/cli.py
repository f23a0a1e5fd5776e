"""The ``llmrec`` command line (entry point ``main``).

Layout: ``app`` is the root Typer app; each group of commands is a sub-app (``data_app``); ``train``,
``evaluate``, ``recommend``, ``tune`` and ``serve`` are top-level commands. The helpers every command shares sit at the
top: the two consoles and ``_user_errors``, the one place that turns bad user input into ``error: ...`` on
stderr and exit code 2, without a traceback.

Imports of torch, polars and ``llmrec.data`` happen inside the command functions, so ``llmrec --help`` stays
fast and imports neither (``tests/test_cli_data.py`` checks this).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from llmrec.errors import ChecksumError, DataError, DatasetNotFoundError

if TYPE_CHECKING:
    from llmrec.data import PrepareConfig

__all__ = ["app", "data_app", "main"]

# stdout carries results (tables, JSON); stderr carries progress and errors, so `... --json > f` stays clean.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# User errors: bad files, bad options, missing or corrupted datasets. Anything else is a bug and keeps its
# traceback. DatasetNotFoundError is a FileNotFoundError; DataError and ChecksumError are ValueErrors; they are
# listed anyway so that the contract reads here.
_USER_ERRORS: tuple[type[Exception], ...] = (
    DataError,
    ChecksumError,
    DatasetNotFoundError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    KeyError,  # llmrec.recommend.UnknownIdError: an unknown user or item id
)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print a user error as ``error: <message>`` on stderr and exit with code 2 (no traceback)."""
    try:
        yield
    except _USER_ERRORS as e:
        # markup=False: messages hold paths and lists such as ['purchase'] that rich would read as markup;
        # soft_wrap: a long path must stay on one line (no hard wraps inserted at the console width).
        err_console.print(f"error: {e}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as e:
        # The file system refused (read-only, permission denied, disk full ...): the path and the reason. The
        # writers are atomic, so nothing half-written is left behind.
        err_console.print(f"error: {_os_error_message(e)}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _os_error_message(e: OSError) -> str:
    reason = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {reason}" if e.filename is not None else reason


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Python warnings raised inside (e.g. an ignored catalogue column) as one `warning: ...` line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                err_console.print(f"warning: {w.message}", markup=False, soft_wrap=True)


def _int(n: float) -> str:
    return f"{int(n):,}"


def _num(x: float) -> str:
    """A statistic for a table: integers with thousands separators, other values with 2 decimals."""
    return _int(x) if float(x).is_integer() else f"{x:,.2f}"


# rich_markup_mode=None: help texts are plain text, so "[model] and [train] sections" or "[default: ...]" print
# as written instead of being eaten as Rich markup tags.
app = typer.Typer(
    name="llmrec",
    help="LLM-style generative recommendation: prepare data, train, evaluate, recommend, serve.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from llmrec import __version__

        typer.echo(f"llmrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """LLM-style generative recommendation: prepare data, train, evaluate, recommend, serve."""

# ---- llmrec data ... ------------------------------------------------------------------------------------------
data_app = typer.Typer(help="Prepare datasets and inspect prepared ones.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")


def _check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that is not a prepared dataset: saving removes whatever is at --out."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())):
        raise ValueError(f"{out}: exists and is not a prepared dataset; refusing to replace it (choose another --out)")


def _prepare_config(
    *,
    user_core: int | None,
    item_core: int | None,
    k_core: int | None,
    no_dedupe: bool,
    keep_events: str | None,
    min_value: float | None,
    split: str,
    valid_cutoff: float | None,
    test_cutoff: float | None,
    cold_user_fraction: float | None,
    cold_item_fraction: float | None,
    seed: int,
) -> PrepareConfig:
    """Options → PrepareConfig. Options left out keep PrepareConfig's defaults (one source of defaults)."""
    from llmrec.data import PrepareConfig

    kwargs: dict[str, Any] = {"split": split, "seed": seed, "dedupe": not no_dedupe}
    cores = {
        "user_core": user_core if user_core is not None else k_core,
        "item_core": item_core if item_core is not None else k_core,
    }
    optional = {
        **cores,
        "min_value": min_value,
        "valid_cutoff": valid_cutoff,
        "test_cutoff": test_cutoff,
        "cold_user_fraction": cold_user_fraction,
        "cold_item_fraction": cold_item_fraction,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if keep_events is not None:
        kwargs["keep_events"] = tuple(e.strip() for e in keep_events.split(",") if e.strip())
    return PrepareConfig(**kwargs)


@data_app.command("prepare")
def data_prepare(
    out: Annotated[Path, typer.Option("--out", help="Prepared dataset folder to write (written atomically).")],
    dataset: Annotated[
        str | None, typer.Option(help="A registry dataset by name (see `llmrec data list`); raw files from --path if given.")
    ] = None,
    path: Annotated[Path | None, typer.Option(help="With --dataset: a folder holding its raw files.")] = None,
    events: Annotated[Path | None, typer.Option(help="Your own events file or folder (instead of --dataset).")] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Format of --events: s3rec|movielens|mind|recbole|csv|tsv|parquet|jsonl. "
            "Default: from the extension (.csv .tsv .parquet .jsonl .inter) or the folder's files.",
        ),
    ] = None,
    items: Annotated[Path | None, typer.Option(help="With --events: an item catalogue file (csv, tsv, parquet, jsonl).")] = None,
    columns: Annotated[
        str | None, typer.Option(help="With a table format: event column names, e.g. user=uid,item=sku,time=ts.")
    ] = None,
    item_columns: Annotated[
        str | None,
        typer.Option(help="With --items: catalogue column names, e.g. item=sku,title=name,text=description,categories=category."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Dataset name shown in reports. Default: the registry name or the events file's stem.")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Domain label: ecommerce, movies, music, news, ...")] = None,
    user_core: Annotated[int | None, typer.Option(help="Keep users with at least this many events.")] = None,
    item_core: Annotated[int | None, typer.Option(help="Keep items with at least this many events.")] = None,
    k_core: Annotated[int | None, typer.Option(help="Sets --user-core and --item-core together.")] = None,
    no_dedupe: Annotated[bool, typer.Option("--no-dedupe", help="Keep repeated (user, item, time) events.")] = False,
    keep_events: Annotated[str | None, typer.Option(help="Keep only these event types, e.g. purchase,click.")] = None,
    min_value: Annotated[float | None, typer.Option(help="Keep events whose value is at least this.")] = None,
    split: Annotated[str, typer.Option(help="Split protocol: loo|temporal|cold-user|cold-item.")] = "loo",
    valid_cutoff: Annotated[float | None, typer.Option(help="temporal: validation starts at this time.")] = None,
    test_cutoff: Annotated[float | None, typer.Option(help="temporal: test starts at this time.")] = None,
    cold_user_fraction: Annotated[float | None, typer.Option(help="cold-user: share of users held out.")] = None,
    cold_item_fraction: Annotated[float | None, typer.Option(help="cold-item: share of items held out.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cold-user / cold-item draws.")] = 0,
    streaming: Annotated[
        bool | None,
        typer.Option(
            "--streaming/--in-memory",
            help="Streaming engine for logs larger than memory (parquet/csv/tsv; --events may be a directory or a "
            "glob). Default: streaming for a directory, a glob or files over 1 GiB, else in memory. Same output.",
        ),
    ] = None,
) -> None:
    """Read a dataset (by name, or your own files), filter, split, and save it as a prepared dataset."""
    with _user_errors(), _warnings_as_lines():
        if (dataset is None) == (events is None):
            raise ValueError("give exactly one of --dataset NAME or --events FILE")
        if dataset is not None and (fmt or items or columns or item_columns):
            raise ValueError("--format, --items, --columns and --item-columns go with --events, not with --dataset")
        if events is not None and path is not None:
            raise ValueError("--path goes with --dataset; give your own file with --events")
        if item_columns is not None and items is None:
            raise ValueError("--item-columns maps the catalogue: give it with --items FILE")
        if dataset is not None and (Path(dataset) / "manifest.json").is_file():
            raise ValueError(f"--dataset {dataset}: already a prepared dataset; give it to train or evaluate as it is")
        config = _prepare_config(
            user_core=user_core,
            item_core=item_core,
            k_core=k_core,
            no_dedupe=no_dedupe,
            keep_events=keep_events,
            min_value=min_value,
            split=split,
            valid_cutoff=valid_cutoff,
            test_cutoff=test_cutoff,
            cold_user_fraction=cold_user_fraction,
            cold_item_fraction=cold_item_fraction,
            seed=seed,
        )
        out = out.resolve()
        _check_out_dir(out)
        from llmrec.data import (
            DATASETS,
            ColumnMap,
            ItemColumnMap,
            infer_format,
            prepare,
            read_dataset,
            read_files,
        )
        from llmrec.data.readers import DOMAINS

        if domain is not None and domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
        if events is not None and fmt is None:
            fmt = infer_format(events)
        item_map = ItemColumnMap.parse(item_columns) if item_columns else None
        if _use_streaming(streaming, dataset, events, fmt):
            assert events is not None and fmt is not None  # checked by _use_streaming
            from llmrec.data.streaming import prepare_streaming

            with err_console.status("reading ...") as status:
                manifest = prepare_streaming(
                    str(events),
                    fmt,
                    out,
                    columns=ColumnMap.parse(columns) if columns else None,
                    config=config,
                    items=items,
                    item_columns=item_map,
                    domain=domain,
                    name=name,
                    progress=status.update,
                )
            _print_prepared(manifest["stats"], config.split, out, "streaming")
            return
        with err_console.status("reading ...") as status:
            if dataset is not None:
                if dataset not in DATASETS:
                    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
                raw, source = read_dataset(dataset, path)
                raw.domain = domain or raw.domain
            else:
                assert events is not None and fmt is not None  # checked above
                column_map = ColumnMap.parse(columns) if columns else None
                raw, source = read_files(events, fmt, items=items, columns=column_map, item_columns=item_map, domain=domain)
            status.update(f"preparing {raw.events.height:,} events ...")
            prepared = prepare(raw, config, source=source, name=name)
            status.update(f"writing {out} ...")
            prepared.save(out)
    _print_prepared(prepared.manifest["stats"], config.split, out, "in memory")


STREAMING_THRESHOLD = 2**30  # bytes of input above which `data prepare` streams by default


def _use_streaming(streaming: bool | None, dataset: str | None, events: Path | None, fmt: str | None) -> bool:
    """--streaming / --in-memory as given; by default stream a directory, a glob, or input over 1 GiB."""
    from llmrec.data.streaming import STREAMING_FORMATS

    if streaming is False or dataset is not None or events is None:
        if streaming and dataset is not None:
            raise ValueError("--streaming goes with --events (parquet, csv or tsv), not with --dataset")
        if streaming is False and events is not None and not events.is_file():
            raise ValueError(f"{events}: the in-memory path reads one file; use --streaming for a directory or glob")
        return False
    if fmt not in STREAMING_FORMATS:
        if streaming:
            raise ValueError(f"--streaming reads {', '.join(STREAMING_FORMATS)}, not --format {fmt}")
        return False
    if streaming or not events.is_file():
        return True
    return events.stat().st_size > STREAMING_THRESHOLD


def _print_prepared(stats: dict[str, Any], split: str, out: Path, engine: str) -> None:
    console.print(
        f"prepared {_int(stats['users'])} users, {_int(stats['items'])} items, "
        f"{_int(stats['interactions'])} interactions (split {split}, {engine}) → {out}",
        markup=False,
        soft_wrap=True,
    )


def _stats_tables(stats: dict[str, Any]) -> list[Table]:
    overview = Table("", "", title="dataset", show_header=False)
    overview.add_row("users", _int(stats["users"]))
    overview.add_row("items", _int(stats["items"]))
    overview.add_row("interactions", _int(stats["interactions"]))
    overview.add_row("density", f"{stats['density']:.4%}")

    quantiles = Table("", "sequence length", "item popularity", title="distributions")
    seq, pop = stats["sequence_length"], stats["item_popularity"]
    for q in ("min", "p25", "p50", "p75", "p90", "p99", "max", "mean"):
        quantiles.add_row(q, _num(seq[q]) if q in seq else "-", _num(pop[q]) if q in pop else "-")

    split = Table("", "", title="split", show_header=False)
    split.add_row("train events", _int(stats["train_events"]))
    split.add_row("valid examples", _int(stats["valid_examples"]))
    split.add_row("test examples", _int(stats["test_examples"]))
    split.add_row("cold items", _int(stats["cold_items"]))
    for role, n in stats["roles"].items():
        split.add_row(f"users: {role}", _int(n))
    return [overview, quantiles, split]


@data_app.command("stats")
def data_stats(
    directory: Annotated[Path, typer.Argument(help="A prepared dataset folder.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Statistics of a prepared dataset: sizes, density, length and popularity quantiles, split counts."""
    with _user_errors():
        from llmrec.data import PreparedDataset

        stats = PreparedDataset.load(directory).stats()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    for table in _stats_tables(stats):
        console.print(table)


def _local_status(name: str) -> str:
    """Where dataset `name` is found without downloading: "cache", "mirror", "path", "corrupted" or "not found"."""
    from llmrec.data import resolve_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unpinned files warn; `list` reports them as found all the same
            return resolve_dataset(name, allow_download=False).origin
    except DatasetNotFoundError:
        return "not found"
    except ChecksumError:
        return "corrupted"


@data_app.command("list")
def data_list() -> None:
    """Datasets known by name, and whether each is available locally (cache or mirror); downloads nothing."""
    with _user_errors():
        from llmrec.data import DATASETS
        from llmrec.data.registry import cache_dir

        table = Table("name", "domain", "local", "description", title="datasets")
        for name, spec in DATASETS.items():
            table.add_row(name, spec.domain, _local_status(name), spec.description)
        places = f"cache: {cache_dir()}; mirror: {os.environ.get('LLMREC_DATA_MIRROR') or '(LLMREC_DATA_MIRROR not set)'}"
    console.print(table)
    console.print(places, markup=False, soft_wrap=True)


# ---- llmrec train / evaluate / recommend / tune ---------------------------------------------------------------
def _open_dataset(dataset: str, prepared_root: Path) -> tuple[Any, Path]:
    """`llmrec.data.open_dataset` with a spinner on stderr while a registry dataset is prepared."""
    from llmrec.data import open_dataset

    return open_dataset(dataset, prepared_root, status=err_console.status)


_DATASET_HELP = "A prepared dataset folder, or a registry name (prepared with the defaults next to the model)."


def _dataset_arg(dataset: str | Path, near: Path) -> Any:
    """--dataset of any command: a prepared folder, or a registry name prepared (defaults) into `near/<name>-data`."""
    return _open_dataset(str(dataset), near / f"{dataset}-data")[0]


def _config_sections(config: Path | None, overrides: list[str] | None) -> dict[str, dict[str, Any]]:
    from llmrec.config import load_toml, merge_sections, parse_overrides

    file_sections = load_toml(config) if config is not None else {}
    return merge_sections(file_sections, parse_overrides(overrides or []))


def _metrics_table(report: dict[str, Any], splits: list[str], ks: list[int]) -> Table:
    table = Table("split", *(f"{m}@{k}" for k in ks for m in ("R", "N")), "MRR", "users", title="full ranking (R = recall, N = NDCG)")
    for split in splits:
        row = report[split]
        cells = [f"{row[f'{m}@{k}']:.4f}" for k in ks for m in ("recall", "ndcg")]
        table.add_row(split, *cells, f"{row['mrr']:.4f}", _int(report["n_users"][split]))
    return table


@app.command("train")
def train_cmd(
    dataset: Annotated[str, typer.Option(help="A prepared dataset folder, or a registry name (prepared with defaults).")],
    out: Annotated[Path, typer.Option("--out", help="Model artifact folder to write.")],
    model: Annotated[str, typer.Option(help="next-item-lm | sasrec | most-popular | item-knn | t5-semantic")] = "next-item-lm",
    config: Annotated[Path | None, typer.Option(help="TOML file with [model] and [train] sections.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. train.lr=1e-3 (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=N.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted training of the same --out.")] = False,
    threads: Annotated[int, typer.Option(help="torch threads (0 = all cores).")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (auto: CUDA when available).")] = "auto",
    track: Annotated[
        str | None, typer.Option(help="Log params, per-epoch metrics and the summary to: tensorboard | mlflow.")
    ] = None,
    track_uri: Annotated[
        str | None,
        typer.Option(help="tensorboard: log folder (default ./tensorboard); mlflow: a folder or tracking URI (default $MLFLOW_TRACKING_URI, else ./mlruns)."),
    ] = None,
) -> None:
    """Train a model; early stopping on validation NDCG@10; writes a self-describing artifact folder.

    Runs data-parallel (DDP) when launched with `torchrun --nproc-per-node N` or `accelerate launch
    --num_processes N`: the global batch is split across processes, only rank 0 writes.
    """
    with _user_errors():
        sections = _config_sections(config, [*(set_ or []), *([f"train.epochs={epochs}"] if epochs is not None else [])])
        if track is not None and track not in ("tensorboard", "mlflow"):
            raise ValueError(f"--track must be tensorboard or mlflow, got {track!r}")
        if out.exists() and not (out / "config.json").is_file() and any(out.iterdir()):
            raise FileExistsError(f"{out}: exists and is not a model folder; refusing to replace it")
        import torch

        from llmrec.experiment import train_model
        from llmrec.train import distributed

        if threads:
            torch.set_num_threads(threads)
        ctx = distributed.init_from_env(device)
        try:
            if ctx.is_main:  # one process prepares a registry dataset; the others then read it
                prepared, prepared_dir = _open_dataset(dataset, out.parent / f"{dataset}-data")
            distributed.barrier()
            if not ctx.is_main:
                prepared, prepared_dir = _open_dataset(dataset, out.parent / f"{dataset}-data")
            tracker = _start_tracker(track, track_uri, out, {"model_type": model, "dataset": prepared.name, **sections}) if ctx.is_main else None
            try:
                summary = train_model(prepared, prepared_dir, model, out, sections, resume=resume, callbacks=[tracker] if tracker else [])
            except BaseException:
                if tracker is not None:
                    tracker.finish(None)  # the run is marked failed
                raise
            if tracker is not None:
                tracker.finish(summary)
        finally:
            distributed.shutdown()
    if not ctx.is_main:
        return
    console.print(f"trained {summary['model']}", markup=False)
    console.print(_training_table(summary, out))
    console.print(f"model written to {out}", markup=False, soft_wrap=True)


def _start_tracker(track: str | None, uri: str | None, out: Path, params: dict[str, Any]) -> Any:
    """`train --track`: a started TensorBoard / MLflow tracker (llmrec.train.tracking), or None."""
    if track is None:
        return None
    from llmrec.train.tracking import make_tracker

    try:
        tracker = make_tracker(track, uri=uri, run_name=out.name)
    except ImportError as e:  # the optional `track` extra is not installed
        raise ValueError(str(e)) from None
    tracker.start(params)
    err_console.print(f"tracking with {track}: {getattr(tracker, 'uri', None) or getattr(tracker, 'log_dir', '')}", markup=False, soft_wrap=True)
    return tracker


def _training_table(summary: dict[str, Any], out: Path) -> Table:
    """`train`'s closing summary: best epoch, the validation metrics of that epoch, time (4 decimals, no JSON)."""
    import csv

    table = Table("", "", show_header=False)
    if "best_epoch" in summary:
        stopped = " (stopped early)" if summary.get("stopped_early") else ""
        table.add_row("best epoch", f"{summary['best_epoch']} of {summary['epochs_run']} run{stopped}")
        metrics_csv = out / "train" / "metrics.csv"
        rows: list[dict[str, str]] = []
        if metrics_csv.is_file():
            with metrics_csv.open(newline="") as f:
                rows = list(csv.DictReader(f))
        best = next((r for r in rows if r.get("epoch") and int(float(r["epoch"])) == summary["best_epoch"]), None)
        shown = {k.removeprefix("valid_"): float(v) for k, v in (best or {}).items() if k.startswith("valid_") and v}
        if not shown and summary.get("best_valid") is not None:
            shown = {str(summary.get("train", {}).get("metric", "valid")): float(summary["best_valid"])}
        for name, value in shown.items():
            table.add_row(f"valid {name}", f"{value:.4f}")
        if summary.get("train", {}).get("refit_on_valid"):
            table.add_row("then", f"refit on train + valid events for {summary['best_epoch']} epochs")
    table.add_row("time", f"{summary['seconds']:.1f} s")
    if "world_size" in summary:
        table.add_row("processes", str(summary["world_size"]))
    return table


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    out: Annotated[Path | None, typer.Option(help="Report JSON path (a .md and a .png are written beside it).")] = None,
    dataset: Annotated[
        str | None, typer.Option(help=_DATASET_HELP.rstrip(".") + "; default: the one the model was trained on.")
    ] = None,
    exclude_seen: Annotated[
        bool | None, typer.Option(help="Do not rank items already in the history [default: no for loo, yes for cold-start].")
    ] = None,
    sampled: Annotated[int, typer.Option(help="Also report the sampled-negatives protocol with this many negatives.")] = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% confidence intervals.")] = 1000,
    baseline: Annotated[Path | None, typer.Option(help="Another model folder: adds a paired test against it.")] = None,
    protocol: Annotated[
        str, typer.Option(help="loo: warm users, leave-one-out | cold-start: held-out users, first n = 1, 2, 3, 5 items.")
    ] = "loo",
    device: Annotated[str, typer.Option(help=_DEVICE_HELP)] = "auto",
) -> None:
    """Full-ranking evaluation: leave-one-out (valid and test) or cold-start users; Recall/NDCG@k with 95% CIs."""
    with _user_errors():
        from llmrec.experiment import evaluate_model, write_evaluation
        from llmrec.identity import check_model_dataset, dataset_for_model

        if protocol not in ("loo", "cold-start"):
            raise ValueError(f"--protocol must be loo or cold-start, got {protocol!r}")
        # never score a model on data it was not trained on (the same check as llmrec.evaluate)
        prepared = dataset_for_model(model, dataset, status=err_console.status)
        if baseline is not None:
            check_model_dataset(baseline, prepared, option="--baseline")
        if protocol == "cold-start":
            _evaluate_cold_start(model, prepared, exclude_seen=exclude_seen is not False, n_boot=n_boot, out=out, device=device)
            return
        exclude_seen = bool(exclude_seen)
        report = evaluate_model(
            model, prepared, exclude_seen=exclude_seen, n_boot=n_boot, sampled_negatives=sampled, baseline_dir=baseline,
            progress=True,  # a progress bar per split, on stderr
            device=device,
        )
        paths = write_evaluation(report, out, model) if out is not None else []
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
    if report["protocol"].get("refit_on_valid") is False:
        console.print("valid item not a training target: the model was trained on training events only", markup=False, soft_wrap=True)
    if report["protocol"].get("valid_held_out") is False:
        held_out = ", ".join(f"{k} {v:.4f}" for k, v in report["protocol"].get("selection_valid", {}).items() if v is not None)
        console.print(
            "note: the model was refit on train + valid events, so its valid row is not held out; "
            f"held-out validation of the selection run: {held_out}",
            markup=False,
            soft_wrap=True,
        )
    for split, tests in report.get("extra", {}).get("paired", {}).items():
        if isinstance(tests, dict):
            for metric, t in tests.items():
                console.print(
                    f"paired vs {baseline} ({split} {metric}): diff {t['mean_diff']:+.4f} "
                    f"[{t['ci_lo']:+.4f}, {t['ci_hi']:+.4f}], p = {t['p_value']:.4f}",
                    markup=False,
                    soft_wrap=True,
                )
    for p in paths:
        console.print(f"wrote {p}", markup=False, soft_wrap=True)


def _evaluate_cold_start(
    model: Path, prepared: Any, *, exclude_seen: bool, n_boot: int, out: Path | None, device: str = "auto"
) -> None:
    """`evaluate --protocol cold-start`: the cold_test users, zero-shot and (with an adapter) adapted."""
    from llmrec.meta.maml import has_adapter
    from llmrec.meta.tasks import evaluate_cold_start
    from llmrec.meta.training import cold_start_table
    from llmrec.recommend import Recommender

    _, sequences = prepared.cold_users("cold_test")
    if not sequences:
        raise ValueError("the dataset has no cold_test users: prepare it with --split cold-user")
    if device == "auto" and has_adapter(model):
        device = "cpu"  # the adapter's inner loop runs on the CPU
    rec = Recommender.load(model, device=device)
    score_fns: dict[str, Any] = {"zero-shot": rec.score_batch}
    if rec.adapter is not None:
        score_fns["adapted"] = lambda histories: rec.score_batch(histories, adapt=True)
    results = {name: evaluate_cold_start(fn, sequences, exclude_seen=exclude_seen, n_boot=n_boot) for name, fn in score_fns.items()}
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
    console.print(
        f"support = the first n items, query = the next item; seen items {'excluded' if exclude_seen else 'not excluded'}; "
        f"ranking over all {prepared.n_items:,} items",
        markup=False,
        soft_wrap=True,
    )
    if out is not None:
        report = {"protocol": "cold-start", "model": str(model), **{name: r.to_dict() for name, r in results.items()}}
        from llmrec.atomic import atomic_write

        atomic_write(out, json.dumps(report, indent=2).encode())
        atomic_write(out.with_suffix(".md"), (cold_start_table(results) + "\n").encode())
        console.print(f"wrote {out}", markup=False, soft_wrap=True)


@app.command("meta-train")
def meta_train_cmd(
    dataset: Annotated[str, typer.Option(help="A prepared dataset folder with a cold-user split (cold_valid users pick settings).")],
    base: Annotated[Path, typer.Option(help="The base next-item-lm artifact, trained on this dataset.")],
    out: Annotated[Path, typer.Option("--out", help="Meta-trained artifact folder to write.")],
    method: Annotated[str, typer.Option(help="maml | finetune | in-context | in-context+maml")] = "maml",
    config: Annotated[Path | None, typer.Option(help="TOML with [adapter] [meta] [episodic] [train] sections.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. meta.outer_lr=0.02 (repeatable).")] = None,
    threads: Annotated[int, typer.Option(help="torch threads (0 = all cores).")] = 0,
) -> None:
    """Meta-train for cold-start users: a per-user adapter (MAML) and/or the LM on short-context episodes."""
    with _user_errors():
        sections = _config_sections(config, set_)
        import torch

        from llmrec.meta.training import meta_train_model

        if threads:
            torch.set_num_threads(threads)
        summary = meta_train_model(_dataset_arg(dataset, out.parent), base, out, method, sections)
    shown = {k: summary[k] for k in ("method", "valid_zero_shot", "valid", "warm_valid_base", "warm_valid", "seconds")}
    console.print(f"meta-trained {json.dumps(shown)} → {out}", markup=False, soft_wrap=True)


@app.command("map-cold-items")
def map_cold_items_cmd(
    model: Annotated[Path, typer.Option(help="A trained next-item-lm artifact.")],
    dataset: Annotated[str, typer.Option(help="The dataset it was trained on, a prepared folder or a registry name (tells which items it never saw).")],
    out: Annotated[Path, typer.Option("--out", help="Artifact folder to write (a copy with the cold items mapped).")],
    ridge: Annotated[float, typer.Option(help="Ridge strength of the text -> embedding regression (>= 0).")] = 0.1,
    text_model: Annotated[str | None, typer.Option(help="Local sentence-transformers folder (default: all-MiniLM-L6-v2, offline).")] = None,
) -> None:
    """Give items that never occurred in training an embedding mapped from their text, so they can be recommended."""
    with _user_errors():
        from llmrec.models.cold_items import map_cold_items_artifact

        summary = map_cold_items_artifact(model, _dataset_arg(dataset, model.parent), out, ridge=ridge, text_model=text_model, progress=True)
    console.print(f"mapped {summary['cold_items']} cold items from {summary['warm_items']} warm ones (ridge {summary['ridge']}) → {out}", markup=False, soft_wrap=True)


_DIVERSITY_HELP = "0..1: re-rank the top candidates for variety (maximal marginal relevance, λ = 1 − diversity)."
_QUERY_HELP = 'What you are in the mood for, in words, e.g. "a light-hearted animated film for the kids".'
_QUERY_WEIGHT_HELP = "0..1: weight of --query against your history (0 = history only, 1 = query only)."
_GENERATOR_HELP = "A local Hugging Face causal LM folder to word the reasons (default: a template)."
_EXCLUDE_SEEN_HELP = "Leave out items already in the history (the default), or let them come back (--include-seen: re-purchase domains)."


_DEVICE_HELP = "auto | cpu | cuda (auto: CUDA when available)."


def _request(
    model: Path, user: str | None, history: str | None, k: int, device: str = "cpu"
) -> tuple[Any, list[str] | None]:
    """Shared checks of `recommend` and `explain`: exactly one of --user/--history, k >= 1; loads the model."""
    if (user is None) == (history is None):
        raise ValueError("give exactly one of --user ID or --history ID,ID,... (or --users all|FILE with --out)")
    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    from llmrec.recommend import Recommender

    hist = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
    return Recommender.load(model, device=device), hist


@app.command("recommend")
def recommend_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    user: Annotated[str | None, typer.Option(help="A raw user id known to the model.")] = None,
    history: Annotated[str | None, typer.Option(help="Raw item ids, oldest first, comma-separated.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen/--include-seen", help=_EXCLUDE_SEEN_HELP)] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Add why: the history items behind each item, in words.")] = False,
    diversity: Annotated[float, typer.Option(help=_DIVERSITY_HELP)] = 0.0,
    query: Annotated[str | None, typer.Option(help=_QUERY_HELP)] = None,
    query_weight: Annotated[float, typer.Option(help=_QUERY_WEIGHT_HELP)] = 0.7,
    generator: Annotated[Path | None, typer.Option(help=_GENERATOR_HELP)] = None,
    users: Annotated[
        str | None,
        typer.Option(help="Batch: all (every user the model knows) or a text file of user ids, one per line; with --out."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Batch: the file to write, .parquet or .csv: one row per user and rank (user, rank, item, score)."),
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="Batch: users scored (and written) per chunk.")] = 1024,
    device: Annotated[str, typer.Option(help=_DEVICE_HELP)] = "auto",
) -> None:
    """Top-k recommendations for a known user or a given history; or, with --users and --out, for many users into a file."""
    if users is not None or out is not None:
        _recommend_batch(model, users, out, k, exclude_seen, diversity, query, query_weight, chunk_size, device, user, history, explain)
        return
    if explain:
        _explain(model, user, history, k, exclude_seen, as_json, "occlusion", diversity, query, query_weight, generator)
        return
    with _user_errors():
        rec, hist = _request(model, user, history, k, device)
        recs = rec.recommend(
            history=hist, user=user, k=k, exclude_seen=exclude_seen, query=query, query_weight=query_weight, diversity=diversity
        )
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in recs], indent=2))
        return
    table = Table("rank", "item", "score", "title", title=f"top {k}")
    for r in recs:
        table.add_row(str(r.rank), r.item_id, f"{r.score:.4f}", r.title or "")
    console.print(table)


def _recommend_batch(
    model: Path,
    users: str | None,
    out: Path | None,
    k: int,
    exclude_seen: bool,
    diversity: float,
    query: str | None,
    query_weight: float,
    chunk_size: int,
    device: str,
    user: str | None,
    history: str | None,
    explain: bool,
) -> None:
    """`recommend --users all|FILE --out recs.parquet`: every listed user's top-k, streamed to one file."""
    with _user_errors():
        if users is None or out is None:
            raise ValueError("batch recommendations need both --users all|FILE and --out FILE.parquet|FILE.csv")
        if user is not None or history is not None or explain:
            raise ValueError("--users goes without --user, --history and --explain")
        if k < 1:
            raise ValueError(f"-k must be >= 1, got {k}")
        if chunk_size < 1:
            raise ValueError(f"--chunk-size must be >= 1, got {chunk_size}")
        from llmrec.batch import FORMATS, read_user_ids, write_recommendations
        from llmrec.recommend import Recommender

        if out.suffix not in FORMATS:
            raise ValueError(f"--out {out}: must end in .parquet or .csv")
        rec = Recommender.load(model, device=device)
        ids = list(rec.histories) if users == "all" else read_user_ids(Path(users))
        rows = write_recommendations(
            rec, ids, out, k=k, exclude_seen=exclude_seen, chunk_size=chunk_size, progress=True,
            query=query, query_weight=query_weight, diversity=diversity,
        )
    console.print(f"wrote {rows:,} recommendations for {len(ids):,} users → {out}", markup=False, soft_wrap=True)


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    out: Annotated[Path, typer.Option("--out", help="Serving artifact folder to write (without training state).")],
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also write scorer.onnx (next-item LM), checked against PyTorch's scores.")
    ] = False,
) -> None:
    """A slim copy of a model for serving: no optimizer state, checkpoints or logs; optionally an ONNX scorer."""
    with _user_errors():
        from llmrec.export import export_artifact

        summary = export_artifact(model, out, onnx=onnx)
    check = f"; ONNX scores within {summary['onnx_max_abs_diff']:.1e} of PyTorch's" if "onnx_max_abs_diff" in summary else ""
    console.print(
        f"exported {len(summary['files'])} files, {summary['bytes_after'] / 1e6:.1f} MB "
        f"(from {summary['bytes_before'] / 1e6:.1f} MB){check} → {out}",
        markup=False,
        soft_wrap=True,
    )


@app.command("explain")
def explain_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    user: Annotated[str | None, typer.Option(help="A raw user id known to the model.")] = None,
    history: Annotated[str | None, typer.Option(help="Raw item ids, oldest first, comma-separated.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 5,
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen/--include-seen", help=_EXCLUDE_SEEN_HELP)] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    method: Annotated[str, typer.Option(help="occlusion (exact) | gradient (gradient × input, LM only).")] = "occlusion",
    diversity: Annotated[float, typer.Option(help=_DIVERSITY_HELP)] = 0.0,
    query: Annotated[str | None, typer.Option(help=_QUERY_HELP)] = None,
    query_weight: Annotated[float, typer.Option(help=_QUERY_WEIGHT_HELP)] = 0.7,
    generator: Annotated[Path | None, typer.Option(help=_GENERATOR_HELP)] = None,
) -> None:
    """Recommend, and show which history items drove each recommendation (attribution scores and a reason)."""
    _explain(model, user, history, k, exclude_seen, as_json, method, diversity, query, query_weight, generator)


def _explain(
    model: Path,
    user: str | None,
    history: str | None,
    k: int,
    exclude_seen: bool,
    as_json: bool,
    method: str,
    diversity: float,
    query: str | None,
    query_weight: float,
    generator: Path | None,
) -> None:
    """`explain` and `recommend --explain`: one table row (or JSON object) per item, with its reason."""
    with _user_errors():
        from llmrec.explain.text import load_text_generator

        rec, hist = _request(model, user, history, k)
        explanations = rec.explain(
            history=hist,
            user=user,
            k=k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            method=method,
            generator=load_text_generator(generator),
        )
    if as_json:
        rows = [
            {**e.recommendation.__dict__, "reason": e.text, "contributions": [c.__dict__ for c in e.contributions]}
            for e in explanations
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("rank", "item", "score", "title", "because of (attribution)", "reason", title=f"top {k}, explained")
    for e in explanations:
        r = e.recommendation
        causes = "\n".join(f"{c.title or c.item_id} ({c.weight:+.3f})" for c in e.contributions[:3])
        table.add_row(str(r.rank), r.item_id, f"{r.score:.4f}", r.title or "", causes, e.text)
    console.print(table)


@app.command("tune")
def tune_cmd(
    dataset: Annotated[str, typer.Option(help=_DATASET_HELP)],
    out: Annotated[Path, typer.Option(help="Best config file to write (TOML, for `llmrec train --config`).")],
    trials: Annotated[int, typer.Option(help="Maximum number of trials.")] = 20,
    budget_minutes: Annotated[float, typer.Option(help="Wall-time budget for the whole search.")] = 60.0,
    config: Annotated[Path | None, typer.Option(help="Base config; searched keys override it.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Base overrides, e.g. train.epochs=50.")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
) -> None:
    """Search hyperparameters with Optuna on the validation metric (pruning poor trials), write the best config."""
    with _user_errors():
        from llmrec.config import build
        from llmrec.train import TrainConfig
        from llmrec.tune import tune

        sections = _config_sections(config, set_)
        base_train = build(TrainConfig, sections.get("train", {}), section="train")
        model_params = dict(sections.get("model", {}))
        use_attributes = bool(model_params.pop("use_attributes", True))
        summary = tune(
            _dataset_arg(dataset, out.parent),
            base_model=model_params,
            base_train=base_train,
            n_trials=trials,
            budget_minutes=budget_minutes,
            seed=seed,
            out=out,
            use_attributes=use_attributes,
        )
    console.print(f"best validation value {summary['best_value']:.4f} after {len(summary['trials'])} trials → {out}")


# ---- llmrec serve ---------------------------------------------------------------------------------------------
# With --workers N uvicorn imports the app in each worker process by name, so the settings travel there through
# this environment variable (JSON) and `_serve_app_from_env` builds the app. The API key itself never goes in
# it: only the name of the variable that holds it.
_SERVE_SETTINGS_ENV = "LLMREC_SERVE_SETTINGS"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _serve_api_key(api_key_env: str | None) -> str | None:
    if api_key_env is None:
        return None
    key = os.environ.get(api_key_env, "")
    if not key:
        raise ValueError(f"--api-key-env {api_key_env}: that environment variable is not set or is empty")
    return key


_ANN_HELP = (
    "Top-k through a FAISS index (docs/scaling.md): auto = above --ann-threshold items; off = score every item; "
    "flat (exact) | ivf | hnsw = that index. A saved one in <model>/ann (llmrec build-index) is used when it matches."
)
_ANN_THRESHOLD_HELP = "--ann auto uses an index above this many items."


def _load_recommender(model: Path, ann: str, ann_threshold: int, device: str = "cpu") -> Any:
    """Recommender.load with an ANN mode; a missing faiss is a user error here (it is an optional extra)."""
    from llmrec.recommend import Recommender

    try:
        return Recommender.load(model, ann=ann, ann_threshold=ann_threshold, device=device)
    except ImportError as e:
        raise ValueError(f"--ann {ann}: {e}") from None


def _serve_app_from_env() -> Any:
    """The app of one uvicorn worker process (``--workers`` > 1), from the settings the parent process left."""
    from llmrec.serve import create_app

    settings = json.loads(os.environ[_SERVE_SETTINGS_ENV])
    recommender = _load_recommender(
        Path(settings.pop("model")), settings.pop("ann"), settings.pop("ann_threshold"), settings.pop("device", "cpu")
    )
    return create_app(recommender, api_key=_serve_api_key(settings.pop("api_key_env")), **settings)


@app.command("build-index")
def build_index_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder (a next-item LM); the index goes to <model>/ann.")],
    kind: Annotated[str, typer.Option(help="auto (flat up to 100,000 items, else ivf) | flat | ivf | hnsw.")] = "auto",
    target_recall: Annotated[float, typer.Option(help="Recall@10 against exact search that the search parameter is calibrated to.")] = 0.99,
    threads: Annotated[int, typer.Option(help="FAISS threads for building.")] = 0,
) -> None:
    """Build the approximate-retrieval index of a large catalogue once, so that `serve --ann` loads it at start."""
    with _user_errors():
        if kind not in ("auto", "flat", "ivf", "hnsw"):
            raise ValueError(f"--kind must be auto, flat, ivf or hnsw; got {kind!r}")
        if threads < 0:
            raise ValueError(f"--threads must be >= 0 (0 = all cores), got {threads}")
        from llmrec.atomic import atomic_directory
        from llmrec.recommend import ANN_DIR

        rec = _load_recommender(model, "off", 0)
        import faiss

        if threads:
            faiss.omp_set_num_threads(threads)
        index = rec.use_ann(kind, threshold=0, target_recall=target_recall)
        if index is None:
            raise ValueError(f"{model}: an index needs a next-item LM artifact (item embeddings)")
        with atomic_directory(model / ANN_DIR, marker="index.json") as tmp:
            index.save(tmp)
    info = index.info
    detail = {"ivf": f"nlist {info.nlist}, nprobe {info.nprobe}", "hnsw": f"M {info.hnsw_m}, efSearch {info.ef_search}"}
    recall = f"; recall@{info.calibration_k} {info.calibrated_recall:.3f} on {info.n_calibration_queries} queries" if info.target_recall else ""
    err_console.print(
        f"{info.kind} index of {info.n_items:,} items ({detail.get(info.kind, 'exact')}{recall}) "
        f"in {info.build_seconds:.1f} s -> {model / ANN_DIR}",
        markup=False,
        soft_wrap=True,
    )


@app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on; the default keeps the service on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own copy of the model.")] = 1,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding an API key; /v1 routes then need it as X-API-Key.")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Most requests in one forward pass.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for more requests to join a batch.")] = 2.0,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = 1 << 20,
    graceful_timeout: Annotated[int, typer.Option(help="Seconds in-flight requests get to finish on SIGTERM/Ctrl-C.")] = 30,
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = True,
    ann: Annotated[str, typer.Option(help=_ANN_HELP)] = "auto",
    ann_threshold: Annotated[int, typer.Option(help=_ANN_THRESHOLD_HELP)] = 200_000,
    device: Annotated[str, typer.Option(help=_DEVICE_HELP)] = "auto",
    queries: Annotated[
        bool | None,
        typer.Option(
            "--queries/--no-queries",
            help="Accept natural-language queries; --queries loads the text encoder before /readyz says ready and "
            "needs the text extra. Default: on when the text extra is installed (encoder loaded at start-up only "
            "for a model that reads item text), else off.",
        ),
    ] = None,
) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn): /v1/recommend, /metrics, /docs, a demo page at /."""
    with _user_errors():
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        if not 0 <= port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {port}")
        if ann not in ("auto", "off", "flat", "ivf", "hnsw"):
            raise ValueError(f"--ann must be auto, off, flat, ivf or hnsw; got {ann!r}")
        api_key = _serve_api_key(api_key_env)
        from llmrec.index.text_encoder import default_encoder_available

        if not default_encoder_available():
            if queries:
                raise ValueError("--queries: the text encoder is not installed (pip install 'llmrec[text]'), or use --no-queries")
            if queries is None:
                err_console.print("queries are off: the text encoder is not installed (pip install 'llmrec[text]')", markup=False, soft_wrap=True)
                queries = False
        import uvicorn

        from llmrec.serve import create_app

        recommender = _load_recommender(model, ann, ann_threshold, device)  # a bad folder fails here, before any port is bound
        if recommender.ann is not None:
            err_console.print(f"retrieval through {recommender.ann!r}", markup=False, soft_wrap=True)
        target: Any
        if workers == 1:
            target = create_app(
                recommender,
                api_key=api_key,
                max_batch=max_batch,
                max_wait_ms=max_wait_ms,
                max_body_bytes=max_body_bytes,
                queries=queries,
            )
        else:
            del recommender  # each worker loads its own
            settings = {"model": str(model.resolve()), "api_key_env": api_key_env, "max_batch": max_batch, "queries": queries}
            os.environ[_SERVE_SETTINGS_ENV] = json.dumps(
                {**settings, "max_wait_ms": max_wait_ms, "max_body_bytes": max_body_bytes, "ann": ann, "ann_threshold": ann_threshold, "device": device}
            )
            target = "llmrec.cli:_serve_app_from_env"
    if host not in _LOOPBACK and api_key is None:
        err_console.print(f"warning: listening on {host} without an API key (see --api-key-env)", markup=False)
    err_console.print(f"serving {model} at http://{host}:{port}/ (demo page; API under /v1, docs at /docs)", markup=False, soft_wrap=True)
    uvicorn.run(
        target,
        host=host,
        port=port,
        workers=workers,
        factory=workers > 1,
        timeout_graceful_shutdown=graceful_timeout,
        access_log=access_log,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
