"""Generic event and catalogue tables (csv, tsv, parquet, jsonl) and the `RawData` shape every reader returns.

`read_table` reads events through a `ColumnMap`, `read_catalogue` an item catalogue through an `ItemColumnMap`.
Both keep a fast path: a native reader loads every cell as a string and vectorised polars expressions validate
them; only when something is wrong does a Python pass walk the file to find the line to report. Bad input raises
`DataError` with the file, the 1-based physical line (text files) or the 0-based row (parquet) and the reason.
The id and header checks (`id_column`, `check_header`), time parsing (`llmrec.data.times`) and error location (`find_bad_line`, `raise_at`) are shared with
the streaming engine; the dataset-specific readers (S3-Rec, MovieLens, MIND, RecBole) live in `readers`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import polars as pl

from llmrec.data.times import time_checks, time_exprs, time_unit_check
from llmrec.errors import DataError

__all__ = [
    "CATALOGUE_SCHEMA",
    "DOMAINS",
    "TABLE_FORMATS",
    "TABLE_SUFFIXES",
    "ColumnMap",
    "IgnoredColumnWarning",
    "ItemColumnMap",
    "RawData",
    "check_header",
    "check_json_ids",
    "csv_reader",
    "find_bad_line",
    "id_column",
    "raise_at",
    "read_catalogue",
    "read_table",
    "time_checks",
    "time_exprs",
]

DOMAINS = ("ecommerce", "movies", "music", "news", "generic")
TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")
CATALOGUE_SCHEMA: dict[str, pl.DataType] = {
    "item": pl.String(),
    "title": pl.String(),
    "text": pl.String(),
    "categories": pl.List(pl.String()),
}


@dataclass
class RawData:
    """One data set as read from disk, before filtering, remapping or splitting."""

    events: pl.DataFrame  # user, item: String; time: Int64 >= 0; optional event: String, value: Float64
    items: pl.DataFrame | None  # catalogue with exactly CATALOGUE_SCHEMA's columns
    users: pl.DataFrame | None  # user + attribute columns, all String
    domain: str  # one of DOMAINS
    source_files: list[Path]  # every file read, for the manifest's checksums


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a generic table hold the user, item, time, event type and value."""

    user: str = "user_id"
    item: str = "item_id"
    time: str | None = "timestamp"  # None: time is the row order
    event: str | None = None
    value: str | None = None

    @classmethod
    def parse(cls, spec: str) -> ColumnMap:
        """Parse "user=uid,item=sku,time=ts,event=type,value=rating"; an empty optional value means "none"."""
        return cls(**_parse_column_spec(spec, {f.name for f in fields(cls)}, required=("user", "item")))  # type: ignore[arg-type]  # keys checked


def _parse_column_spec(spec: str, known: set[str], *, required: tuple[str, ...]) -> dict[str, str | None]:
    given: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, name = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"column map entry {part!r} is not key=column")
        if key not in known:
            raise ValueError(f"unknown column map key {key!r}; expected one of {', '.join(sorted(known))}")
        if key in given:
            raise ValueError(f"column map key {key!r} given twice")
        if not name and key in required:
            raise ValueError(f"column map key {key!r} needs a column name")
        given[key] = name or None
    return given


class IgnoredColumnWarning(UserWarning):
    """A column of a catalogue file that no catalogue field is mapped to (the CLI prints one line for each)."""


@dataclass(frozen=True)
class ItemColumnMap:
    """Which columns of a catalogue table hold the item id, title, text and categories.

    item None: the events' item column name (so `--columns item=sku` also reads the catalogue's `sku`), or item_id.
    A field named in `explicit` must exist; the others are read when present. None: not read.
    """

    item: str | None = None
    title: str | None = "title"
    text: str | None = "text"
    categories: str | None = "categories"
    available: str | None = "available"  # optional yes/no column: serving leaves unavailable items out
    explicit: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str) -> ItemColumnMap:
        """Parse "item=sku,title=name,text=description,categories=category,available=in_stock"; an empty value
        means "none"."""
        known = {f.name for f in fields(cls)} - {"explicit"}
        given = _parse_column_spec(spec, known, required=("item",))
        return cls(**given, explicit=frozenset(k for k, v in given.items() if v))


