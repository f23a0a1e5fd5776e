"""Streaming preparation of event logs larger than memory: Parquet (one file, a directory, a glob) or CSV/TSV.

`prepare_streaming` writes the same prepared dataset as `prepare` + `PreparedDataset.save` (the same ids,
sequences, split and statistics; `tests/data/test_streaming.py` checks this), but the event table is never held
in memory. Polars LazyFrames run on the streaming engine, and the work is cut so that memory follows the number
of users and items (id maps, counts) plus one bucket of events, not the number of events:

1. validate   one streaming pass: the first bad cell of each check (empty id, bad time, bad value) and the
              event counts after each filter; only on failure is the file and row looked up.
2. id maps    unique users and items after the filters, in the canonical order of `prepare` (numeric when all
              ids are integers, else lexicographic): small tables, raw id -> dense code.
3. bucket     one streaming pass: filter, replace raw ids by codes, and write the events partitioned into
              buckets of consecutive user codes (about `bucket_events` events each) as temporary Parquet.
4. dedupe     bucket by bucket (a user's events are all in one bucket): keep the first of repeated
              (user, item, time) events in file order.
5. k-core     to a fixed point: each round counts events per user and per item with streaming group-bys and
              rewrites each bucket without the users and items below the bound (an anti-join). Removing
              everything that violates a bound at once converges to the same maximal k-core as `k_core`.
6. write      surviving ids get their final dense indices (items 1..n, 0 = padding); each bucket is sorted
              stably by (user, time, file order), grouped into per-user lists and appended to
              sequences.parquet. Because buckets hold consecutive users, the file is ordered by user_idx.

The split needs only per-user numbers (lengths, and for `temporal` the events before each cut-off), so every
protocol of `prepare` is supported. Temporary files live inside the output's temporary directory, so a failure
leaves neither a half-written dataset nor temporary data behind.
"""

from __future__ import annotations

import glob as globlib
import itertools
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import polars as pl

from llmrec.atomic import atomic_directory
from llmrec.data.dataset import sequence_stats
from llmrec.data.prepare import (
    _SPLIT_DESCRIPTIONS,
    PrepareConfig,
    _id_order,
    _split_positions,
    dataset_name,
    temporal_cutoffs,
)
from llmrec.data.readers import (
    ColumnMap,
    ItemColumnMap,
    _find_bad_line,
    _raise_at,
    _time_checks,
    _time_exprs,
    read_catalogue,
)
from llmrec.data.registry import sha256_file
from llmrec.errors import DataError

__all__ = ["STREAMING_FORMATS", "prepare_streaming", "source_files"]

STREAMING_FORMATS = ("parquet", "csv", "tsv")
_SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv",), "tsv": (".tsv", ".tab")}
_ENGINE = "streaming"


def source_files(source: str | Path, fmt: str) -> list[Path]:
    """The files of `source`, in the order that defines file order: a file, a directory (searched recursively
    for files with the format's suffix, hidden and ``_``-prefixed names skipped), or a glob pattern; sorted."""
    if fmt not in STREAMING_FORMATS:
        raise ValueError(f"streaming preparation reads {', '.join(STREAMING_FORMATS)}, not {fmt!r}")
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in _SUFFIXES[fmt]
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        ]
        if not files:
            raise DataError(f"no {fmt} files ({', '.join(_SUFFIXES[fmt])}) in this directory", path=path)
        return sorted(files)
    if globlib.has_magic(str(source)):
        files = [Path(p) for p in globlib.glob(str(source), recursive=True) if Path(p).is_file()]
        if not files:
            raise DataError("no files match this pattern", path=source)
        return sorted(files)
    raise DataError("file not found", path=path)


# ---- reading ----------------------------------------------------------------------------------------------------


def _schema(path: Path, fmt: str) -> dict[str, pl.DataType]:
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=path)
    try:
        if fmt == "parquet":
            return dict(pl.read_parquet_schema(path))
        return dict(_scan_text(path, fmt).drop("_row").collect_schema())
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read {fmt}: {e}", path=path) from None


