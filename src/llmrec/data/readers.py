"""Raw data readers: turn published logs and user tables into one `RawData` shape.

Every reader returns events (user, item, time[, event, value]) in file order, an optional item catalogue
(item, title, text, categories) and optional user attributes. Ids stay the strings written in the file;
mapping them to token ids is `preprocess`'s job.

Bad input raises `DataError` with the file, the 1-based physical line (text files) or the 0-based row
(parquet) and the reason. Tables (`read_table`, `read_catalogue`) keep a fast path: a native reader loads
every cell as a string and vectorised polars expressions validate them; only when something is wrong does
a Python pass walk the file to find the line to report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import polars as pl

from llmrec.errors import DataError

__all__ = [
    "CATALOGUE_SCHEMA",
    "DOMAINS",
    "TABLE_FORMATS",
    "ColumnMap",
    "IgnoredColumnWarning",
    "ItemColumnMap",
    "RawData",
    "find_bad_line",
    "infer_format",
    "read_catalogue",
    "read_mind",
    "read_movielens",
    "read_recbole",
    "read_s3rec",
    "read_table",
    "raise_at",
    "time_checks",
    "time_exprs",
]

DOMAINS = ("ecommerce", "movies", "music", "news", "generic")
TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")
EVENT_TYPES = (pl.String(), pl.String(), pl.Int64(), pl.Float64())  # user, item, time, value
USER_COLUMNS = ("user", "age", "gender", "occupation", "zip")  # MovieLens user attributes
CATALOGUE_SCHEMA: dict[str, pl.DataType] = {
    "item": pl.String(),
    "title": pl.String(),
    "text": pl.String(),
    "categories": pl.List(pl.String()),
}
# u.genre order, used when a copy of ml-100k lacks that file.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# ml-1m users.dat stores occupations as codes 0-20; names from the ml-1m README.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


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
    explicit: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str) -> ItemColumnMap:
        """Parse "item=sku,title=name,text=description,categories=category"; an empty value means "none"."""
        known = {f.name for f in fields(cls)} - {"explicit"}
        given = _parse_column_spec(spec, known, required=("item",))
        return cls(**given, explicit=frozenset(k for k, v in given.items() if v))


# ---- line-oriented files (S3-Rec, MovieLens, MIND) -----------------------------------------------------------


def _read_lines(path: Path, *, latin1_fallback: bool = False) -> list[str]:
    """The file's lines, "" for blank ones, so that index + 1 is the physical line number."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror}", path=path) from e
    if not data.strip():
        raise DataError("file is empty", path=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if not latin1_fallback:
            line = data.count(b"\n", 0, e.start) + 1
            raise DataError(f"invalid UTF-8 bytes ({data[e.start : e.end]!r})", path=path, line=line) from None
        text = data.decode("latin-1")  # older MovieLens copies are ISO-8859-1
    return [line.rstrip("\r") for line in text.split("\n")]


def _records(path: Path, sep: str, n_fields: int, *, latin1_fallback: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line, each with exactly `n_fields` fields."""
    for line_no, line in enumerate(_read_lines(path, latin1_fallback=latin1_fallback), 1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != n_fields:
            reason = f"expected {n_fields} fields separated by {sep!r}, found {len(parts)}"
            raise DataError(reason, path=path, line=line_no)
        yield line_no, parts


def _int_id(token: str, what: str, path: Path, line: int) -> str:
    token = token.strip()
    if not (token.isascii() and token.isdigit()):
        raise DataError(f"{what} {token!r} is not a non-negative integer", path=path, line=line)
    return token


def _events(rows: list[tuple[str, str, int]] | list[tuple[str, str, int, float]]) -> pl.DataFrame:
    names = ["user", "item", "time", "value"][: len(rows[0]) if rows else 3]
    return pl.DataFrame(rows, schema=dict(zip(names, EVENT_TYPES, strict=False)), orient="row")


def _catalogue(rows: list[tuple[str, str | None, str | None, list[str]]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CATALOGUE_SCHEMA, orient="row")


def _users(rows: list[Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(USER_COLUMNS, pl.String()), orient="row")


def read_s3rec(path: Path, attributes_path: Path | None = None, *, domain: str = "ecommerce") -> RawData:
    """Read an S3-Rec style log (`user item item ...` per line, chronological) and its item2attributes.json.

    There are no timestamps: an event's time is its position in the user's line (0, 1, 2, ...). Attribute
    ids are anonymous, so they become categories "attr_<id>" (first occurrence order, repeats dropped).
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    rows: list[tuple[str, str, int]] = []
    for line_no, line in enumerate(_read_lines(path), 1):
        tokens = line.split()
        if len(tokens) == 1:
            raise DataError("expected a user id followed by at least one item id", path=path, line=line_no)
        ids = [_int_id(token, "item id" if i else "user id", path, line_no) for i, token in enumerate(tokens)]
        rows += [(ids[0], item, position) for position, item in enumerate(ids[1:])]
    if attributes_path is None:
        return RawData(_events(rows), None, None, domain, [path])
    catalogue = _catalogue([(item, None, None, cats) for item, cats in _read_attributes(attributes_path).items()])
    return RawData(_events(rows), catalogue, None, domain, [path, attributes_path])


def _read_attributes(path: Path) -> dict[str, list[str]]:
    try:
        mapping = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read item attributes: {e}", path=path) from e
    if not isinstance(mapping, dict):
        raise DataError("expected a JSON object mapping item id -> list of attribute ids", path=path)
    result: dict[str, list[str]] = {}
    for item, attrs in mapping.items():
        if not isinstance(attrs, list) or not all(isinstance(a, int | str) for a in attrs):
            raise DataError(f"item {item!r}: expected a list of attribute ids", path=path)
        result[item] = list(dict.fromkeys(f"attr_{a}" for a in attrs))
    return result


def read_movielens(path: Path) -> RawData:
    """Read a MovieLens directory: ml-100k (u.data, u.item, u.genre, u.user) or ml-1m (*.dat, '::' separated).

    Events carry the rating as `value`. Catalogue text is "<title>. Genres: A, B." (titles include the year).
    u.item, u.user, movies.dat and users.dat are optional; without them `items` / `users` are None.
    """
    if (path / "u.data").is_file():
        return _read_ml100k(path)
    if (path / "ratings.dat").is_file():
        return _read_ml1m(path)
    raise DataError("not a MovieLens directory: found neither u.data (ml-100k) nor ratings.dat (ml-1m)", path=path)


def _ratings(path: Path, sep: str) -> pl.DataFrame:
    rows: list[tuple[str, str, int, float]] = []
    for line_no, (user, item, rating, ts) in _records(path, sep, 4):
        try:
            value = float(rating)
        except ValueError:
            raise DataError(f"rating {rating!r} is not a number", path=path, line=line_no) from None
        user, item = _int_id(user, "user id", path, line_no), _int_id(item, "item id", path, line_no)
        rows.append((user, item, int(_int_id(ts, "timestamp", path, line_no)), value))
    return _events(rows)


def _movie(item: str, title: str, genres: list[str]) -> tuple[str, str | None, str | None, list[str]]:
    text = f"{title}. Genres: {', '.join(genres)}." if genres else f"{title}."
    return item, title, text, genres


def _read_ml100k(path: Path) -> RawData:
    sources = [path / "u.data"]
    events = _ratings(path / "u.data", "\t")
    genres = list(ML100K_GENRES)
    if (genre_path := path / "u.genre").is_file():
        sources.append(genre_path)
        pairs = sorted((int(_int_id(i, "genre index", genre_path, n)), g) for n, (g, i) in _records(genre_path, "|", 2))
        genres = [g for _, g in pairs]
    catalogue = users = None
    if (item_path := path / "u.item").is_file():
        sources.append(item_path)
        rows = []
        for line_no, parts in _records(item_path, "|", 5 + len(genres), latin1_fallback=True):
            if any(flag not in ("0", "1") for flag in parts[5:]):
                raise DataError("genre flags must be 0 or 1", path=item_path, line=line_no)
            item = _int_id(parts[0], "movie id", item_path, line_no)
            rows.append(_movie(item, parts[1], [g for g, flag in zip(genres, parts[5:], strict=True) if flag == "1"]))
        catalogue = _catalogue(rows)
    if (user_path := path / "u.user").is_file():
        sources.append(user_path)
        users = _users([parts for _, parts in _records(user_path, "|", 5, latin1_fallback=True)])
    return RawData(events, catalogue, users, "movies", sources)


def _read_ml1m(path: Path) -> RawData:
    sources = [path / "ratings.dat"]
    events = _ratings(path / "ratings.dat", "::")
    catalogue = users = None
    if (movie_path := path / "movies.dat").is_file():
        sources.append(movie_path)
        movies = []
        for n, (item, title, genres) in _records(movie_path, "::", 3, latin1_fallback=True):
            movies.append(_movie(_int_id(item, "movie id", movie_path, n), title, [g for g in genres.split("|") if g]))
        catalogue = _catalogue(movies)
    if (user_path := path / "users.dat").is_file():
        sources.append(user_path)
        people = []
        for n, (user, gender, age, job, zip_code) in _records(user_path, "::", 5, latin1_fallback=True):
            code = int(_int_id(job, "occupation code", user_path, n))
            people.append((user, age, gender, ML1M_OCCUPATIONS[code] if code < len(ML1M_OCCUPATIONS) else job, zip_code))
        users = _users(people)
    return RawData(events, catalogue, users, "movies", sources)


def read_mind(path: Path) -> RawData:
    """Read a MIND directory (behaviors.tsv + news.tsv, tab separated, no header).

    A user's click history has no times; it precedes their earliest impression, so history item i of n
    gets time `earliest - n + i` (clamped at 0). Then every clicked impression item (label 1) follows at
    the impression's time (US "11/11/2019 9:05:58 AM", read as UTC), in file order. Impression items
    without a label (the MIND test split) count as not clicked. Identical (user, item, time) are kept once.
    """
    behaviors, news_path = path / "behaviors.tsv", path / "news.tsv"
    impressions = list(_records(behaviors, "\t", 5))  # (line, [impression id, user, time, history, impressions])
    stamps = pl.Series([parts[2] for _, parts in impressions], dtype=pl.String)
    seconds = stamps.str.to_datetime("%m/%d/%Y %I:%M:%S %p", strict=False).dt.epoch("s").to_list()
    earliest: dict[str, tuple[int, list[str]]] = {}  # user -> (time, history) at their earliest impression
    clicks: dict[str, list[tuple[str, str, int]]] = {}
    for (line_no, (_, user, when, history, shown)), ts in zip(impressions, seconds, strict=True):
        if not user:
            raise DataError("empty user id", path=behaviors, line=line_no)
        if ts is None:
            raise DataError(f"time {when!r} is not like '11/11/2019 9:05:58 AM'", path=behaviors, line=line_no)
        if user not in earliest or ts < earliest[user][0]:
            earliest[user] = (ts, history.split())
        for token in shown.split():
            news, dash, label = token.rpartition("-")
            if dash and label not in ("0", "1"):
                raise DataError(f"impression {token!r}: label must be 0 or 1", path=behaviors, line=line_no)
            if label == "1":
                clicks.setdefault(user, []).append((user, news, ts))
    events: dict[tuple[str, str, int], None] = {}  # an insertion-ordered set: drops repeats, keeps the order
    for user, (first, clicked_before) in earliest.items():
        n = len(clicked_before)
        events.update(dict.fromkeys((user, news, max(0, first - n + i)) for i, news in enumerate(clicked_before)))
        events.update(dict.fromkeys(clicks.get(user, [])))
    catalogue = [
        (news, title or None, f"{title}. {abstract}" if abstract else title or None, [c for c in (cat, sub) if c])
        for _, (news, cat, sub, title, abstract, *_) in _records(news_path, "\t", 8)
    ]
    return RawData(_events(list(events)), _catalogue(catalogue), None, "news", [behaviors, news_path])


# ---- tables (csv, tsv, parquet, jsonl) ----------------------------------------------------------------------

_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _format(path: Path, fmt: str | None) -> str:
    fmt = fmt or _SUFFIXES.get(path.suffix.lower(), path.suffix)
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


def _csv_reader(path: Path, fmt: str) -> Any:
    # TSV has no quoting (IANA text/tab-separated-values); CSV quotes as in RFC 4180.
    if fmt == "tsv":
        return csv.reader(_text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(_text_lines(path))


def _records_with_lines(path: Path, fmt: str) -> Iterator[tuple[int, list[str] | str]]:
    """(first physical line, record) of every non-blank data record, header excluded, as the fast readers count them."""
    if fmt == "jsonl":
        yield from ((n, line) for n, line in enumerate(_text_lines(path), 1) if line.strip())
        return
    reader = _csv_reader(path, fmt)
    next(reader, None)  # the header
    start = reader.line_num + 1
    try:
        for record in reader:
            if record:  # blank lines hold no row
                yield start, record
            start = reader.line_num + 1
    except csv.Error as e:  # e.g. an unclosed quote running into the field size limit
        raise DataError(f"malformed {fmt} record from here (an unclosed quote?): {e}", path=path, line=start) from None


def find_bad_line(path: Path, fmt: str, reason: str) -> NoReturn:
    """Slow path after the native reader failed: raise at the first non-UTF-8, malformed or wrongly sized record."""
    n_fields = len(next(_csv_reader(path, fmt), [])) if fmt != "jsonl" else 0
    has_rows = False
    for line_no, record in _records_with_lines(path, fmt):
        has_rows = True
        if isinstance(record, list) and len(record) != n_fields:
            raise DataError(f"expected {n_fields} fields like the header, found {len(record)}", path=path, line=line_no)
        if isinstance(record, str):
            try:
                obj = json.loads(record)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} at column {e.colno}", path=path, line=line_no) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line_no)
    raise DataError(reason if has_rows else "no rows", path=path)


def raise_at(path: Path, fmt: str, row: int, reason: str, field: str) -> NoReturn:
    """Raise at data row `row` (0-based): parquet reports the row, text formats the physical line it starts on."""
    if fmt == "parquet":
        raise DataError(reason, path=path, row=row, field=field)
    line, record = next((n, r) for i, (n, r) in enumerate(_records_with_lines(path, fmt)) if i == row)
    if isinstance(record, list):  # a short row reads as nulls in polars' streaming reader: say what is wrong
        n_fields = len(next(_csv_reader(path, fmt), []))
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
            schema = dict.fromkeys(next(_csv_reader(path, fmt), []), pl.String())
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
    return df


def _raise_first(df: pl.DataFrame, path: Path, fmt: str, checks: list[tuple[pl.Expr, str, str]]) -> None:
    """Raise at the earliest row failing a (mask, reason, column) check; "{}" in a reason becomes the cell."""
    firsts = df.select(mask.fill_null(False).arg_true().first().alias(str(i)) for i, (mask, _, _) in enumerate(checks))
    failed = [(row, i) for i, row in enumerate(firsts.row(0)) if row is not None]
    if failed:
        row, i = min(failed)
        _, reason, column = checks[i]
        raise_at(path, fmt, row, reason.format(repr(df[column][row])), column)


def _empty(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).cast(pl.String).str.len_bytes() == 0)


# ISO-8601 forms read from text, after "T" -> " " and a trailing "Z" -> "+00:00" (chrono formats; %.f is optional).
_ISO_WITH_OFFSET = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
_ISO_NAIVE = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def _iso_seconds(text: pl.Expr) -> pl.Expr:
    """Unix seconds (Int64, null if not ISO-8601) of ISO-8601 text; an offset is honoured, a time without one is UTC.

    Polars infers a single format from the first value; trying each allowed form per cell instead lets one column
    mix dates, times with and without offsets, and fractions of seconds.
    """
    t = text.str.replace("T", " ", literal=True).str.replace(r"[Zz]$", "+00:00")
    aware = [t.str.strptime(pl.Datetime("us", "UTC"), f, strict=False, exact=True) for f in _ISO_WITH_OFFSET]
    naive = [t.str.strptime(pl.Datetime("us"), f, strict=False, exact=True) for f in _ISO_NAIVE]
    return pl.coalesce([d.dt.epoch("s") for d in aware + naive])


def time_exprs(column: str, dtype: pl.DataType, path: Path) -> tuple[pl.Expr, pl.Expr]:
    """(time as Int64, null where invalid; the value as Float64) of a time column.

    Numbers (or numeric text) are taken as they are, in the file's own unit (floats truncate); ISO-8601 text
    ("2024-03-01", "2024-03-01T09:30:00Z", "... +02:00") and datetime/date columns become Unix seconds (UTC).
    """
    c = pl.col(column)
    if dtype.is_integer():
        return c.cast(pl.Int64, strict=False), c.cast(pl.Float64)
    if dtype.is_float():
        return pl.when(c.is_finite()).then(c.cast(pl.Int64, strict=False)), c
    if isinstance(dtype, pl.Datetime):
        utc = c.dt.replace_time_zone("UTC") if dtype.time_zone is None else c
        seconds = utc.dt.epoch("s")
        return seconds, seconds.cast(pl.Float64)
    if dtype == pl.Date:
        seconds = c.cast(pl.Datetime("us")).dt.epoch("s")
        return seconds, seconds.cast(pl.Float64)
    if dtype == pl.String:
        text = c.str.strip_chars()
        number = text.cast(pl.Float64, strict=False)
        iso = _iso_seconds(text)
        as_int = text.cast(pl.Int64, strict=False)
        as_number = pl.coalesce(as_int, pl.when(number.is_finite()).then(number.cast(pl.Int64, strict=False)))
        return pl.coalesce(as_number, iso), pl.coalesce(number, iso.cast(pl.Float64))
    raise DataError(f"time column has type {dtype}; expected numbers, ISO-8601 text or datetimes", path=path, field=column)


def time_checks(column: str, time: pl.Expr, as_float: pl.Expr) -> list[tuple[pl.Expr, str, str]]:
    """The (mask, reason, column) checks of a time column, from `time_exprs`; shared with the streaming engine."""
    out_of_range = time.is_null() & as_float.is_finite().fill_null(False)  # a number, but not an Int64 (e.g. 2**70)
    return [
        (out_of_range, "time value {} is out of range (at most 9223372036854775807)", column),
        (time.is_null() & ~out_of_range, "time value {} is neither a number nor an ISO-8601 time", column),
        (as_float < 0, "time value {} is negative", column),
    ]


def read_table(path: Path, fmt: str, columns: ColumnMap = ColumnMap()) -> RawData:
    """Read a generic event table: csv or tsv with a header, parquet, or jsonl; domain "generic".

    Every column named in `columns` must exist. Times are numbers >= 0, taken in the file's unit (floats are
    truncated), or ISO-8601 text / datetime columns, read as Unix seconds (UTC when no offset is given); without a
    time column, time is the row order. An empty value cell is null.
    """
    fmt = _format(path, fmt)
    named = [columns.user, columns.item, columns.time, columns.event, columns.value]
    df = _load_table(path, fmt, [c for c in named if c is not None], [])  # a column named in the map must exist
    checks = [(_empty(columns.user), "empty user id", columns.user)]
    checks.append((_empty(columns.item), "empty item id", columns.item))
    time = pl.int_range(pl.len(), dtype=pl.Int64)
    if columns.time is not None:
        time, as_float = time_exprs(columns.time, df.schema[columns.time], path)
        checks.extend(time_checks(columns.time, time, as_float))
    out = [pl.col(columns.user).cast(pl.String).alias("user"), pl.col(columns.item).cast(pl.String).alias("item")]
    out.append(time.alias("time"))
    if columns.event is not None:
        out.append(pl.col(columns.event).cast(pl.String).alias("event"))
    if columns.value is not None:
        value = pl.col(columns.value)
        if df.schema[columns.value] == pl.String:
            value = value.str.strip_chars()
        value = value.cast(pl.Float64, strict=False)
        checks.append((value.is_null() & ~_empty(columns.value), "value {} is not a number", columns.value))
        out.append(value.alias("value"))
    _raise_first(df, path, fmt, checks)
    return RawData(df.select(out), None, None, "generic", [path])


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
    named = {"title": columns.title, "text": columns.text, "categories": columns.categories}
    required = [item, *(c for k, c in named.items() if c and k in columns.explicit)]
    optional = [c for c in named.values() if c]
    df = _load_table(path, fmt, required, optional)
    for column in _columns_of(path, fmt):
        if column not in (item, *optional):
            reason = "not mapped to item, title, text or categories"
            warnings.warn(f"{path}: column {column!r} is ignored ({reason})", IgnoredColumnWarning, stacklevel=2)
    repeated = ~pl.col(item).is_first_distinct()
    _raise_first(df, path, fmt, [(_empty(item), "empty item id", item), (repeated, "duplicate item id {}", item)])

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
        pl.col(item).cast(pl.String).alias("item"),
        text_column(columns.title).alias("title"),
        text_column(columns.text).alias("text"),
        cats.alias("categories"),
    )