# ---- tables (csv, tsv, parquet, jsonl) ----------------------------------------------------------------------

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _format(path: Path, fmt: str | None) -> str:
    fmt = fmt or TABLE_SUFFIXES.get(path.suffix.lower(), path.suffix)
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r} for {path}; expected one of {', '.join(TABLE_FORMATS)}")
    return fmt


def _text_lines(path: Path) -> Iterator[str]:
    """Decoded physical lines (with their newline); DataError at the first one that is not UTF-8."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"invalid UTF-8 bytes ({raw[e.start : e.end]!r})", path=path, line=line_no) from None


def csv_reader(path: Path, fmt: str) -> Any:
    # TSV has no quoting (IANA text/tab-separated-values); CSV quotes as in RFC 4180.
    if fmt == "tsv":
        return csv.reader(_text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(_text_lines(path))


def _records_with_lines(path: Path, fmt: str) -> Iterator[tuple[int, list[str] | str]]:
    """(first physical line, record) of every non-blank data record, header excluded, as the fast readers count them."""
    if fmt == "jsonl":
        yield from ((n, line) for n, line in enumerate(_text_lines(path), 1) if line.strip())
        return
    reader = csv_reader(path, fmt)
    next(reader, None)  # the header
    start = reader.line_num + 1
    try:
        for record in reader:
            if record:  # blank lines hold no row
                yield start, record
            start = reader.line_num + 1
    except csv.Error as e:  # e.g. an unclosed quote running into the field size limit
        raise DataError(f"malformed {fmt} record from here (an unclosed quote?): {e}", path=path, line=start) from None


def check_header(path: Path, header: list[str]) -> None:
    """A column named twice would be read as one of them, silently: refused, naming the column."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"column {name!r} appears more than once in the header; rename or drop one", path=path, line=1)
        seen.add(name)


def id_column(column: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr | None]:
    """(the id as text, the mask of invalid ids or None) of an id column, whatever its type.

    Float ids (Parquet columns written from a pandas column with a missing value, ...) are ids, not quantities:
    a whole number reads as its integer text (3.0 -> "3", to match the catalogue and the ids you type), any
    other value (3.5, NaN, inf) is refused, so that no id silently matches nothing."""
    c = pl.col(column)
    if not dtype.is_float():
        return c.cast(pl.String), None
    whole = c.is_finite() & (c == c.floor()) & (c.abs() < 2.0**63)
    return pl.when(whole).then(c.cast(pl.Int64, strict=False)).cast(pl.String), c.is_not_null() & ~whole


def find_bad_line(path: Path, fmt: str, reason: str) -> NoReturn:
    """Slow path after the native reader failed: raise at the first non-UTF-8, malformed or wrongly sized record."""
    n_fields = len(next(csv_reader(path, fmt), [])) if fmt != "jsonl" else 0
    has_rows = False
    for line_no, record in _records_with_lines(path, fmt):
        has_rows = True
        if isinstance(record, list) and len(record) != n_fields:
            raise DataError(f"expected {n_fields} fields like the header, found {len(record)}", path=path, line=line_no)
        if isinstance(record, str):
            try:
                obj = json.loads(record, parse_constant=_not_json)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} at column {e.colno}", path=path, line=line_no) from None
            except ValueError as e:  # NaN, Infinity: Python's json reads them, JSON (and the native reader) does not
                raise DataError(f"invalid JSON: {e}", path=path, line=line_no) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line_no)
    raise DataError(reason if has_rows else "no rows", path=path)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (write null, or a number)")


def check_json_ids(path: Path, df: pl.DataFrame, columns: dict[str, str]) -> None:
    """Refuse a JSON Lines id that is an object, an array or a boolean, naming its line: read as text, {"a": 1} or
    true would otherwise become the id '{"a": 1}' or 'true'. Only a file with such a text in an id column is walked
    line by line (the JSON types are gone once the cells are text)."""
    suspect = pl.any_horizontal(
        pl.col(c).str.starts_with("{") | pl.col(c).str.starts_with("[") | pl.col(c).is_in(["true", "false"])
        for c in columns.values()
    )
    if not df.select(suspect.fill_null(False).any()).item():
        return
    kinds = {dict: "an object", list: "an array", bool: "a boolean"}
    for line_no, record in _records_with_lines(path, "jsonl"):
        obj = json.loads(str(record), parse_constant=_not_json)
        for role, column in columns.items():
            kind = kinds.get(type(obj.get(column)) if isinstance(obj, dict) else type(None))
            if kind is not None:
                raise DataError(f"{role} id is {kind}; ids are strings or whole numbers", path=path, line=line_no, field=column)