def _scan_text(files: Path | list[Path], fmt: str) -> pl.LazyFrame:
    # Every cell a string, as `read_table` reads text; TSV has no quoting.
    sep, quote = ("\t", None) if fmt == "tsv" else (",", '"')
    return pl.scan_csv(files, separator=sep, quote_char=quote, infer_schema=False, row_index_name="_row")


def _scan(files: list[Path], fmt: str, wanted: list[str]) -> pl.LazyFrame:
    """All files as one LazyFrame of the wanted columns plus `_row`, the 0-based row across the files in order."""
    if fmt == "parquet":
        lf = pl.scan_parquet(files, row_index_name="_row", hive_partitioning=False)
    else:
        lf = _scan_text(files, fmt)
    return lf.select("_row", *wanted)


def _check_columns(files: list[Path], fmt: str, wanted: list[str]) -> dict[str, pl.DataType]:
    """Every file has every wanted column, with one type across files; returns the first file's types."""
    first: dict[str, pl.DataType] | None = None
    for path in files:
        schema = _schema(path, fmt)
        if missing := [c for c in wanted if c not in schema]:
            found = ", ".join(schema) or "none"
            raise DataError(f"missing column {', '.join(map(repr, missing))}; found columns: {found}", path=path)
        if first is None:
            first = {c: schema[c] for c in wanted}
        for c in wanted:
            if schema[c] != first[c]:
                reason = f"column type {schema[c]} differs from {first[c]} in {files[0]}"
                raise DataError(reason, path=path, field=c)
    assert first is not None  # source_files never returns an empty list
    return first


def _collect(lf: pl.LazyFrame, source: str | Path) -> pl.DataFrame:
    try:
        return lf.collect(engine=_ENGINE)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read: {e}", path=source) from None


