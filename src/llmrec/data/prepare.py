"""Data preparation in memory: filter → dedupe → k-core → stable chronological sort → id remap → sequences → split.

The steps are those of `llmrec.data.core`, shared with the streaming engine, run here on one DataFrame with
Polars' in-memory engine (no Python loop over events), so a 10M-event log prepares in one pass of columnar work. The split is stored as three integers per user (see `PreparedDataset`), which covers every
protocol we support:

- ``loo`` (leave-one-out, the protocol of the published tables): valid = second-to-last, test = last event;
- ``temporal``: a global time cut-off; training = events before ``valid_cutoff``, the validation target is the
  user's first event in [valid_cutoff, test_cutoff), the test target the first event at or after test_cutoff;
- ``cold-user``: a random fraction of users is removed from training entirely (half of them for validation,
  half for test), the others follow leave-one-out;
- ``cold-item``: a random fraction of items is removed from every training sequence; evaluation is
  leave-one-out, so some targets are items the model never saw in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from llmrec.data.core import (
    SPLITS,
    MemoryEvents,
    PrepareConfig,
    encode_ids,
    filter_steps,
    id_map,
    k_core_rounds,
    prepare_events,
    prepared_manifest,
    sequence_frames,
    train_event_count,
)
from llmrec.data.dataset import PreparedDataset, split_lists
from llmrec.data.readers import RawData

__all__ = ["SPLITS", "PrepareConfig", "dataset_name", "k_core", "prepare"]


def k_core(events: pl.DataFrame, user_core: int, item_core: int) -> pl.DataFrame:
    """The rows of `events` (any columns with user and item) in the maximal subset where every user has
    >= user_core and every item >= item_core rows, in their original order (`core.k_core_rounds`)."""
    store = MemoryEvents(events.with_row_index("_k_core_order"))
    k_core_rounds(store, user_core, item_core)
    return store.frame.sort("_k_core_order").drop("_k_core_order")


def dataset_name(name: str | None, source: dict[str, Any] | None, first_file: str | Path | None) -> str:
    """A prepared dataset's name: the one given, else the registry name, else the stem of the events file."""
    if name:
        return name
    if source and source.get("dataset"):
        return str(source["dataset"])
    if first_file is not None:
        path = Path(first_file)
        if any(ch in path.name for ch in "*?["):  # a glob: name it after its folder
            path = path.parent
        return path.stem or path.resolve().name or "dataset"
    return "dataset"


def prepare(
    raw: RawData, config: PrepareConfig | None = None, *, source: dict[str, Any] | None = None, name: str | None = None
) -> PreparedDataset:
    """Turn raw events (+ optional catalogue and users) into a PreparedDataset.

    name: recorded in the manifest for report titles (default: the registry name in `source`, else the stem of
    the first file read).
    """
    config = config or PrepareConfig()
    events = raw.events.with_row_index("_row")
    steps: list[dict[str, Any]] = [{"step": "read", "events": events.height}]
    columns = events.columns
    event = pl.col("event") if "event" in columns else None
    value = pl.col("value") if "value" in columns else None
    for step, keep in filter_steps(config, event=event, value=value):
        events = events.filter(keep)
        steps.append({"step": step, "events": events.height})
    if events.height == 0:
        raise ValueError("no events left after filtering")
    user_map, item_map = id_map(events["user"]), id_map(events["item"])
    store = MemoryEvents(encode_ids(events.lazy(), user_map, item_map).collect())
    del events
    tables = prepare_events(store, config, user_map, item_map, steps, catalogue=raw.items, user_attributes=raw.users)
    (frame,) = sequence_frames(store, tables)
    del store
    sequences, times = split_lists(frame["items"], frame["times"])
    manifest = prepared_manifest(
        config=config,
        name=dataset_name(name, source, raw.source_files[0] if raw.source_files else None),
        domain=raw.domain,
        source=source or {},
        steps=steps,
        stats=tables.stats(train_event_count(frame, tables)),
        engine="in-memory",
    )
    return PreparedDataset(sequences=sequences, times=times, users=tables.users, items=tables.items, manifest=manifest)
