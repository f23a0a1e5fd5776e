"""Preparing a dataset folder in one call, choosing the engine: ``llmrec data prepare`` as a library function.

`prepare_folder` reads a registry dataset by name or your own events file(s), filters and splits them
(`PrepareConfig`) and writes a prepared dataset folder atomically. The engine is chosen by `use_streaming`: the
in-memory engine (`llmrec.data.prepare`) for a registry dataset or one file up to ``STREAMING_THRESHOLD`` bytes, the
streaming engine (`llmrec.data.streaming`) for a directory, a glob or a larger file; both write the same folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.data import PrepareConfig

__all__ = ["STREAMING_THRESHOLD", "PreparedFolder", "check_out_dir", "prepare_folder", "use_streaming"]

STREAMING_THRESHOLD = 2**30  # bytes of input above which `data prepare` streams by default


@dataclass(frozen=True)
class PreparedFolder:
    """What `prepare_folder` wrote: the folder, the manifest's statistics and the engine ("streaming" | "in memory")."""

    out: Path
    stats: dict[str, Any]
    engine: str


def check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that is not a prepared dataset (`llmrec.outputs`): saving removes whatever is at
    `out`; and never the current folder or one above it."""
    from llmrec.outputs import check_replaceable, refuse_current_folder, resolve

    refuse_current_folder(resolve(out))
    check_replaceable(out, "dataset")


def use_streaming(streaming: bool | None, dataset: str | None, events: Path | None, fmt: str | None) -> bool:
    """--streaming / --in-memory as given (True / False); by default (None) stream a directory, a glob, or input
    over STREAMING_THRESHOLD bytes. A registry dataset is always read in memory."""
    from llmrec.data.streaming import STREAMING_FORMATS

    if streaming is False or dataset is not None or events is None:
        if streaming and dataset is not None:
            raise ValueError("--streaming goes with --events (parquet, csv or tsv), not with --dataset")
        if streaming is False and events is not None and not events.is_file():
            raise ValueError(f"{events}: the in-memory path reads one file; use --streaming for a directory or glob")
        return False
    if fmt not in STREAMING_FORMATS:
        if streaming:
            raise ValueError(f"--streaming reads {', '.join(STREAMING_FORMATS)}, not --format {fmt}")
        return False
    if streaming or not events.is_file():
        return True
    return events.stat().st_size > STREAMING_THRESHOLD


def prepare_folder(
    out: Path,
    config: PrepareConfig,
    *,
    dataset: str | None = None,
    path: Path | None = None,
    events: Path | None = None,
    fmt: str | None = None,
    items: Path | None = None,
    columns: str | None = None,
    item_columns: str | None = None,
    name: str | None = None,
    domain: str | None = None,
    streaming: bool | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> PreparedFolder:
    """Read `dataset` (a registry name, raw files from `path` if given) or `events` (your own file, folder or glob
    in format `fmt`, inferred from the name when None), prepare it with `config`, and save it to `out`.

    columns / item_columns: ``role=column`` lists (`ColumnMap.parse`, `ItemColumnMap.parse`). streaming: see
    `use_streaming`. progress: called with a short line at each stage (reading, preparing, writing).
    """
    from llmrec.data import DATASETS, ColumnMap, ItemColumnMap, infer_format, prepare, read_dataset, read_files
    from llmrec.data.readers import DOMAINS

    out = out.resolve()
    check_out_dir(out)
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
    if events is not None and fmt is None:
        fmt = infer_format(events)
    item_map = ItemColumnMap.parse(item_columns) if item_columns else None
    column_map = ColumnMap.parse(columns) if columns else None
    if use_streaming(streaming, dataset, events, fmt):
        assert events is not None and fmt is not None  # checked by use_streaming
        from llmrec.data.streaming import prepare_streaming

        manifest = prepare_streaming(
            str(events),
            fmt,
            out,
            columns=column_map,
            config=config,
            items=items,
            item_columns=item_map,
            domain=domain,
            name=name,
            progress=progress,
        )
        return PreparedFolder(out, manifest["stats"], "streaming")
    if dataset is not None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
        raw, source = read_dataset(dataset, path)
        raw.domain = domain or raw.domain
    else:
        assert events is not None and fmt is not None  # one of dataset / events is given
        raw, source = read_files(events, fmt, items=items, columns=column_map, item_columns=item_map, domain=domain)
    progress(f"preparing {raw.events.height:,} events ...")
    prepared = prepare(raw, config, source=source, name=name)
    progress(f"writing {out} ...")
    prepared.save(out)
    return PreparedFolder(out, prepared.manifest["stats"], "in memory")