def _empty(column: str, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(column)
    return c.is_null() | (c == "") if dtype == pl.String else c.is_null()


def _id_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    """Integer ids stay integers (their canonical order is numeric, and hashing them is cheap); others become text."""
    return pl.col(column).cast(pl.Int64) if dtype.is_integer() else pl.col(column).cast(pl.String)


class _Source:
    """The source files as LazyFrames: `raw` (the mapped columns as stored, plus `_row`) and `events`
    (filtered, cleaned: user, item, time: Int64, _row), with `read_table`'s checks and `prepare`'s filters."""

    def __init__(self, source: str | Path, fmt: str, columns: ColumnMap, config: PrepareConfig) -> None:
        self.source, self.fmt = source, fmt
        self.files = source_files(source, fmt)
        named = [columns.user, columns.item, columns.time, columns.event, columns.value]
        self.wanted = wanted = list(dict.fromkeys(c for c in named if c is not None))
        types = _check_columns(self.files, fmt, wanted)
        if config.keep_events and columns.event is None:
            raise ValueError("keep_events needs an event column (map it with --columns event=...)")
        if config.min_value is not None and columns.value is None:
            raise ValueError("min_value needs a value column (map it with --columns value=...)")
        self.user_type, self.item_type = types[columns.user], types[columns.item]
        # (mask, reason, column), in `read_table`'s order; "{}" in a reason becomes the cell.
        self.checks = [(_empty(columns.user, self.user_type), "empty user id", columns.user)]
        self.checks.append((_empty(columns.item, self.item_type), "empty item id", columns.item))
        time = pl.col("_row").cast(pl.Int64)  # no time column: time is the row order
        if columns.time is not None:
            time, as_float = _time_exprs(columns.time, types[columns.time], self.files[0])
            self.checks.extend(_time_checks(columns.time, time, as_float))
        self.filters: list[tuple[str, pl.Expr]] = []  # (step name in the manifest, keep mask)
        if columns.event is not None and config.keep_events:
            event = pl.col(columns.event).cast(pl.String)
            self.filters.append((f"keep events {list(config.keep_events)}", event.is_in(list(config.keep_events))))
        if columns.value is not None:
            value = pl.col(columns.value)
            if types[columns.value] == pl.String:
                value = value.str.strip_chars()
            value = value.cast(pl.Float64, strict=False)
            bad = value.is_null() & ~_empty(columns.value, types[columns.value])
            self.checks.append((bad, "value {} is not a number", columns.value))
            if config.min_value is not None:
                self.filters.append((f"value >= {config.min_value}", value >= config.min_value))
        self.raw = _scan(self.files, fmt, wanted)
        events = self.raw
        for _, keep in self.filters:
            events = events.filter(keep)
        user, item = _id_expr(columns.user, self.user_type), _id_expr(columns.item, self.item_type)
        self.events = events.select(user.alias("user"), item.alias("item"), time.alias("time"), "_row")

    def validate(self) -> list[int]:
        """Raise at the first bad cell; else the event count before and after each filter (one streaming pass)."""
        aggs = [pl.len().alias("n")]
        for i, (mask, _, _) in enumerate(self.checks):
            aggs.append(pl.col("_row").filter(mask.fill_null(False)).min().alias(f"bad{i}"))
        keep = pl.lit(True)
        for i, (_, mask) in enumerate(self.filters):
            keep = keep & mask.fill_null(False)
            aggs.append(keep.sum().alias(f"kept{i}"))
        try:
            row = self.raw.select(aggs).collect(engine=_ENGINE).row(0, named=True)
        except pl.exceptions.PolarsError as e:
            self._raise_read_error(e)
        failed = [(row[f"bad{i}"], i) for i in range(len(self.checks)) if row[f"bad{i}"] is not None]
        if failed:
            bad_row, i = min(failed)
            _, reason, column = self.checks[i]
            cell = _collect(self.raw.filter(pl.col("_row") == bad_row).select(column), self.source).item()
            _raise_at_row(self.files, self.fmt, bad_row, reason.format(repr(cell)), column)
        if row["n"] == 0:
            raise DataError("no rows", path=self.source)
        return [row["n"], *(row[f"kept{i}"] for i in range(len(self.filters)))]

    def _raise_read_error(self, error: Exception) -> NoReturn:
        """A file that Polars cannot read: find it, and for text the first malformed line, as `read_table` does."""
        for path in self.files:
            try:
                _scan([path], self.fmt, self.wanted).select(pl.all().null_count()).collect(engine=_ENGINE)
            except pl.exceptions.PolarsError as e:
                if self.fmt == "parquet":
                    raise DataError(f"cannot read parquet: {e}", path=path) from None
                _find_bad_line(path, self.fmt, f"cannot read {self.fmt}: {e}")
        raise DataError(f"cannot read: {error}", path=self.source) from None


def _raise_at_row(files: list[Path], fmt: str, row: int, reason: str, column: str) -> NoReturn:
    """Turn a row across all files into (file, row in that file) and raise there, as `read_table` does."""
    for path in files:
        n = int(_collect(_scan([path], fmt, []).select(pl.len()), path).item())
        if row < n:
            _raise_at(path, fmt, row, reason, column)
        row -= n
    raise AssertionError("row beyond the end of the files")  # pragma: no cover


def _id_maps(src: _Source) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(users, items): the unique ids after filtering as `key` (Int64 or String) with `code`, their 0-based rank
    in `prepare`'s canonical order (numeric when every id is an integer, else lexicographic)."""
    maps = []
    for column in ("user", "item"):  # one after the other: collect_all would hold both hash sets at once
        ids = _collect(src.events.select(pl.col(column).unique()), src.source).to_series()
        ordered = ids.sort() if ids.dtype == pl.Int64 else _id_order(ids)[0]
        maps.append(pl.DataFrame({"key": ordered, "code": np.arange(len(ordered), dtype=np.int32)}))
    return maps[0], maps[1]


# ---- buckets of events, spilled to temporary Parquet ------------------------------------------------------------
Buckets = list[list[Path]]  # per bucket, its Parquet files; bucket b holds every event of its users


def _scan_buckets(buckets: Buckets) -> pl.LazyFrame:
    return pl.scan_parquet([f for files in buckets for f in files], hive_partitioning=False)


def _bucket(
    src: _Source, users: pl.DataFrame, items: pl.DataFrame, n_events: int, bucket_events: int, work: Path
) -> Buckets:
    """Encode ids as codes and write the events into buckets of consecutive user codes (one streaming pass)."""
    n_buckets = max(1, min(users.height, math.ceil(n_events / bucket_events)))
    encoded = (
        src.events.join(users.lazy(), left_on="user", right_on="key")
        .join(items.lazy(), left_on="item", right_on="key", suffix="_item")
        .select(
            "_row",
            pl.col("code").alias("user"),
            pl.col("code_item").alias("item"),
            "time",
            (pl.col("code").cast(pl.Int64) * n_buckets // users.height).alias("bucket"),
        )
    )
    try:
        encoded.sink_parquet(pl.PartitionBy(work, key="bucket", include_key=False), mkdir=True, engine=_ENGINE)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read: {e}", path=src.source) from None
    return [sorted((work / f"bucket={b}").glob("*.parquet")) for b in range(n_buckets)]


def _rewrite(buckets: Buckets, query: Callable[[pl.LazyFrame], pl.LazyFrame], work: Path) -> Buckets:
    """Apply `query` (LazyFrame -> LazyFrame) to each bucket, one bucket in memory at a time; old files go."""
    work.mkdir(parents=True)
    out = []
    for b, files in enumerate(buckets):
        path = work / f"{b:05d}.parquet"
        query(pl.scan_parquet(files, hive_partitioning=False)).sink_parquet(path, engine=_ENGINE)
        out.append([path])
        for f in files:
            f.unlink()
    return out


def _keep_first(events: pl.LazyFrame) -> pl.LazyFrame:
    """Repeated (user, item, time) events once: the first in file order (as `prepare`'s sort-based dedupe)."""
    return events.group_by("user", "item", "time").agg(pl.col("_row").min())


def _counts(buckets: Buckets) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events per user code and per item code (columns user|item, len), sorted by code."""
    events = _scan_buckets(buckets)
    users, items = pl.collect_all([events.group_by(c).len() for c in ("user", "item")], engine=_ENGINE)
    return users.sort("user"), items.sort("item")


def _k_core(buckets: Buckets, user_core: int, item_core: int, work: Path) -> tuple[Buckets, pl.DataFrame, pl.DataFrame]:
    """Drop users with < user_core and items with < item_core events, round after round, until both hold."""
    for round_ in itertools.count(1):
        users, items = _counts(buckets)
        bad_users = users.filter(pl.col("len") < user_core).select("user") if user_core > 1 else users.clear()
        bad_items = items.filter(pl.col("len") < item_core).select("item") if item_core > 1 else items.clear()
        if bad_users.height == 0 and bad_items.height == 0:
            return buckets, users, items

        def drop(lf: pl.LazyFrame, bu: pl.DataFrame = bad_users, bi: pl.DataFrame = bad_items) -> pl.LazyFrame:
            return lf.join(bu.lazy(), on="user", how="anti").join(bi.lazy(), on="item", how="anti")

        buckets = _rewrite(buckets, drop, work / f"core-{round_}")
    raise AssertionError("unreachable")  # pragma: no cover: every round removes events, so the loop ends


# ---- the prepared dataset ---------------------------------------------------------------------------------------


def prepare_streaming(
    source: str | Path,
    fmt: str,
    out: str | Path,
    *,
    columns: ColumnMap | None = None,
    config: PrepareConfig | None = None,
    items: str | Path | None = None,
    item_columns: ItemColumnMap | None = None,
    domain: str | None = None,
    name: str | None = None,
    bucket_events: int = 2_000_000,
    progress: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Prepare an event log too large for memory and write it to `out` (atomically); returns the manifest.

    source: a Parquet/CSV/TSV file, a directory of them (e.g. a partitioned Parquet data set) or a glob; the
    files are read in sorted path order, which is the file order that breaks ties in time and picks which of
    repeated events is kept. columns: as for `read_table`. items: an optional catalogue file (read in memory),
    mapped by item_columns. name: for the manifest (default: the stem of `source`).
    bucket_events: events per bucket, the unit held in memory. progress: called with a short message per step.
    The result equals `prepare(read_table(...), config).save(out)` on the same events.
    """
    config = config or PrepareConfig()
    columns = columns or ColumnMap()
    say = progress or (lambda _msg: None)
    if bucket_events < 1:
        raise ValueError(f"bucket_events must be >= 1, got {bucket_events}")

    say("checking the input ...")
    src = _Source(source, fmt, columns, config)
    counts = src.validate()
    steps: list[dict[str, Any]] = [{"step": "read", "events": counts[0]}]
    steps += [{"step": name, "events": n} for (name, _), n in zip(src.filters, counts[1:], strict=True)]
    if counts[-1] == 0:
        raise ValueError("no events left after filtering")
    catalogue = read_catalogue(Path(items), None, item_columns, default_item=columns.item) if items is not None else None
    say("mapping ids ...")
    user_map, item_map = _id_maps(src)

    with atomic_directory(out, marker="manifest.json") as tmp:
        work = tmp / "_work"
        say(f"bucketing {counts[-1]:,} events ...")
        buckets = _bucket(src, user_map, item_map, counts[-1], bucket_events, work / "encoded")
        if config.dedupe:
            say("removing repeated events ...")
            buckets = _rewrite(buckets, _keep_first, work / "dedupe")
            n = int(_collect(_scan_buckets(buckets).select(pl.len()), source).item())
            steps.append({"step": "dedupe (user, item, time)", "events": n})
        if config.user_core > 1 or config.item_core > 1:
            say("k-core ...")
            buckets, user_counts, item_counts = _k_core(buckets, config.user_core, config.item_core, work)
            n = int(user_counts["len"].sum())
            steps.append({"step": f"k-core users>={config.user_core} items>={config.item_core}", "events": n})
        else:
            user_counts, item_counts = _counts(buckets)
        if user_counts.height == 0:
            raise ValueError("no events left after filtering")

        say("writing sequences ...")
        stats = _write(tmp, buckets, user_counts, item_counts, user_map, item_map, catalogue, config)
        shutil.rmtree(work)
        cfg = asdict(config)
        cfg["keep_events"] = list(config.keep_events)
        files = {str(p): sha256_file(p) for p in src.files}
        if items is not None:
            files[str(items)] = sha256_file(Path(items))
        manifest = {
            "format": "llmrec.prepared/1",
            "name": dataset_name(name, None, source),
            "domain": domain or "generic",
            "source": {"files": files, "format": fmt},
            "prepare": cfg,
            "engine": "streaming",
            "steps": steps,
            "split": {"protocol": config.split, "description": _SPLIT_DESCRIPTIONS[config.split]},
            "stats": stats,
        }
        manifest["files"] = {f: sha256_file(tmp / f) for f in ("sequences.parquet", "users.parquet", "items.parquet")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def _write(
    tmp: Path,
    buckets: Buckets,
    user_counts: pl.DataFrame,
    item_counts: pl.DataFrame,
    user_map: pl.DataFrame,
    item_map: pl.DataFrame,
    catalogue: pl.DataFrame | None,
    config: PrepareConfig,
) -> dict[str, Any]:
    """Give the surviving codes their final indices, split, write sequences/users/items.parquet; returns the stats."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    # Surviving ids keep their canonical order: users 0..n-1, items 1..n (0 is padding).
    user_index = user_counts.select("user", pl.int_range(pl.len(), dtype=pl.Int32).alias("user_idx"))
    item_index = item_counts.select("item", (pl.int_range(pl.len(), dtype=pl.Int32) + 1).alias("item_idx"))
    lengths = user_counts["len"].to_numpy().astype(np.int64)
    events = _scan_buckets(buckets)

    rng = np.random.default_rng(config.seed)
    before_cutoffs = None
    if config.split == "temporal":

        def quantile(q: float) -> float:
            return float(events.select(pl.col("time").quantile(q, "linear")).collect(engine=_ENGINE).item())

        t1, t2 = temporal_cutoffs(config, quantile)
        before = (
            events.group_by("user")
            .agg((pl.col("time") < t1).sum().alias("v"), (pl.col("time") < t2).sum().alias("t"))
            .collect(engine=_ENGINE)
            .sort("user")
        )
        before_cutoffs = (before["v"].to_numpy(), before["t"].to_numpy())
    split = _split_positions(lengths, config, rng, before_cutoffs)
    is_cold = np.zeros(item_index.height, dtype=bool)
    if config.split == "cold-item":
        n_cold = int(round(config.cold_item_fraction * item_index.height))
        is_cold[rng.permutation(item_index.height)[:n_cold]] = True
    is_cold_idx = np.concatenate([[False], is_cold])  # [n_items + 1]

    train_events = 0
    writer = None
    try:
        for files in buckets:
            frame = (
                pl.scan_parquet(files, hive_partitioning=False)
                .join(user_index.lazy(), on="user")
                .join(item_index.lazy(), on="item")
                .sort("user_idx", "time", "_row")  # stable chronological order: ties keep file order
                .select("user_idx", "item_idx", "time", pl.int_range(pl.len()).over("user_idx").alias("pos"))
                .collect(engine=_ENGINE)
            )
            u, i, pos = (frame[c].to_numpy() for c in ("user_idx", "item_idx", "pos"))
            train_events += int(((pos < split["n_train"][u]) & ~is_cold_idx[i]).sum())
            seqs = frame.group_by("user_idx", maintain_order=True).agg(
                pl.col("item_idx").alias("items"), pl.col("time").alias("times")
            )
            table = seqs.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp / "sequences.parquet", table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()

    users = pl.DataFrame(
        {
            "user": user_map["key"].gather(user_counts["user"]).cast(pl.String),
            "user_idx": user_index["user_idx"],
            "role": pl.Series(split["role"].tolist(), dtype=pl.String),
            "n_train": pl.Series(split["n_train"], dtype=pl.Int64),
            "valid_pos": pl.Series(split["valid_pos"], dtype=pl.Int64),
            "test_pos": pl.Series(split["test_pos"], dtype=pl.Int64),
        }
    )
    items = pl.DataFrame(
        {
            "item_idx": item_index["item_idx"],
            "item": item_map["key"].gather(item_counts["item"]).cast(pl.String),
            "is_cold": is_cold,
        }
    )
    if catalogue is not None:
        items = items.join(catalogue.unique(subset=["item"], keep="first"), on="item", how="left")
    for col, dtype in (("title", pl.String), ("text", pl.String), ("categories", pl.List(pl.String))):
        if col not in items.columns:
            items = items.with_columns(pl.lit(None, dtype=dtype).alias(col))
    items = items.select("item_idx", "item", "title", "text", "categories", "is_cold").sort("item_idx")
    users.write_parquet(tmp / "users.parquet")
    items.write_parquet(tmp / "items.parquet")
    return sequence_stats(
        lengths=lengths,
        item_counts=item_counts["len"].to_numpy(),
        train_events=train_events,
        users=users,
        n_cold_items=int(is_cold.sum()),
    )
