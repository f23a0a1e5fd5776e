"""Data: dataset registry, raw readers, preparation into a PreparedDataset."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from llmrec.data.dataset import EvalExamples, PreparedDataset
from llmrec.data.prepare import SPLITS, PrepareConfig, k_core, prepare
from llmrec.data.readers import (
    ColumnMap,
    ItemColumnMap,
    RawData,
    infer_format,
    read_catalogue,
    read_mind,
    read_movielens,
    read_recbole,
    read_s3rec,
    read_table,
)
from llmrec.data.registry import DATASETS, resolve_dataset, sha256_file
from llmrec.data.streaming import prepare_streaming

__all__ = [
    "DATASETS",
    "FORMATS",
    "REGISTRY_PREFIX",
    "SPLITS",
    "ColumnMap",
    "EvalExamples",
    "ItemColumnMap",
    "PrepareConfig",
    "PreparedDataset",
    "RawData",
    "infer_format",
    "k_core",
    "open_dataset",
    "prepare",
    "prepare_streaming",
    "read_dataset",
    "read_files",
    "resolve_dataset",
]

REGISTRY_PREFIX = "registry:"  # --dataset registry:NAME: the registry dataset, even beside a folder NAME
FORMATS = ("s3rec", "movielens", "mind", "recbole", "csv", "tsv", "parquet", "jsonl")


def read_dataset(name: str, path: str | Path | None = None, *, allow_download: bool = True) -> tuple[RawData, dict[str, Any]]:
    """Read a registry dataset by name; returns the raw data and its provenance (origin, files, checksums)."""
    res = resolve_dataset(name, path, allow_download=allow_download)
    if res.spec.format == "s3rec":
        attrs = res.file(res.spec.files[1].name)
        titles = res.file(res.spec.files[2].name) if len(res.spec.files) > 2 else None
        raw = read_s3rec(res.root / res.spec.main_file, attrs, domain=res.spec.domain, titles_path=titles)
    else:
        raw = read_movielens(res.root)
    source = {"dataset": name, "origin": res.origin, "root": str(res.root), "sha256": res.checksums}
    return raw, source


def read_files(
    events: str | Path,
    fmt: str | None = None,
    *,
    items: str | Path | None = None,
    columns: ColumnMap | None = None,
    item_columns: ItemColumnMap | None = None,
    domain: str | None = None,
) -> tuple[RawData, dict[str, Any]]:
    """Read the user's own files in one of FORMATS (None: from the extension); `items` is an optional catalogue file.

    columns maps the events table, item_columns the catalogue (see `ColumnMap`, `ItemColumnMap`).
    """
    events = Path(events)
    fmt = fmt or infer_format(events)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "s3rec":
        raw = read_s3rec(events, Path(items) if items else None, domain=domain or "ecommerce")
    elif fmt == "movielens":
        raw = read_movielens(events)
    elif fmt == "mind":
        raw = read_mind(events)
    elif fmt == "recbole":
        raw = read_recbole(events, columns, item_columns, items=Path(items) if items is not None else None)
    else:
        column_map = columns or ColumnMap()
        raw = read_table(events, fmt, column_map)
        if items is not None:
            raw.items = read_catalogue(Path(items), None, item_columns, default_item=column_map.item)
            raw.source_files.append(Path(items))
    if domain:
        raw.domain = domain
    source = {"files": {str(p): sha256_file(p) for p in raw.source_files if p.is_file()}, "format": fmt}
    return raw, source


def open_dataset(
    dataset: str | Path,
    prepared_root: str | Path,
    *,
    status: Callable[[str], AbstractContextManager[Any]] = nullcontext,
) -> tuple[PreparedDataset, Path]:
    """A prepared dataset folder, or a registry name prepared (leave-one-out, no filters) into `prepared_root`.

    How ``--dataset`` of every command and ``llmrec.train`` / ``llmrec.evaluate`` are read. A prepared folder wins
    over a registry dataset of the same name (``--dataset beauty`` with a prepared ./beauty reads the folder);
    ``registry:beauty`` always means the registry dataset (``./beauty`` always the folder). A registry name
    already prepared into `prepared_root` is read from there (a ``registry:`` in its folder name is left out).
    Returns the dataset and its folder (resolved). status: a context manager factory shown while a registry
    dataset is prepared (the CLI passes a spinner).
    """
    as_path = Path(dataset)
    prepared_root = Path(prepared_root)
    name = str(dataset)
    if name.startswith(REGISTRY_PREFIX):
        name = name.removeprefix(REGISTRY_PREFIX)
        prepared_root = prepared_root.with_name(prepared_root.name.replace(REGISTRY_PREFIX, "", 1))
    elif (as_path / "manifest.json").is_file():
        return PreparedDataset.load(as_path), as_path.resolve()
    if name not in DATASETS:
        raise ValueError(
            f"--dataset {dataset!r} is neither a prepared dataset folder nor a registry name ({', '.join(DATASETS)})"
        )
    if (prepared_root / "manifest.json").is_file():
        return PreparedDataset.load(prepared_root), prepared_root.resolve()
    with status(f"preparing {name} ..."):
        raw, source = read_dataset(name)
        prepared = prepare(raw, source=source)
        prepared.save(prepared_root)
    return prepared, prepared_root.resolve()