def raise_at(path: Path, fmt: str, row: int, reason: str, field: str) -> NoReturn:
    """Raise at data row `row` (0-based): parquet reports the row, text formats the physical line it starts on."""
    if fmt == "parquet":
        raise DataError(reason, path=path, row=row, field=field)
    line, record = next((n, r) for i, (n, r) in enumerate(_records_with_lines(path, fmt)) if i == row)
    if isinstance(record, list):  # a short row reads as nulls in polars' streaming reader: say what is wrong
        n_fields = len(next(csv_reader(path, fmt), []))
        if len(record) != n_fields:
            raise DataError(f"expected {n_fields} fields like the header, found {len(record)}", path=path, line=line)
    raise DataError(reason, path=path, line=line, field=field)


def _load_table(path: Path, fmt: str, required: list[str], optional: list[str]) -> pl.DataFrame:
    """The wanted columns (text formats: every cell a string); absent optional columns come back as nulls."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=path)
    try:
        if fmt == "parquet":
            schema = dict(pl.read_parquet_schema(path))
        elif fmt == "jsonl":
            schema = dict(pl.scan_ndjson(path).collect_schema())  # from the first 100 records
        else:
            header: list[str] = next(csv_reader(path, fmt), [])
            check_header(path, header)
            schema = dict.fromkeys(header, pl.String())
        if missing := [c for c in required if c not in schema]:
            found = ", ".join(schema)
            raise DataError(f"missing column {', '.join(map(repr, missing))}; found columns: {found}", path=path)
        wanted = list(dict.fromkeys(c for c in required + optional if c in schema))
        if fmt == "parquet":
            df = pl.read_parquet(path, columns=wanted)
        elif fmt == "jsonl":  # cells as text, except list columns (catalogue categories)
            df = pl.read_ndjson(path, schema={c: schema[c] if schema[c] == pl.List else pl.String for c in wanted})
        else:
            df = _read_csv(path, fmt, wanted)
    except pl.exceptions.PolarsError as e:
        if fmt == "parquet":
            raise DataError(f"cannot read parquet: {e}", path=path) from None
        find_bad_line(path, fmt, f"cannot read {fmt}: {e}")
    if df.height == 0:
        raise DataError("no rows", path=path)
    return df.with_columns(pl.lit(None, pl.String).alias(c) for c in optional if c not in df.columns)


def _read_csv(path: Path, fmt: str, columns: list[str]) -> pl.DataFrame:
    # pyarrow's reader, not polars': polars pads a row with too few fields with nulls silently, pyarrow refuses it.
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if fmt == "tsv":
        parse = pa_csv.ParseOptions(delimiter="\t", quote_char=False)
    else:
        parse = pa_csv.ParseOptions(newlines_in_values=True)
    types = dict.fromkeys(columns, pa.string())
    convert = pa_csv.ConvertOptions(include_columns=columns, column_types=types, strings_can_be_null=False)
    try:
        table = pa_csv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as e:
        find_bad_line(path, fmt, f"cannot read {fmt}: {e}")
    df = pl.DataFrame(pl.from_arrow(table))
    del table
    pa.default_memory_pool().release_unused()  # polars copied the columns; hand the arrow buffers back now
    if fmt == "csv" and df.select(pl.any_horizontal(pl.col(c).str.contains("\n", literal=True) for c in columns).any()).item():
        _check_quotes_closed(path)  # a cell spans lines: quoted on purpose, or a quote never closed
    return df


def _check_quotes_closed(path: Path) -> None:
    """A quote that is never closed makes the rest of the file one value (pyarrow reads it without a word): a
    DataError at the line of the record where it opens."""
    reader = csv.reader(_text_lines(path), strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            reason = "a quote opened in this record is never closed: the rest of the file would be one value"
            raise DataError(reason, path=path, line=start) from None
        # another RFC 4180 slip pyarrow reads leniently (a quote inside a field): not ours to refuse here


def _raise_first(df: pl.DataFrame, path: Path, fmt: str, checks: list[tuple[pl.Expr, str, str]]) -> None:
    """Raise at the earliest row failing a (mask, reason, column) check; "{}" in a reason becomes the cell."""
    firsts = df.select(mask.fill_null(False).arg_true().first().alias(str(i)) for i, (mask, _, _) in enumerate(checks))
    failed = [(row, i) for i, row in enumerate(firsts.row(0)) if row is not None]
    if failed:
        row, i = min(failed)
        _, reason, column = checks[i]
        raise_at(path, fmt, row, reason.format(repr(df[column][row])), column)


def _empty(column: str) -> pl.Expr:
    """Null, empty or only whitespace: no id (and no value)."""
    return pl.col(column).is_null() | (pl.col(column).cast(pl.String).str.strip_chars().str.len_bytes() == 0)


def id_checks(columns: dict[str, str], schema: dict[str, pl.DataType]) -> tuple[list[pl.Expr], list[tuple[pl.Expr, str, str]]]:
    """(the id columns as text, their checks) for {role: column}, e.g. {"user": "user_id", "item": "item_id"}."""
    exprs, checks = [], []
    for role, column in columns.items():
        expr, bad = id_column(column, schema[column])
        exprs.append(expr.alias(role))
        checks.append((_empty(column), f"empty {role} id", column))
        if bad is not None:
            checks.append((bad, f"{role} id {{}} is not a whole number (a float id column)", column))
    return exprs, checks


def read_table(path: Path, fmt: str, columns: ColumnMap = ColumnMap()) -> RawData:
    """Read a generic event table: csv or tsv with a header, parquet, or jsonl; domain "generic".

    Every column named in `columns` must exist. Times are numbers >= 0, taken in the file's unit (floats are
    truncated), or ISO-8601 text / datetime columns, read as Unix seconds (UTC when no offset is given); without a
    time column, time is the row order. An empty value cell is null.
    """
    fmt = _format(path, fmt)
    named = [columns.user, columns.item, columns.time, columns.event, columns.value]
    df = _load_table(path, fmt, [c for c in named if c is not None], [])  # a column named in the map must exist
    if fmt == "jsonl":
        check_json_ids(path, df, {"user": columns.user, "item": columns.item})
    out, checks = event_exprs(columns, dict(df.schema), path)
    _raise_first(df, path, fmt, checks)
    return RawData(df.select(out), None, None, "generic", [path])


def event_exprs(
    columns: ColumnMap, schema: dict[str, pl.DataType], where: Path
) -> tuple[list[pl.Expr], list[tuple[pl.Expr, str, str]]]:
    """The events columns (user, item, time [, event, value]) of a table of `schema` mapped by `columns`, and
    their checks (mask, reason, column): what a file (`read_table`) and a DataFrame (`llmrec.data.frames`) share.
    Without a time column, time is the row order; `where` names the source in time errors."""
    out, checks = id_checks({"user": columns.user, "item": columns.item}, schema)
    time = pl.int_range(pl.len(), dtype=pl.Int64)
    if columns.time is not None:
        time, as_float = time_exprs(columns.time, schema[columns.time], where)
        checks.extend(time_checks(columns.time, time, as_float))
        checks.append(time_unit_check(columns.time, time))
    out.append(time.alias("time"))
    if columns.event is not None:
        out.append(pl.col(columns.event).cast(pl.String).alias("event"))
    if columns.value is not None:
        value = pl.col(columns.value)
        if schema[columns.value] == pl.String:
            value = value.str.strip_chars()
        value = value.cast(pl.Float64, strict=False)
        checks.append((value.is_null() & ~_empty(columns.value), "value {} is not a number", columns.value))
        out.append(value.alias("value"))
    return out, checks


def read_catalogue(
    path: Path,
    fmt: str | None = None,
    columns: ItemColumnMap | None = None,
    *,
    default_item: str = "item_id",
    category_separator: str | None = None,
) -> pl.DataFrame:
    """Read an item catalogue table into CATALOGUE_SCHEMA; only the item column is required, ids must be unique.

    columns: which column holds each field (default: item_id, title, text, categories; `columns.item` None means
    `default_item`, the events' item column, or item_id when the file has no such column). A field mapped
    explicitly must exist; the default names are read when present. Categories are a list column or a string split on `category_separator` (default "|", or "," when the
    cell has no "|"); empty title/text are null. Every other column of the file is ignored with an
    `IgnoredColumnWarning` naming it.
    """
    import warnings

    fmt = _format(path, fmt)
    columns = columns or ItemColumnMap()
    item = columns.item
    if item is None:  # the events' item column name, else item_id, whichever the file has
        present = _columns_of(path, fmt) if path.is_file() and path.stat().st_size else []
        item = next((c for c in (default_item, "item_id") if c in present), default_item)
    named = {"title": columns.title, "text": columns.text, "categories": columns.categories, "available": columns.available}
    required = [item, *(c for k, c in named.items() if c and k in columns.explicit)]
    optional = [c for c in named.values() if c]
    df = _load_table(path, fmt, required, optional)
    if fmt == "jsonl":
        check_json_ids(path, df, {"item": item})
    present = _columns_of(path, fmt)
    for column in present:
        if column not in (item, *optional):
            reason = "not mapped to item, title, text, categories or available"
            warnings.warn(f"{path}: column {column!r} is ignored ({reason})", IgnoredColumnWarning, stacklevel=2)
    [item_text], checks = id_checks({"item": item}, df.schema)
    repeated = ~item_text.is_first_distinct() & ~_empty(item)
    available = columns.available if columns.available in present else None
    flag = None if available is None else _yes_no(available, df.schema[available])
    not_yes_no = [] if flag is None or available is None else [(flag.is_null() & ~_empty(available), _YES_NO, available)]
    _raise_first(df, path, fmt, [*checks, (repeated, "duplicate item id {}", item), *not_yes_no])

    def text_column(name: str | None) -> pl.Expr:
        return pl.col(name).cast(pl.String).replace("", None) if name else pl.lit(None, pl.String)

    if columns.categories is None:
        cats: pl.Expr = pl.lit([], pl.List(pl.String))
    else:
        cats = pl.col(columns.categories)
        if df.schema[columns.categories] != pl.List:
            cats = cats.cast(pl.String)
            if category_separator is not None:
                cats = cats.str.split(category_separator)
            else:
                cats = pl.when(cats.str.contains("|", literal=True)).then(cats.str.split("|")).otherwise(cats.str.split(","))
        kept = pl.element().cast(pl.String).str.strip_chars()
        cats = cats.cast(pl.List(pl.String)).list.eval(kept.filter(kept != "")).fill_null([])
    return df.select(
        item_text.alias("item"),
        text_column(columns.title).alias("title"),
        text_column(columns.text).alias("text"),
        cats.alias("categories"),
        *([] if flag is None else [flag.alias("available")]),  # only when the catalogue has the column
    )


_YES = ("true", "yes", "y", "1", "t", "in_stock", "available")
_NO = ("false", "no", "n", "0", "f", "out_of_stock", "unavailable")
_YES_NO = "available {} is not yes/no (true/false, 1/0, yes/no)"


def _yes_no(column: str, dtype: pl.DataType) -> pl.Expr:
    """The `available` column as Boolean: a bool, a number (0 = no) or yes/no text; empty is null (available)."""
    col = pl.col(column)
    if dtype == pl.Boolean:
        return col
    if dtype.is_numeric():
        return col != 0
    text = col.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(text.is_in(_YES)).then(True).when(text.is_in(_NO)).then(False).otherwise(None)


def _columns_of(path: Path, fmt: str) -> list[str]:
    """The column names of a table file (header of a text file, schema of parquet / the first jsonl records)."""
    try:
        if fmt == "parquet":
            return list(pl.read_parquet_schema(path))
        if fmt == "jsonl":
            return list(pl.scan_ndjson(path).collect_schema())
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read {fmt}: {e}", path=path) from None
    header: list[str] = next(csv_reader(path, fmt), [])
    check_header(path, header)
    return header
