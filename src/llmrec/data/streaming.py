"""Streaming preparation of event logs larger than memory: Parquet (one file, a directory, a glob) or CSV/TSV.

`prepare_streaming` writes the same prepared dataset as `prepare` + `PreparedDataset.save`, byte for byte (the
same ids, sequences, split and statistics; `tests/data/test_streaming.py` checks this), but the event table is
never held in memory. Reading and validation are this module's; every later step is `llmrec.data.core`'s,
shared with `prepare`, run on a store of buckets (temporary Parquet files of consecutive users) with Polars'
streaming engine, so that memory follows the number of users and items (id maps, counts) plus one bucket of
events, not the number of events:

1. validate   one streaming pass: the first bad cell of each check (empty id, bad time, bad value) and the
              event counts after each filter; only on failure is the file and row looked up.
2. id maps    unique users and items after the filters (`core.id_map`): small tables, raw id -> dense code.
3. bucket     one streaming pass: filter, replace raw ids by codes, and write the events partitioned into
              buckets of consecutive user codes (about `bucket_events` events each) as temporary Parquet.
4. dedupe     bucket by bucket (a user's events are all in one bucket).
5. k-core     to a fixed point: each round counts events per user and per item with streaming group-bys and
              rewrites each bucket without the users and items below the bound (an anti-join).
6. write      each bucket is sorted stably by (user, time, file order), grouped into per-user lists and
              appended to sequences.parquet. Because buckets hold consecutive users, the file is ordered by user_idx.

The split needs only per-user numbers (lengths, and for `temporal` the events before each cut-off), so every
protocol of `prepare` is supported. Temporary files live inside the output's temporary directory, so a failure
leaves neither a half-written dataset nor temporary data behind.
"""

from __future__ import annotations

import glob as globlib
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import polars as pl

from llmrec.atomic import atomic_directory
from llmrec.data.core import (
    STREAMING,
    Engine,
    PrepareConfig,
    encode_ids,
    filter_steps,
    id_map,
    prepare_events,
    prepared_manifest,
    sequence_frames,
    train_event_count,
)
from llmrec.data.dataset import write_prepared, write_sequences
from llmrec.data.prepare import dataset_name
from llmrec.data.registry import sha256_file
from llmrec.data.tables import (
    ColumnMap,
    ItemColumnMap,
    check_header,
    csv_reader,
    find_bad_line,
    id_column,
    raise_at,
    read_catalogue,
    time_checks,
    time_exprs,
)
from llmrec.data.times import UNIT_MIX, time_unit_band
from llmrec.errors import DataError

__all__ = ["STREAMING_FORMATS", "prepare_streaming", "source_files"]

STREAMING_FORMATS = ("parquet", "csv", "tsv")
_SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv",), "tsv": (".tsv", ".tab")}


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
        check_header(path, next(csv_reader(path, fmt), []))
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
        return lf.collect(engine=STREAMING)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read: {e}", path=source) from None


