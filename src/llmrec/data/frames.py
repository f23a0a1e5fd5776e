"""Events and catalogues given as pandas or Polars DataFrames, read into `RawData` with the files' column maps.

`raw_from_frames` is what ``llmrec.prepare(events_df, columns={"user": "uid", ...})`` and ``llmrec.train`` use:
the same fields, defaults and checks as ``--events`` / ``--items`` with ``--columns`` / ``--item-columns``
(`llmrec.data.tables`), applied to the frames in memory; nothing is written. A bad cell is a `DataError` naming
the frame, the 0-based row and the column.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from llmrec.data.tables import _YES_NO, ColumnMap, IgnoredColumnWarning, ItemColumnMap, RawData, _yes_no, event_exprs, id_checks
from llmrec.errors import DataError

__all__ = ["as_polars", "column_spec", "is_frame", "raw_from_frames"]

EVENTS, CATALOGUE = "events (DataFrame)", "items (DataFrame)"


def is_frame(obj: object) -> bool:
    """A Polars or pandas DataFrame (pandas is not imported to find out)."""
    return isinstance(obj, pl.DataFrame) or type(obj).__module__.startswith("pandas") and hasattr(obj, "columns")


def as_polars(frame: Any, where: str) -> pl.DataFrame:
    """A Polars DataFrame of a Polars or pandas one (pandas' index is dropped); anything else is a TypeError."""
    if isinstance(frame, pl.DataFrame):
        df = frame
    elif is_frame(frame):
        df = pl.from_pandas(frame)
    else:
        raise TypeError(f"{where} must be a pandas or Polars DataFrame, not {type(frame).__name__}")
    if df.height == 0:
        raise DataError("no rows", path=where)
    return df


def column_spec(columns: Mapping[str, str | None] | str | None) -> str | None:
    """``{"user": "uid", "time": None}`` -> ``"user=uid,time="`` (the `--columns` form, parsed and checked there)."""
    if columns is None or isinstance(columns, str):
        return columns
    if not isinstance(columns, Mapping):
        raise TypeError(f"columns must be a dict such as {{'user': 'uid'}} or 'user=uid,...', not {type(columns).__name__}")
    return ",".join(f"{k}={'' if v is None else v}" for k, v in columns.items())


def _empty(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).cast(pl.String).str.strip_chars().str.len_bytes() == 0)


def _require(df: pl.DataFrame, names: list[str], where: str) -> None:
    if missing := [c for c in names if c not in df.columns]:
        raise DataError(f"missing column {', '.join(map(repr, missing))}; found columns: {', '.join(df.columns)}", path=where)


def _raise_first(df: pl.DataFrame, where: str, checks: list[tuple[pl.Expr, str, str]]) -> None:
    """Raise at the earliest row failing a (mask, reason, column) check; "{}" in a reason becomes the cell."""
    firsts = df.select(mask.fill_null(False).arg_true().first().alias(str(i)) for i, (mask, _, _) in enumerate(checks))
    failed = [(row, i) for i, row in enumerate(firsts.row(0)) if row is not None]
    if failed:
        row, i = min(failed)
        _, reason, column = checks[i]
        raise DataError(reason.format(repr(df[column][row])), path=where, row=row, field=column)


def events_from_frame(df: pl.DataFrame, columns: ColumnMap) -> pl.DataFrame:
    """The `RawData.events` of an events frame (user, item, time [, event, value]), as `read_table` reads a file."""
    _require(df, [c for c in (columns.user, columns.item, columns.time, columns.event, columns.value) if c], EVENTS)
    out, checks = event_exprs(columns, dict(df.schema), Path(EVENTS))
    _raise_first(df, EVENTS, checks)
    return df.select(out)


def catalogue_from_frame(df: pl.DataFrame, columns: ItemColumnMap, default_item: str) -> pl.DataFrame:
    """A catalogue frame in `CATALOGUE_SCHEMA`, as `read_catalogue` reads a file (unmapped columns warn; an
    `available` column, or the one mapped to it, is kept as Boolean for the serving rules)."""
    item = columns.item or next((c for c in (default_item, "item_id") if c in df.columns), default_item)
    named = {"title": columns.title, "text": columns.text, "categories": columns.categories, "available": columns.available}
    _require(df, [item, *(c for k, c in named.items() if c and k in columns.explicit)], CATALOGUE)
    used = {k: c for k, c in named.items() if c and c in df.columns}
    for column in df.columns:
        if column not in (item, *used.values()):
            reason = "not mapped to item, title, text, categories or available"
            warnings.warn(f"{CATALOGUE}: column {column!r} is ignored ({reason})", IgnoredColumnWarning, stacklevel=3)
    [item_text], checks = id_checks({"item": item}, dict(df.schema))
    repeated = ~item_text.is_first_distinct() & ~_empty(item)
    available = used.get("available")
    flag = None if available is None else _yes_no(available, df.schema[available])
    not_yes_no = [] if flag is None or available is None else [(flag.is_null() & ~_empty(available), _YES_NO, available)]
    _raise_first(df, CATALOGUE, [*checks, (repeated, "duplicate item id {}", item), *not_yes_no])

    def text(field: str) -> pl.Expr:
        name = used.get(field)
        return pl.col(name).cast(pl.String).replace("", None) if name else pl.lit(None, pl.String)

    cats: pl.Expr = pl.lit([], pl.List(pl.String))
    if "categories" in used:
        cats = pl.col(used["categories"])
        if not isinstance(df.schema[used["categories"]], pl.List):
            cats = cats.cast(pl.String)
            cats = pl.when(cats.str.contains("|", literal=True)).then(cats.str.split("|")).otherwise(cats.str.split(","))
        kept = pl.element().cast(pl.String).str.strip_chars()
        cats = cats.cast(pl.List(pl.String)).list.eval(kept.filter(kept != "")).fill_null([])
    return df.select(
        item_text.alias("item"),
        text("title").alias("title"),
        text("text").alias("text"),
        cats.alias("categories"),
        *([] if flag is None else [flag.alias("available")]),  # only when the catalogue has the column
    )


def raw_from_frames(
    events: Any,
    *,
    items: Any = None,
    columns: Mapping[str, str | None] | str | None = None,
    item_columns: Mapping[str, str | None] | str | None = None,
    domain: str | None = None,
) -> RawData:
    """`RawData` of an events frame and an optional catalogue frame (pandas or Polars), with the CLI's column maps
    (a dict ``{"user": "uid", "item": "sku", "time": "ts"}`` or the ``"user=uid,..."`` text)."""
    from llmrec.data.tables import DOMAINS

    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
    spec, item_spec = column_spec(columns), column_spec(item_columns)
    if item_spec is not None and items is None:
        raise ValueError("item_columns maps the catalogue: give it with items=")
    column_map = ColumnMap.parse(spec) if spec else ColumnMap()
    frame = events_from_frame(as_polars(events, EVENTS), column_map)
    catalogue = None
    if items is not None:
        item_map = ItemColumnMap.parse(item_spec) if item_spec else ItemColumnMap()
        catalogue = catalogue_from_frame(as_polars(items, CATALOGUE), item_map, column_map.item)
    return RawData(frame, catalogue, None, domain or "generic", [])
