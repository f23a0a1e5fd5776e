"""Batch inference: top-k for many users at once, streamed to a Parquet or CSV file.

    rec = Recommender.load("runs/model")
    write_recommendations(rec, rec.histories, "recs.parquet", k=10)   # every known user

One row per user and rank: ``user``, ``rank``, ``item``, ``score``, ``fallback`` (the user order of `users`, then
rank), then the catalogue's ``title`` and ``categories`` (`columns`; by default those the catalogue has; in a CSV
file the categories are one text cell joined by ``|``). A user the model does not know gets the popular items
(as `Recommender.recommend` does): their rows say ``fallback = "popular"`` and have no score (null: a popularity
count is not on the model's scale), and an `llmrec.filters.UnknownIdWarning` counts them. Users
are scored `chunk_size` at a time and each chunk is appended to the file as it is done, so memory stays flat
whatever the number of users (pyarrow's ParquetWriter / CSVWriter stream row groups). The file is written to a
hidden temporary sibling and renamed into place at the end: an interrupted run leaves no partial file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from llmrec.atomic import atomic_file

if TYPE_CHECKING:
    from llmrec.recommend import Recommendation, Recommender

__all__ = ["CATALOGUE_COLUMNS", "FORMATS", "default_columns", "parse_columns", "read_user_ids", "write_recommendations"]

FORMATS = (".parquet", ".csv")
SCHEMA = pa.schema(
    [("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()), ("score", pa.float32()), ("fallback", pa.string())]
)
CATALOGUE_COLUMNS = ("title", "categories")  # what `columns` may add after the four above


def parse_columns(spec: str) -> tuple[str, ...]:
    """``--columns title,categories`` -> ("title", "categories"); an empty spec adds none."""
    names = tuple(dict.fromkeys(c.strip() for c in spec.split(",") if c.strip()))
    if unknown := [c for c in names if c not in CATALOGUE_COLUMNS]:
        raise ValueError(f"--columns: unknown column {unknown[0]!r}; one of {', '.join(CATALOGUE_COLUMNS)}")
    return names


def default_columns(rec: Recommender) -> tuple[str, ...]:
    """The catalogue columns that hold something: title when any item has one, categories when any has some."""
    return tuple(
        name for name, present in (("title", any(t for t in rec.titles)), ("categories", any(rec.categories))) if present
    )


def _schema(columns: Sequence[str], suffix: str) -> pa.Schema:
    extra = {"title": pa.string(), "categories": pa.list_(pa.string()) if suffix == ".parquet" else pa.string()}
    return pa.schema([*SCHEMA, *((c, extra[c]) for c in columns)])


def read_user_ids(path: str | Path) -> list[str]:
    """A text file of user ids, one per line (blank lines and surrounding spaces ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file of user ids")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (line {line}, byte offset {e.start}); save the user ids as UTF-8") from None
    users = [line.strip() for line in text.splitlines() if line.strip()]
    if not users:
        raise ValueError(f"{path}: no user ids in it")
    return users


def _chunks(users: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(users), size):
        yield users[i : i + size]


def write_recommendations(
    rec: Recommender,
    users: Iterable[str],
    out: str | Path,
    *,
    k: int = 10,
    exclude_seen: bool | None = None,
    chunk_size: int = 1024,
    progress: bool = False,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    **options: Any,
) -> int:
    """Top-k for each of `users` (raw ids) -> `out` (.parquet or .csv); returns the rows written.

    exclude_seen: None = the model's seen-item rule. options: passed on to `Recommender.recommend_batch` (query,
    query_weight, diversity, filters). columns: catalogue columns to add (`CATALOGUE_COLUMNS`; None: those the
    catalogue has). Unknown user ids get the popularity list (an empty history, as `Recommender.recommend`),
    marked in the ``fallback`` column, without a score, and counted in an `UnknownIdWarning`; strict=True raises
    `UnknownIdError` for them before anything is written.
    """
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ValueError(f"{out}: --out must end in .parquet or .csv")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    users = [str(u) for u in users]
    from llmrec.recommend import UnknownIdError

    unknown = [u for u in users if u not in rec.histories]
    if unknown and strict:
        raise UnknownIdError("user", unknown)
    if unknown:
        import warnings

        from llmrec.filters import UnknownIdWarning

        shown = ", ".join(repr(u) for u in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        served = "the popular items (fallback: popular)" if rec.histories else "the model's scores of an empty history"
        warnings.warn(
            f"{len(unknown):,} unknown user ids ({shown}) got {served}; strict=True (--strict) refuses them",
            UnknownIdWarning,
            stacklevel=2,
        )
    rules = options.get("filters")
    rows_rules = rules if isinstance(rules, list | tuple) else [rules]
    if unknown_categories := list(dict.fromkeys(c for f in rows_rules for c in rec.masks.unknown_categories(f))):
        import warnings

        from llmrec.filters import UnknownCategoryWarning

        shown = ", ".join(unknown_categories)
        warnings.warn(f"ignored unknown categories: {shown} (no catalogue item has them)", UnknownCategoryWarning, stacklevel=2)
    columns = default_columns(rec) if columns is None else tuple(columns)
    schema = _schema(columns, out.suffix)
    empty = np.zeros(0, dtype=np.int64)
    rows = 0
    with atomic_file(out) as tmp:  # a complete file or none, with a plain write's permissions
        writer = _writer(tmp, out.suffix, schema)
        bar = _progress(len(users), progress)
        try:
            for chunk in _chunks(users, chunk_size):
                histories = [rec.histories.get(u, empty) for u in chunk]
                lists = rec.recommend_batch(histories, k, exclude_seen=exclude_seen, **options)
                fallback = ["popular" if not len(h) and rec.histories else None for h in histories]
                table = pa.table(
                    {
                        "user": [u for u, recs in zip(chunk, lists, strict=True) for _ in recs],
                        "rank": [r.rank for recs in lists for r in recs],
                        "item": [r.item_id for recs in lists for r in recs],
                        "score": [None if f else r.score for f, recs in zip(fallback, lists, strict=True) for r in recs],
                        "fallback": [f for f, recs in zip(fallback, lists, strict=True) for _ in recs],
                        **{c: _column(c, lists, out.suffix) for c in columns},
                    },
                    schema=schema,
                )
                writer.write_table(table)
                rows += table.num_rows
                if bar is not None:
                    bar.update(len(chunk))
        finally:  # a stopped run too (Ctrl-C, SIGTERM): end the bar's line, so that what follows starts its own
            if bar is not None:
                bar.close()
            writer.close()
    return rows


def _column(name: str, lists: list[list[Recommendation]], suffix: str) -> list[Any]:
    if name == "title":
        return [r.title for recs in lists for r in recs]
    if suffix == ".parquet":
        return [list(r.categories) for recs in lists for r in recs]
    return ["|".join(r.categories) for recs in lists for r in recs]  # CSV has no list cells


def _writer(path: Path, suffix: str, schema: pa.Schema) -> Any:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(path, schema)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="user", desc="recommending")
