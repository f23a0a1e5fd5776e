"""Raw data readers: turn published logs and user tables into one `RawData` shape.

Every reader returns events (user, item, time[, event, value]) in file order, an optional item catalogue
(item, title, text, categories) and optional user attributes. Ids stay the strings written in the file;
mapping them to token ids is `preprocess`'s job.

This module holds the dataset-specific readers (S3-Rec, MovieLens, MIND, RecBole atomic files) and format
inference; the generic tables (csv, tsv, parquet, jsonl), the column maps and `RawData` itself live in
`llmrec.data.tables` and are re-exported here. Bad input raises `DataError` with the file, the 1-based physical
line and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from llmrec.data.tables import (
    CATALOGUE_SCHEMA,
    DOMAINS,
    TABLE_FORMATS,
    TABLE_SUFFIXES,
    ColumnMap,
    IgnoredColumnWarning,
    ItemColumnMap,
    RawData,
    csv_reader,
    find_bad_line,
    raise_at,
    read_catalogue,
    read_table,
    time_checks,
    time_exprs,
)
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

EVENT_TYPES = (pl.String(), pl.String(), pl.Int64(), pl.Float64())  # user, item, time, value
USER_COLUMNS = ("user", "age", "gender", "occupation", "zip")  # MovieLens user attributes
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


def read_s3rec(
    path: Path, attributes_path: Path | None = None, *, domain: str = "ecommerce", titles_path: Path | None = None
) -> RawData:
    """Read an S3-Rec style log (`user item item ...` per line, chronological) and its item2attributes.json.

    There are no timestamps: an event's time is its position in the user's line (0, 1, 2, ...). Attribute
    ids are anonymous, so they become categories "attr_<id>" (first occurrence order, repeats dropped).
    titles_path: an optional RFC 4180 CSV with header ``item_id,asin,title`` (e.g. beauty's ``Beauty_items.csv``)
    giving each item's real title under the log's item ids; empty titles stay missing.
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
    attributes = _read_attributes(attributes_path) if attributes_path is not None else {}
    titles = _read_titles(titles_path) if titles_path is not None else {}
    files = [p for p in (path, attributes_path, titles_path) if p is not None]
    if not attributes and not titles:
        return RawData(_events(rows), None, None, domain, files)
    items = list(dict.fromkeys([*attributes, *titles]))
    catalogue = _catalogue([(item, titles.get(item), None, attributes.get(item, [])) for item in items])
    return RawData(_events(rows), catalogue, None, domain, files)


def _read_titles(path: Path) -> dict[str, str | None]:
    """``item_id,asin,title`` CSV -> {item id: title or None}; a malformed row is one error naming its line."""
    try:
        table = pl.read_csv(path, schema_overrides={"item_id": pl.String(), "asin": pl.String(), "title": pl.String()})
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"cannot read item titles: {str(e).splitlines()[0]}", path=path) from e
    missing = {"item_id", "title"} - set(table.columns)
    if missing:
        raise DataError(f"expected the columns item_id,asin,title; missing {', '.join(sorted(missing))}", path=path)
    titles: dict[str, str | None] = {}
    for line, (item, title) in enumerate(table.select("item_id", "title").iter_rows(), 2):
        if item is None or not item.strip().isdigit():
            raise DataError(f"item_id: expected a positive integer, got {item!r}", path=path, line=line)
        if item in titles:
            raise DataError(f"item_id {item}: listed twice", path=path, line=line)
        titles[item] = title.strip() if title and title.strip() else None
    return titles


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
        if not user.strip():
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
    catalogue: list[tuple[str, str | None, str | None, list[str]]] = []
    lines: dict[str, int] = {}  # news id -> the line it was first seen on
    for line_no, (news, cat, sub, title, abstract, *_) in _records(news_path, "\t", 8):
        if not news.strip() or news in lines:
            reason = f"duplicate news id {news!r} (first on line {lines[news]})" if news in lines else "empty news id"
            raise DataError(reason, path=news_path, line=line_no)
        lines[news] = line_no
        text = f"{title}. {abstract}" if abstract else title or None
        catalogue.append((news, title or None, text, [c for c in (cat, sub) if c]))
    return RawData(_events(list(events)), _catalogue(catalogue), None, "news", [behaviors, news_path])


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
    header = next(csv_reader(path, "tsv"), None)
    if not header:
        raise DataError("file is empty", path=path)
    out: dict[str, tuple[str, str]] = {}
    for cell in header:
        name, sep, kind = cell.partition(":")
        if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(
                f"header cell {cell!r} is not name:type (type token, token_seq, float or float_seq)", path=path, line=1
            )
        if name in out:
            raise DataError(f"field {name!r} appears more than once in the header; rename or drop one", path=path, line=1)
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
        item_path, "tsv", ItemColumnMap(full["item"], full["title"], full["text"], full["categories"], explicit=explicit),
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
        found = {TABLE_SUFFIXES[p.suffix.lower()] for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES}
        if len(found) == 1:
            return found.pop()
    elif suffix == ".inter":
        return "recbole"
    elif suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[suffix]
    raise ValueError(
        f"{path}: cannot tell the format from the name; give --format (s3rec|movielens|mind|recbole|csv|tsv|parquet|jsonl)"
    )
