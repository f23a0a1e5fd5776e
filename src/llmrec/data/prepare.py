"""Data preparation: filter → dedupe → k-core → stable chronological sort → id remap → sequences → split.

Everything runs on Polars expressions (no Python loop over events), so a 10M-event log prepares in one pass
of columnar work. The split is stored as three integers per user (see `PreparedDataset`), which covers every
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

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmrec.data.dataset import PreparedDataset, split_lists
from llmrec.data.readers import RawData

__all__ = ["SPLITS", "PrepareConfig", "dataset_name", "k_core", "prepare"]

SPLITS = ("loo", "temporal", "cold-user", "cold-item")
_SPLIT_DESCRIPTIONS = {
    "loo": "leave-one-out: valid target = second-to-last event, test target = last event, the rest trains",
    "temporal": "global time cut-off: train before valid_cutoff; first event in [valid_cutoff, test_cutoff) "
    "validates, first event at or after test_cutoff tests",
    "cold-user": "a random share of users is held out of training (half cold_valid, half cold_test); "
    "the others follow leave-one-out",
    "cold-item": "a random share of items is removed from all training sequences; evaluation is leave-one-out",
}


@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    user_core: int = 0  # keep users with >= user_core events (iteratively, with item_core); 0 = no filter
    item_core: int = 0  # keep items with >= item_core events
    dedupe: bool = True  # drop repeated (user, item, time) events
    keep_events: tuple[str, ...] = ()  # keep only these event types (needs an event column); () = all
    min_value: float | None = None  # keep events whose value >= min_value (e.g. ratings >= 4)
    split: str = "loo"  # one of SPLITS
    valid_cutoff: float | None = None  # temporal: absolute time; None = 0.8 quantile of event times
    test_cutoff: float | None = None  # temporal: absolute time; None = 0.9 quantile of event times
    cold_user_fraction: float = 0.15  # cold-user: share of users held out of training (half valid, half test)
    cold_item_fraction: float = 0.1  # cold-item: share of items held out of training
    seed: int = 0  # for the random cold-user / cold-item draws
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (not used by the pipeline)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        for name in ("cold_user_fraction", "cold_item_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if self.user_core < 0 or self.item_core < 0:
            raise ValueError("user_core and item_core must be >= 0")


def k_core(events: pl.DataFrame, user_core: int, item_core: int) -> pl.DataFrame:
    """Iteratively drop users with < user_core and items with < item_core events until both hold.

    Dropping only what violates the bound, and repeating to a fixed point, gives the maximal such subset.
    """
    while True:
        n = events.height
        if user_core > 1:
            events = events.filter(pl.len().over("user") >= user_core)
        if item_core > 1:
            events = events.filter(pl.len().over("item") >= item_core)
        if events.height == n:
            return events


def _id_order(values: pl.Series) -> tuple[pl.Series, bool]:
    """Unique raw ids in a canonical order, and whether that order is numeric.

    Numeric when every id is an integer and distinct ids stay distinct as integers (not both "7" and "07"),
    else lexicographic. The order never depends on who interacted first, so ids leak nothing about
    sequences (the P5 trap).
    """
    uniq = values.unique()
    num = uniq.cast(pl.Int64, strict=False)
    if num.null_count() == 0 and num.n_unique() == len(uniq):
        return uniq.gather(num.arg_sort()), True
    return uniq.sort(), False


def _dense_ids(values: pl.Series, numeric: bool) -> pl.Series:
    """0-based ids in the order of `_id_order` (a dense rank: no join against a string map needed)."""
    key = values.cast(pl.Int64) if numeric else values
    return (key.rank("dense") - 1).cast(pl.Int32)


def temporal_cutoffs(config: PrepareConfig, quantile: Callable[[float], float]) -> tuple[float, float]:
    """(valid_cutoff, test_cutoff): the configured times, else the 0.8 / 0.9 quantiles of all event times."""
    t1 = config.valid_cutoff if config.valid_cutoff is not None else quantile(0.8)
    t2 = config.test_cutoff if config.test_cutoff is not None else quantile(0.9)
    if t2 < t1:
        raise ValueError(f"test_cutoff ({t2}) must not precede valid_cutoff ({t1})")
    return t1, t2


def _split_positions(
    lengths: np.ndarray,
    config: PrepareConfig,
    rng: np.random.Generator,
    before_cutoffs: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per user (all [n_users]): role, n_train, valid_pos, test_pos.

    before_cutoffs (temporal only): per user, the number of events before valid_cutoff and before test_cutoff.
    """
    n = len(lengths)
    has_test = lengths >= 2
    has_valid = lengths >= 3
    test_pos = np.where(has_test, lengths - 1, -1)
    valid_pos = np.where(has_valid, lengths - 2, -1)
    n_train = lengths - has_test - has_valid
    role = np.array(["train"] * n, dtype=object)
    if config.split == "temporal":
        assert before_cutoffs is not None, "the temporal split needs the counts before the cut-offs"
        n_train, first_test = (np.asarray(c, dtype=np.int64) for c in before_cutoffs)
        valid_pos = np.where((n_train > 0) & (n_train < first_test), n_train, -1)
        test_pos = np.where((first_test > 0) & (first_test < lengths), first_test, -1)
    elif config.split == "cold-user":
        eligible = np.flatnonzero(lengths >= 2)
        n_cold = int(round(config.cold_user_fraction * n))
        cold = rng.permutation(eligible)[: min(n_cold, len(eligible))]
        half = len(cold) // 2
        role[cold[:half]] = "cold_valid"
        role[cold[half:]] = "cold_test"
        n_train[cold] = 0
        valid_pos[cold] = -1
        test_pos[cold] = -1
    return {"role": role, "n_train": n_train, "valid_pos": valid_pos, "test_pos": test_pos}


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
    n_raw = events.height
    steps: list[dict[str, Any]] = [{"step": "read", "events": n_raw}]
    if config.keep_events:
        if "event" not in events.columns:
            raise ValueError("keep_events needs an event column (map it with --columns event=...)")
        events = events.filter(pl.col("event").is_in(list(config.keep_events)))
        steps.append({"step": f"keep events {list(config.keep_events)}", "events": events.height})
    if config.min_value is not None:
        if "value" not in events.columns:
            raise ValueError("min_value needs a value column (map it with --columns value=...)")
        events = events.filter(pl.col("value") >= config.min_value)
        steps.append({"step": f"value >= {config.min_value}", "events": events.height})
    if events.height == 0:
        raise ValueError("no events left after filtering")
    # Integer ids early (canonical raw-id order), so dedupe, k-core, sort and grouping never hash strings.
    item_raw, item_numeric = _id_order(events["item"])
    user_raw, user_numeric = _id_order(events["user"])
    user, item = _dense_ids(events["user"], user_numeric), _dense_ids(events["item"], item_numeric)
    events = events.select("_row", user.alias("user"), item.alias("item"), "time")
    if config.dedupe:
        # Sort-based dedupe (neighbours compared after sorting): a hash-based unique() over 10M rows costs ~1.5 GB
        # more peak memory. Among repeats the first in file order (smallest _row) is kept.
        events = events.sort(["user", "time", "item", "_row"])
        same = [pl.col(c) == pl.col(c).shift(1) for c in ("user", "time", "item")]
        events = events.filter(~(same[0] & same[1] & same[2]).fill_null(False))
        steps.append({"step": "dedupe (user, item, time)", "events": events.height})
    if config.user_core > 1 or config.item_core > 1:
        events = k_core(events, config.user_core, config.item_core)
        steps.append({"step": f"k-core users>={config.user_core} items>={config.item_core}", "events": events.height})
    if events.height == 0:
        raise ValueError("no events left after filtering")

    # Contiguous ids of what survived: items 1..n (0 = padding), users 0..n-1, still in canonical raw-id order.
    kept_items = events["item"].unique().sort()
    kept_users = events["user"].unique().sort()
    item_map = pl.DataFrame({"item": item_raw.gather(kept_items), "item_idx": np.arange(1, len(kept_items) + 1, dtype=np.int32)})
    user_map = pl.DataFrame({"user": user_raw.gather(kept_users), "user_idx": np.arange(len(kept_users), dtype=np.int32)})
    events = events.join(pl.DataFrame({"item": kept_items, "item_idx": item_map["item_idx"]}), on="item").join(
        pl.DataFrame({"user": kept_users, "user_idx": user_map["user_idx"]}), on="user"
    )
    item_order = item_map["item"]

    # Stable chronological sort: ties in time keep file order, so the test targets never move.
    seqs = (
        events.sort(["user_idx", "time", "_row"])
        .group_by("user_idx", maintain_order=True)
        .agg(pl.col("item_idx").alias("items"), pl.col("time").alias("times"))
        .sort("user_idx")
    )
    sequences, times = split_lists(seqs["items"], seqs["times"])
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)

    rng = np.random.default_rng(config.seed)
    before_cutoffs = None
    if config.split == "temporal":
        all_t = np.concatenate(times)
        t1, t2 = temporal_cutoffs(config, lambda q: float(np.quantile(all_t, q)))
        before_cutoffs = (
            np.array([np.searchsorted(t, t1, side="left") for t in times], dtype=np.int64),
            np.array([np.searchsorted(t, t2, side="left") for t in times], dtype=np.int64),
        )
    split = _split_positions(lengths, config, rng, before_cutoffs)
    users = user_map.with_columns(
        pl.Series("role", split["role"].tolist(), dtype=pl.String),
        pl.Series("n_train", split["n_train"], dtype=pl.Int64),
        pl.Series("valid_pos", split["valid_pos"], dtype=pl.Int64),
        pl.Series("test_pos", split["test_pos"], dtype=pl.Int64),
    )
    if raw.users is not None:
        users = users.join(raw.users.unique(subset=["user"], keep="first"), on="user", how="left")

    is_cold = np.zeros(len(item_order), dtype=bool)
    if config.split == "cold-item":
        n_cold = int(round(config.cold_item_fraction * len(item_order)))
        is_cold[rng.permutation(len(item_order))[:n_cold]] = True
    items = item_map.with_columns(pl.Series("is_cold", is_cold))
    if raw.items is not None:
        items = items.join(raw.items.unique(subset=["item"], keep="first"), on="item", how="left")
    for col, dtype in (("title", pl.String), ("text", pl.String), ("categories", pl.List(pl.String))):
        if col not in items.columns:
            items = items.with_columns(pl.lit(None, dtype=dtype).alias(col))
    items = items.select("item_idx", "item", "title", "text", "categories", "is_cold").sort("item_idx")

    cfg = asdict(config)
    cfg["keep_events"] = list(config.keep_events)
    manifest: dict[str, Any] = {
        "format": "llmrec.prepared/1",
        "name": dataset_name(name, source, raw.source_files[0] if raw.source_files else None),
        "domain": raw.domain,
        "source": source or {},
        "prepare": cfg,
        "steps": steps,
        "split": {
            "protocol": config.split,
            "description": _SPLIT_DESCRIPTIONS[config.split],
        },
    }
    ds = PreparedDataset(sequences=sequences, times=times, users=users, items=items, manifest=manifest)
    ds.manifest["stats"] = ds.stats()
    return ds
