"""``llmrec data ...``: prepare a dataset (`llmrec.data.auto.prepare_folder`), show its statistics, list the
registry. Each command parses its options, makes one library call and prints."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from llmrec.cli.common import console, fmt_int, fmt_num, say, stages, use_data_threads, user_errors, warnings_as_lines
from llmrec.errors import ChecksumError, DatasetNotFoundError

if TYPE_CHECKING:
    from llmrec.data import PrepareConfig

__all__ = ["data_app"]

data_app = typer.Typer(help="Prepare datasets and inspect prepared ones.", no_args_is_help=True, rich_markup_mode=None)


CUTOFF_HELP = "a number in the events' time unit, or ISO-8601 like 2024-03-01 or 2024-03-01T09:30:00Z"


def _cutoff(value: str | None, option: str) -> float | None:
    """A cutoff as the events' times are read: a number as it is, ISO-8601 text as Unix seconds (UTC when no offset)."""
    if value is None:
        return None
    from datetime import UTC, datetime

    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option}: {value!r} is neither a number nor an ISO-8601 time (e.g. 2024-03-01T09:30:00Z)") from None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def _prepare_config(
    *,
    user_core: int | None,
    item_core: int | None,
    k_core: int | None,
    no_dedupe: bool,
    keep_events: str | None,
    min_value: float | None,
    split: str,
    valid_cutoff: str | None,
    test_cutoff: str | None,
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
        "valid_cutoff": _cutoff(valid_cutoff, "--valid-cutoff"),
        "test_cutoff": _cutoff(test_cutoff, "--test-cutoff"),
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
    valid_cutoff: Annotated[str | None, typer.Option(help=f"temporal: validation starts at this time ({CUTOFF_HELP}).")] = None,
    test_cutoff: Annotated[str | None, typer.Option(help=f"temporal: test starts at this time ({CUTOFF_HELP}).")] = None,
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
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for reading and preparing (Polars); 0 = all cores.")] = 0,
) -> None:
    """Read a dataset (by name, or your own files), filter, split, and save it as a prepared dataset."""
    with user_errors(), warnings_as_lines():
        use_data_threads(threads)
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
        from llmrec.data.auto import prepare_folder
        from llmrec.outputs import claim_folder

        inputs = {"--events": events, "--items": items, "--path": path}
        with claim_folder(out, "dataset", inputs=inputs) as target, stages("reading ...") as stage:
            done = prepare_folder(
                target,
                config,
                dataset=dataset,
                path=path,
                events=events,
                fmt=fmt,
                items=items,
                columns=columns,
                item_columns=item_columns,
                name=name,
                domain=domain,
                streaming=streaming,
                progress=stage,  # a spinner with the stage and the time taken, on a terminal
            )
    stats = done.stats
    say(
        f"prepared {fmt_int(stats['users'])} users, {fmt_int(stats['items'])} items, "
        f"{fmt_int(stats['interactions'])} interactions (split {config.split}, {done.engine}) → {done.out}"
    )


def _stats_tables(stats: dict[str, Any]) -> list[Table]:
    overview = Table("", "", title="dataset", show_header=False)
    overview.add_row("users", fmt_int(stats["users"]))
    overview.add_row("items", fmt_int(stats["items"]))
    overview.add_row("interactions", fmt_int(stats["interactions"]))
    overview.add_row("density", f"{stats['density']:.4%}")

    quantiles = Table("", "sequence length", "item popularity", title="distributions")
    seq, pop = stats["sequence_length"], stats["item_popularity"]
    for q in ("min", "p25", "p50", "p75", "p90", "p99", "max", "mean"):
        quantiles.add_row(q, fmt_num(seq[q]) if q in seq else "-", fmt_num(pop[q]) if q in pop else "-")

    split = Table("", "", title="split", show_header=False)
    split.add_row("train events", fmt_int(stats["train_events"]))
    split.add_row("valid examples", fmt_int(stats["valid_examples"]))
    split.add_row("test examples", fmt_int(stats["test_examples"]))
    split.add_row("cold items (held out by the split)", fmt_int(stats["cold_items"]))
    if "untrained_items" in stats:  # what `llmrec map-cold-items` maps (after a refit: those not in train + valid)
        split.add_row("items in no training event", fmt_int(stats["untrained_items"]))
    for role, n in stats["roles"].items():
        split.add_row(f"users: {role}", fmt_int(n))
    catalogue = Table("", "items", "share", title="catalogue and time")
    n = max(1, stats["catalogue"]["items"])
    for field in ("title", "text", "categories"):
        has = stats["catalogue"][field]
        catalogue.add_row(f"with {field}", fmt_int(has), f"{has / n:.1%}")
    catalogue.add_row("first event", _when(stats["time_range"]["min"]), "")
    catalogue.add_row("last event", _when(stats["time_range"]["max"]), "")
    return [overview, quantiles, split, catalogue]


def _iso(t: int | None) -> str | None:
    """An event time as ISO-8601 UTC (``1997-09-20T03:05:10Z``) when it reads as Unix seconds or milliseconds of
    1990-2100 (times given as ISO-8601 or datetimes are stored as Unix seconds); None for other numbers."""
    if t is None:
        return None
    from datetime import UTC, datetime

    for scale, unit in ((1, "s"), (1000, "ms")):
        if 631_152_000 * scale <= t < 4_102_444_800 * scale:
            when = datetime.fromtimestamp(t / scale, UTC)
            return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t % 1000:03d}" if unit == "ms" else "") + "Z"
    return None


def _when(t: int | None) -> str:
    """An event time for the table: ISO-8601 UTC with the stored number beside it, or the number alone."""
    if t is None:
        return "-"
    iso = _iso(t)
    return f"{iso} ({t})" if iso is not None else f"{t} (not a date: the events' own time unit)"


@data_app.command("stats")
def data_stats(
    directory: Annotated[Path, typer.Argument(help="A prepared dataset folder.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Statistics of a prepared dataset: sizes, density, length and popularity quantiles, split counts."""
    with user_errors():
        from llmrec.data import PreparedDataset

        prepared = PreparedDataset.load(directory)
        stats = {**prepared.stats(), **prepared.coverage()}
        import numpy as np

        trained = np.zeros(prepared.n_items + 1, dtype=bool)
        for seq in prepared.train_sequences():
            trained[seq] = True
        stats["untrained_items"] = int((~trained[1:]).sum())  # the cold items of `llmrec map-cold-items`
        span = stats["time_range"]
        span.update(first_utc=_iso(span["min"]), last_utc=_iso(span["max"]))
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
    with user_errors():
        from llmrec.data import DATASETS
        from llmrec.data.registry import cache_dir, mirror_dir

        table = Table("name", "domain", "local", "description", title="datasets")
        for name, spec in DATASETS.items():
            table.add_row(name, spec.domain, _local_status(name), spec.description)
        mirror = mirror_dir()
        places = f"cache: {cache_dir()}; mirror: {mirror or '(none: set LLMREC_DATA_MIRROR or add shared/datasets)'}"
    console.print(table)
    console.print(places, markup=False, soft_wrap=True)
