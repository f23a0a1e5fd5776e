"""Time columns of event tables: numbers, ISO-8601 text or datetimes -> Unix seconds (Int64), with the checks
that name a bad cell. Shared by `llmrec.data.tables` (in memory) and `llmrec.data.streaming`."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec.errors import DataError

__all__ = ["UNIT_MIX", "time_checks", "time_exprs", "time_unit_band", "time_unit_check"]


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


# Unix time in seconds, milliseconds, microseconds, nanoseconds: from 1973 (1e8 s) on, each unit has its own band
# of magnitudes (seconds below 1e11 are before the year 5138; milliseconds from 1e11 on are after 1973 ...).
_UNIT_BANDS = (1e8, 1e11, 1e14, 1e17)


UNIT_MIX = (
    "time value {} is in another unit than the column's first Unix time (seconds and milliseconds mixed?); "
    "use one unit per column"
)


def time_unit_band(time: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(the unit band of each time: 1 seconds, 2 milliseconds, 3 microseconds, 4 nanoseconds; whether the time
    looks like Unix time at all, >= 1e8: small numbers such as ordinals or day counts are never taken for it)."""
    band = pl.sum_horizontal([(time >= edge).cast(pl.Int8) for edge in _UNIT_BANDS])
    return band, time >= _UNIT_BANDS[0]


def time_unit_check(column: str, time: pl.Expr) -> tuple[pl.Expr, str, str]:
    """The (mask, reason, column) check that a time column keeps one unit: the first time that looks like Unix
    time sets the column's unit by its magnitude, and a later one in another band (seconds mixed with
    milliseconds, say) is refused. Sorting mixed units would put every millisecond event after every second one.
    For a table in memory (the whole column at once); the streaming engine asks `time_unit_band` in its passes."""
    band, unix = time_unit_band(time)
    return unix & (band != band.filter(unix).first()), UNIT_MIX, column
