"""The ``llmrec`` command line (entry point ``main``).

Layout: ``app`` is the root Typer app; each group of commands is a sub-app (``data_app`` today; ``train``,
``evaluate``, ``recommend``, ``tune`` and ``serve`` join it later). The helpers every command shares sit at the
top: the two consoles and ``_user_errors``, the one place that turns bad user input into ``error: ...`` on
stderr and exit code 2, without a traceback.

Imports of torch, polars and ``llmrec.data`` happen inside the command functions, so ``llmrec --help`` stays
fast and imports neither (``tests/test_cli_data.py`` checks this). This module is also the only place that
reads the environment on the user's behalf (STYLE.md section 5): the library receives explicit arguments.
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
_USER_ERRORS: tuple[type[Exception], ...] = (DataError, ChecksumError, DatasetNotFoundError, ValueError, FileNotFoundError)


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


def _int(n: float) -> str:
    return f"{int(n):,}"


def _num(x: float) -> str:
    """A statistic for a table: integers with thousands separators, other values with 2 decimals."""
    return _int(x) if float(x).is_integer() else f"{x:,.2f}"


app = typer.Typer(
    name="llmrec",
    help="LLM-style generative recommendation: prepare data, train, evaluate, recommend, serve.",
    no_args_is_help=True,
    add_completion=False,
)

# ---- llmrec data ... ------------------------------------------------------------------------------------------
data_app = typer.Typer(help="Prepare datasets and inspect prepared ones.", no_args_is_help=True)
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
    out: Annotated[Path, typer.Option("--out", help="Folder to write the prepared dataset to (written atomically).")],
    dataset: Annotated[str | None, typer.Option(help="A registry dataset by name (see `llmrec data list`).")] = None,
    path: Annotated[Path | None, typer.Option(help="With --dataset: a folder holding its files.")] = None,
    events: Annotated[Path | None, typer.Option(help="Your own events file (instead of --dataset).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Format of --events: s3rec|movielens|mind|csv|tsv|parquet|jsonl.")
    ] = None,
    items: Annotated[Path | None, typer.Option(help="With --events: an item catalogue file.")] = None,
    columns: Annotated[
        str | None, typer.Option(help="With a table format: column names, e.g. user=uid,item=sku,time=ts.")
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
) -> None:
    """Read a dataset (by name, or your own files), filter, split, and save it as a prepared dataset."""
    with _user_errors():
        if (dataset is None) == (events is None):
            raise ValueError("give exactly one of --dataset NAME or --events FILE")
        if dataset is not None and (fmt or items or columns):
            raise ValueError("--format, --items and --columns go with --events, not with --dataset")
        if events is not None and path is not None:
            raise ValueError("--path goes with --dataset; give your own file with --events")
        if events is not None and fmt is None:
            raise ValueError("--events needs --format (s3rec|movielens|mind|csv|tsv|parquet|jsonl)")
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
        from llmrec.data import DATASETS, ColumnMap, prepare, read_dataset, read_files
        from llmrec.data.readers import DOMAINS

        if domain is not None and domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
        with err_console.status("reading ...") as status:
            if dataset is not None:
                if dataset not in DATASETS:
                    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
                raw, source = read_dataset(dataset, path)
                raw.domain = domain or raw.domain
            else:
                assert events is not None and fmt is not None  # checked above
                column_map = ColumnMap.parse(columns) if columns else None
                raw, source = read_files(events, fmt, items=items, columns=column_map, domain=domain)
            status.update(f"preparing {raw.events.height:,} events ...")
            prepared = prepare(raw, config, source=source)
            status.update(f"writing {out} ...")
            prepared.save(out)
    stats = prepared.manifest["stats"]
    console.print(
        f"prepared {_int(stats['users'])} users, {_int(stats['items'])} items, "
        f"{_int(stats['interactions'])} interactions (split {config.split}) → {out}",
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