def _empty(column: str, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(column)
    return c.is_null() | (c.str.strip_chars() == "") if dtype == pl.String else c.is_null()


def _id_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    """Integer ids stay integers (their canonical order is numeric, and hashing them is cheap), and so do whole
    float ids (3.0 is item "3", as `read_table` reads it; other floats fail `_id_checks`); others become text."""
    numeric = dtype.is_integer() or dtype.is_float()
    return pl.col(column).cast(pl.Int64, strict=False) if numeric else pl.col(column).cast(pl.String)


def _id_checks(role: str, column: str, dtype: pl.DataType) -> list[tuple[pl.Expr, str, str]]:
    """`read_table`'s checks of an id column: empty or blank, and for a float column not a whole number."""
    checks = [(_empty(column, dtype), f"empty {role} id", column)]
    if (bad := id_column(column, dtype)[1]) is not None:
        checks.append((bad, f"{role} id {{}} is not a whole number (a float id column)", column))
    return checks


class _Source:
    """The source files as LazyFrames: `raw` (the mapped columns as stored, plus `_row`) and `events`
    (filtered, cleaned: user, item, time: Int64, _row), with `read_table`'s checks and `prepare`'s filters."""

    def __init__(self, source: str | Path, fmt: str, columns: ColumnMap, config: PrepareConfig) -> None:
        self.source, self.fmt = source, fmt
        self.files = source_files(source, fmt)
        named = [columns.user, columns.item, columns.time, columns.event, columns.value]
        self.wanted = wanted = list(dict.fromkeys(c for c in named if c is not None))
        types = _check_columns(self.files, fmt, wanted)
        event = pl.col(columns.event).cast(pl.String) if columns.event is not None else None
        value = None
        if columns.value is not None:
            value = pl.col(columns.value)
            if types[columns.value] == pl.String:
                value = value.str.strip_chars()
            value = value.cast(pl.Float64, strict=False)
        self.filters = filter_steps(config, event=event, value=value)  # (step name in the manifest, keep mask)
        self.user_type, self.item_type = types[columns.user], types[columns.item]
        # (mask, reason, column), in `read_table`'s order; "{}" in a reason becomes the cell.
        self.checks = _id_checks("user", columns.user, self.user_type) + _id_checks("item", columns.item, self.item_type)
        time = pl.col("_row").cast(pl.Int64)  # no time column: time is the row order
        self.unit_band: tuple[str, pl.Expr, pl.Expr] | None = None  # (column, band, looks like Unix time)
        if columns.time is not None:
            time, as_float = time_exprs(columns.time, types[columns.time], self.files[0])
            self.checks.extend(time_checks(columns.time, time, as_float))
            self.unit_band = (columns.time, *time_unit_band(time))
        if columns.value is not None and value is not None:
            bad = value.is_null() & ~_empty(columns.value, types[columns.value])
            self.checks.append((bad, "value {} is not a number", columns.value))
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
        if self.unit_band is not None:  # a time column mixing units: its bands' range, then (rarely) where
            _, band, unix = self.unit_band
            aggs += [band.filter(unix).min().alias("band_lo"), band.filter(unix).max().alias("band_hi")]
        try:
            row = self.raw.select(aggs).collect(engine=STREAMING).row(0, named=True)
        except pl.exceptions.PolarsError as e:
            self._raise_read_error(e)
        checks = list(self.checks)
        failed = [(row[f"bad{i}"], i) for i in range(len(checks)) if row[f"bad{i}"] is not None]
        if self.unit_band is not None and row["band_lo"] != row["band_hi"]:
            column, band, unix = self.unit_band
            first = _collect(self.raw.filter(unix.fill_null(False)).select(band.sort_by("_row").first()), self.source).item()
            mixed = (unix & (band != first)).fill_null(False)
            checks.append((mixed, UNIT_MIX, column))
            failed.append((_collect(self.raw.select(pl.col("_row").filter(mixed).min()), self.source).item(), len(checks) - 1))
        if failed:
            bad_row, i = min(failed)
            _, reason, column = checks[i]
            cell = _collect(self.raw.filter(pl.col("_row") == bad_row).select(column), self.source).item()
            _raise_at_file_row(self.files, self.fmt, bad_row, reason.format(repr(cell)), column)
        if row["n"] == 0:
            raise DataError("no rows", path=self.source)
        return [row["n"], *(row[f"kept{i}"] for i in range(len(self.filters)))]

    def _raise_read_error(self, error: Exception) -> NoReturn:
        """A file that Polars cannot read: find it, and for text the first malformed line, as `read_table` does."""
        for path in self.files:
            try:
                _scan([path], self.fmt, self.wanted).select(pl.all().null_count()).collect(engine=STREAMING)
            except pl.exceptions.PolarsError as e:
                if self.fmt == "parquet":
                    raise DataError(f"cannot read parquet: {e}", path=path) from None
                find_bad_line(path, self.fmt, f"cannot read {self.fmt}: {e}")
        raise DataError(f"cannot read: {error}", path=self.source) from None


def _raise_at_file_row(files: list[Path], fmt: str, row: int, reason: str, column: str) -> NoReturn:
    """Turn a row across all files into (file, row in that file) and raise there, as `read_table` does."""
    for path in files:
        n = int(_collect(_scan([path], fmt, []).select(pl.len()), path).item())
        if row < n:
            raise_at(path, fmt, row, reason, column)
        row -= n
    raise AssertionError("row beyond the end of the files")  # pragma: no cover


def _id_maps(src: _Source) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(users, items): the `core.id_map` of the ids left after filtering."""
    maps = []
    for column in ("user", "item"):  # one after the other: collect_all would hold both hash sets at once
        maps.append(id_map(_collect(src.events.select(pl.col(column).unique()), src.source).to_series()))
    return maps[0], maps[1]


class _Buckets:
    """The streaming engine's `core.Events` store: encoded events in buckets of consecutive user codes, each
    bucket its Parquet files (every event of a user in one bucket). A rewrite holds one bucket at a time."""

    engine: Engine = STREAMING

    def __init__(self, files: list[list[Path]], work: Path) -> None:
        self.files, self.work, self.rounds = files, work, 0

    def scan(self) -> pl.LazyFrame:
        return pl.scan_parquet([f for files in self.files for f in files], hive_partitioning=False)

    def parts(self) -> Iterator[pl.LazyFrame]:
        for files in self.files:
            yield pl.scan_parquet(files, hive_partitioning=False)

    def rewrite(self, query: Callable[[pl.LazyFrame], pl.LazyFrame]) -> None:
        self.rounds += 1
        folder = self.work / f"round-{self.rounds}"
        folder.mkdir(parents=True)
        out = []
        for b, (files, part) in enumerate(zip(self.files, self.parts(), strict=True)):
            path = folder / f"{b:05d}.parquet"
            query(part).sink_parquet(path, engine=STREAMING)
            out.append([path])
            for f in files:
                f.unlink()
        self.files = out


def _bucket(src: _Source, users: pl.DataFrame, items: pl.DataFrame, n_events: int, bucket_events: int, work: Path) -> _Buckets:
    """Encode ids as codes and write the events into buckets of consecutive user codes (one streaming pass)."""
    n_buckets = max(1, min(users.height, math.ceil(n_events / bucket_events)))
    bucket = (pl.col("user").cast(pl.Int64) * n_buckets // users.height).alias("bucket")
    encoded = encode_ids(src.events, users, items).with_columns(bucket)
    folder = work / "encoded"
    try:
        encoded.sink_parquet(pl.PartitionBy(folder, key="bucket", include_key=False), mkdir=True, engine=STREAMING)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read: {e}", path=src.source) from None
    return _Buckets([sorted((folder / f"bucket={b}").glob("*.parquet")) for b in range(n_buckets)], work)


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

    with atomic_directory(out, kind="dataset") as tmp:
        work = tmp / "_work"
        say(f"bucketing {counts[-1]:,} events ...")
        buckets = _bucket(src, user_map, item_map, counts[-1], bucket_events, work)
        tables = prepare_events(buckets, config, user_map, item_map, steps, catalogue=catalogue, progress=say)
        say("writing sequences ...")
        train_events = 0

        def frames() -> Iterator[pl.DataFrame]:
            nonlocal train_events
            for frame in sequence_frames(buckets, tables):
                train_events += train_event_count(frame, tables)
                yield frame

        write_sequences(tmp, frames())
        shutil.rmtree(work)
        files = {str(p): sha256_file(p) for p in src.files}
        if items is not None:
            files[str(items)] = sha256_file(Path(items))
        manifest = prepared_manifest(
            config=config,
            name=dataset_name(name, None, source),
            domain=domain or "generic",
            source={"files": files, "format": fmt},
            steps=steps,
            stats=tables.stats(train_events),
            engine=STREAMING,
        )
        return write_prepared(tmp, tables.users, tables.items, manifest)