def _columns_of(path: Path, fmt: str) -> list[str]:
    """The column names of a table file (header of a text file, schema of parquet / the first jsonl records)."""
    try:
        if fmt == "parquet":
            return list(pl.read_parquet_schema(path))
        if fmt == "jsonl":
            return list(pl.scan_ndjson(path).collect_schema())
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot read {fmt}: {e}", path=path) from None
    return next(_csv_reader(path, fmt), [])


# ---- RecBole atomic files -------------------------------------------------------------------------------------

# Field names RecBole's own atomic files use, tried when a map does not name the column.
_RECBOLE_TIME = ("timestamp",)
_RECBOLE_VALUE = ("rating",)
_RECBOLE_TITLE = ("title", "movie_title", "name", "item_name")
_RECBOLE_TEXT = ("text", "description", "abstract")
_RECBOLE_CATEGORIES = ("categories", "class", "genre", "genres", "category")


def _recbole_header(path: Path) -> dict[str, tuple[str, str]]:
    """field name -> (header cell, type) from a `name:type` header (RecBole atomic file, tab separated)."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    header = next(_csv_reader(path, "tsv"), None)
    if not header:
        raise DataError("file is empty", path=path)
    out: dict[str, tuple[str, str]] = {}
    for cell in header:
        name, sep, kind = cell.partition(":")
        if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(
                f"header cell {cell!r} is not name:type (type token, token_seq, float or float_seq)", path=path, line=1
            )
        out[name] = (cell, kind)
    return out


def recbole_files(path: Path) -> tuple[Path, Path | None]:
    """(the .inter file, the .item file beside it or None) of a RecBole atomic data set: a .inter file or a folder."""
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if len(inters) != 1:
            raise DataError(f"expected exactly one .inter file in this folder, found {len(inters)}", path=path)
        path = inters[0]
    if path.suffix != ".inter":
        raise DataError("a RecBole data set is a .inter file (or a folder holding one)", path=path)
    item = path.with_suffix(".item")
    return path, item if item.is_file() else None


def read_recbole(
    path: Path, columns: ColumnMap | None = None, item_columns: ItemColumnMap | None = None, *, items: Path | None = None
) -> RawData:
    """Read RecBole atomic files: `<name>.inter` (events) and, when beside it or given, `<name>.item` (catalogue).

    Both are tab separated with a `field:type` header (https://recbole.io/docs/user_guide/data/atomic_files.html).
    Maps name fields without their type. Defaults: user_id, item_id, timestamp (when present; else the row
    order) and rating as the value (when present); catalogue title from title / movie_title / name, text from
    text / description, categories from categories / class / genre (a token_seq splits on spaces).
    """
    inter, item_path = recbole_files(path)
    item_path = items or item_path
    head = _recbole_header(inter)

    def cell(name: str | None) -> str | None:
        if name is None:
            return None
        if name not in head:
            raise DataError(f"missing field {name!r}; found fields: {', '.join(head)}", path=inter)
        return head[name][0]

    def first(names: tuple[str, ...], table: dict[str, tuple[str, str]]) -> str | None:
        return next((n for n in names if n in table), None)

    given = columns or ColumnMap(time=first(_RECBOLE_TIME, head), value=first(_RECBOLE_VALUE, head))
    mapped = ColumnMap(cell(given.user), cell(given.item), cell(given.time), cell(given.event), cell(given.value))  # type: ignore[arg-type]
    raw = read_table(inter, "tsv", mapped)
    if item_path is None:
        return raw
    item_head = _recbole_header(item_path)
    ic = item_columns or ItemColumnMap()
    chosen = {
        "item": ic.item or given.item,
        "title": ic.title if "title" in ic.explicit else first(_RECBOLE_TITLE, item_head),
        "text": ic.text if "text" in ic.explicit else first(_RECBOLE_TEXT, item_head),
        "categories": ic.categories if "categories" in ic.explicit else first(_RECBOLE_CATEGORIES, item_head),
    }
    missing = [n for n in chosen.values() if n is not None and n not in item_head]
    if missing:
        raise DataError(f"missing field {missing[0]!r}; found fields: {', '.join(item_head)}", path=item_path)
    full = {k: item_head[v][0] if v else None for k, v in chosen.items()}
    seq = chosen["categories"] is not None and item_head[chosen["categories"]][1] == "token_seq"
    explicit = frozenset(k for k, v in full.items() if v)
    catalogue = read_catalogue(
        item_path, "tsv", ItemColumnMap(full["item"], full["title"], full["text"], full["categories"], explicit),
        category_separator=" " if seq else None,
    )  # fmt: skip
    raw.items = catalogue
    raw.source_files.append(item_path)
    return raw


# ---- format inference -----------------------------------------------------------------------------------------


def infer_format(path: Path) -> str:
    """The --format of an events path from its extension (or, for a folder, the files in it); ValueError if unclear."""
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "u.data").is_file() or (path / "ratings.dat").is_file():
            return "movielens"
        if (path / "behaviors.tsv").is_file():
            return "mind"
        if any(path.glob("*.inter")):
            return "recbole"
        found = {_SUFFIXES[p.suffix.lower()] for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES}
        if len(found) == 1:
            return found.pop()
    elif suffix == ".inter":
        return "recbole"
    elif suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    raise ValueError(
        f"{path}: cannot tell the format from the name; give --format (s3rec|movielens|mind|recbole|csv|tsv|parquet|jsonl)"
    )
