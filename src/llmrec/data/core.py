"""The preparation core shared by the in-memory engine (`prepare`) and the streaming engine (`prepare_streaming`).

Both engines read and validate their input their own way, then hand the filtered events to the same steps:

    filter_steps     keep-events / min-value masks and their manifest step names
    id_map           raw ids -> dense codes, in a canonical order (numeric when every id is an integer, else
                     lexicographic) that never depends on who interacted first (the P5 trap)
    encode_ids       raw ids replaced by their codes
    prepare_events   dedupe → k-core → final indices → split → users/items tables (`PreparedTables`)
    sequence_frames  per part of the events: a stable chronological sort (ties keep file order, so the test
                     targets never move) grouped into per-user item and time lists
    prepared_manifest the manifest, from the same numbers (`sequence_stats`) in both engines

The steps are Polars LazyFrame queries over an `Events` store: `MemoryEvents` holds one DataFrame (the in-memory
engine, collected with Polars' in-memory engine); the streaming engine stores buckets of whole users as temporary
Parquet files and runs each query bucket by bucket with Polars' streaming engine, so its memory follows one bucket.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from llmrec.data.dataset import sequence_stats

__all__ = [
    "IN_MEMORY",
    "SPLITS",
    "SPLIT_DESCRIPTIONS",
    "STREAMING",
    "Engine",
    "Events",
    "MemoryEvents",
    "PrepareConfig",
    "PreparedTables",
    "collect_counts",
    "dedupe",
    "drop_ids",
    "encode_ids",
    "filter_steps",
    "id_map",
    "k_core_rounds",
    "prepare_events",
    "prepared_manifest",
    "sequence_frames",
    "split_positions",
    "temporal_cutoffs",
    "train_event_count",
]

Engine = Literal["in-memory", "streaming"]  # the Polars engines a query runs on (polars types `engine=` as a Literal)
IN_MEMORY: Engine = "in-memory"
STREAMING: Engine = "streaming"

SPLITS = ("loo", "temporal", "cold-user", "cold-item")
SPLIT_DESCRIPTIONS = {
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


# ---- the event store --------------------------------------------------------------------------------------------
class Events(Protocol):
    """Encoded events (_row, user, item, time; codes), stored so that each part holds every event of its users."""

    engine: Engine

    def scan(self) -> pl.LazyFrame:
        """All events."""
        ...

    def parts(self) -> Iterator[pl.LazyFrame]:
        """The events part by part, parts in increasing user code."""
        ...

    def rewrite(self, query: Callable[[pl.LazyFrame], pl.LazyFrame]) -> None:
        """Replace each part by `query(part)` (a query that keeps or drops whole rows, never moving users)."""
        ...


class MemoryEvents:
    """All events in one DataFrame: the store of the in-memory engine."""

    engine: Engine = IN_MEMORY

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def scan(self) -> pl.LazyFrame:
        return self.frame.lazy()

    def parts(self) -> Iterator[pl.LazyFrame]:
        yield self.frame.lazy()

    def rewrite(self, query: Callable[[pl.LazyFrame], pl.LazyFrame]) -> None:
        self.frame = query(self.frame.lazy()).collect(engine=IN_MEMORY)


# ---- filters and ids --------------------------------------------------------------------------------------------
def filter_steps(config: PrepareConfig, *, event: pl.Expr | None, value: pl.Expr | None) -> list[tuple[str, pl.Expr]]:
    """(step name in the manifest, keep mask) of each configured filter, in order; event / value: the event type
    (text) and value (number) of a row, None when the input has no such column."""
    out = []
    if config.keep_events:
        if event is None:
            raise ValueError("keep_events needs an event column (map it with --columns event=...)")
        out.append((f"keep events {list(config.keep_events)}", event.is_in(list(config.keep_events))))
    if config.min_value is not None:
        if value is None:
            raise ValueError("min_value needs a value column (map it with --columns value=...)")
        out.append((f"value >= {config.min_value}", value >= config.min_value))
    return out


def id_map(ids: pl.Series) -> pl.DataFrame:
    """The unique values of `ids` as `key` with `code` (Int32, 0-based) in canonical order.

    Numeric when every id is an integer and distinct ids stay distinct as integers (not both "7" and "07"),
    else lexicographic.
    """
    uniq = ids.unique()
    if uniq.dtype.is_integer():
        ordered = uniq.sort()
    else:
        num = uniq.cast(pl.Int64, strict=False)
        numeric = num.null_count() == 0 and num.n_unique() == len(uniq)
        ordered = uniq.gather(num.arg_sort()) if numeric else uniq.sort()
    return pl.DataFrame({"key": ordered, "code": np.arange(len(ordered), dtype=np.int32)})


def encode_ids(events: pl.LazyFrame, users: pl.DataFrame, items: pl.DataFrame) -> pl.LazyFrame:
    """_row, user, item (codes from the `id_map`s), time."""
    return (
        events.join(users.lazy(), left_on="user", right_on="key")
        .join(items.lazy(), left_on="item", right_on="key", suffix="_item")
        .select("_row", pl.col("code").alias("user"), pl.col("code_item").alias("item"), "time")
    )


# ---- dedupe and k-core ------------------------------------------------------------------------------------------
def dedupe(events: pl.LazyFrame) -> pl.LazyFrame:
    """Repeated (user, item, time) events once: the first in file order (smallest _row).

    Sort-based (neighbours compared after sorting): a hash-based unique() over 10M rows costs ~1.5 GB more peak
    memory. The rows come back sorted by (user, time, item, _row); later steps do not depend on row order.
    """
    events = events.sort("user", "time", "item", "_row")
    same = [pl.col(c) == pl.col(c).shift(1) for c in ("user", "time", "item")]
    return events.filter(~(same[0] & same[1] & same[2]).fill_null(False))


def collect_counts(events: pl.LazyFrame, engine: Engine) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events per user and per item (columns user|item, len), sorted by id."""
    users, items = pl.collect_all([events.group_by(c).len() for c in ("user", "item")], engine=engine)
    return users.sort("user"), items.sort("item")


def drop_ids(events: pl.LazyFrame, users: pl.DataFrame, items: pl.DataFrame) -> pl.LazyFrame:
    """The events of neither a user in `users` nor an item in `items` (anti-joins)."""
    return events.join(users.lazy(), on="user", how="anti").join(items.lazy(), on="item", how="anti")


def k_core_rounds(events: Events, user_core: int, item_core: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Drop users with < user_core and items with < item_core events, round after round, until both hold;
    returns the final `collect_counts`.

    Each round drops everything that violates a bound at once; repeating to a fixed point gives the maximal
    such subset (a union of valid cores is a valid core).
    """
    while True:
        users, items = collect_counts(events.scan(), events.engine)
        bad_users = users.filter(pl.col("len") < user_core) if user_core > 1 else users.clear()
        bad_items = items.filter(pl.col("len") < item_core) if item_core > 1 else items.clear()
        if bad_users.height == 0 and bad_items.height == 0:
            return users, items
        events.rewrite(functools.partial(drop_ids, users=bad_users.select("user"), items=bad_items.select("item")))


# ---- split ------------------------------------------------------------------------------------------------------
def temporal_cutoffs(config: PrepareConfig, quantile: Callable[[float], float]) -> tuple[float, float]:
    """(valid_cutoff, test_cutoff): the configured times, else the 0.8 / 0.9 quantiles of all event times."""
    t1 = config.valid_cutoff if config.valid_cutoff is not None else quantile(0.8)
    t2 = config.test_cutoff if config.test_cutoff is not None else quantile(0.9)
    if t2 < t1:
        raise ValueError(f"test_cutoff ({t2}) must not precede valid_cutoff ({t1})")
    return t1, t2


def split_positions(
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


def _before_cutoffs(events: Events, config: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per user code (sorted), the events before valid_cutoff and before test_cutoff (temporal split)."""
    lf = events.scan()

    def quantile(q: float) -> float:
        return float(lf.select(pl.col("time").quantile(q, "linear")).collect(engine=events.engine).item())

    t1, t2 = temporal_cutoffs(config, quantile)
    before = (
        lf.group_by("user")
        .agg((pl.col("time") < t1).sum().alias("v"), (pl.col("time") < t2).sum().alias("t"))
        .collect(engine=events.engine)
        .sort("user")
    )
    return before["v"].to_numpy(), before["t"].to_numpy()


# ---- the shared pipeline ----------------------------------------------------------------------------------------
@dataclass
class PreparedTables:
    """What `prepare_events` decides: final indices, the split, the users/items tables and the counts."""

    user_index: pl.DataFrame  # user (code), user_idx (0..n-1)
    item_index: pl.DataFrame  # item (code), item_idx (1..n; 0 is padding)
    users: pl.DataFrame  # user, user_idx, role, n_train, valid_pos, test_pos[, attributes]
    items: pl.DataFrame  # item_idx, item, title, text, categories, is_cold
    lengths: np.ndarray  # [n_users] events per user
    item_counts: np.ndarray  # [n_items] events per item
    n_train: np.ndarray  # [n_users]
    is_cold: np.ndarray  # [n_items + 1] bool, index 0 (padding) False

    def stats(self, train_events: int) -> dict[str, Any]:
        return sequence_stats(
            lengths=self.lengths,
            item_counts=self.item_counts,
            train_events=train_events,
            users=self.users,
            n_cold_items=int(self.is_cold.sum()),
        )


def prepare_events(
    events: Events,
    config: PrepareConfig,
    user_map: pl.DataFrame,
    item_map: pl.DataFrame,
    steps: list[dict[str, Any]],
    *,
    catalogue: pl.DataFrame | None = None,
    user_attributes: pl.DataFrame | None = None,
    progress: Callable[[str], object] | None = None,
) -> PreparedTables:
    """Dedupe, k-core, final indices, split and the users/items tables; `events` is rewritten in place and the
    manifest steps are appended to `steps`. user_map / item_map: the `id_map`s the events were encoded with.
    progress: called with a short message before each long step."""
    say = progress or (lambda _msg: None)
    if config.dedupe:
        say("removing repeated events ...")
        events.rewrite(dedupe)
        n = int(events.scan().select(pl.len()).collect(engine=events.engine).item())
        steps.append({"step": "dedupe (user, item, time)", "events": n})
    if config.user_core > 1 or config.item_core > 1:
        say("k-core ...")
        user_counts, item_counts = k_core_rounds(events, config.user_core, config.item_core)
        n = int(user_counts["len"].sum())
        steps.append({"step": f"k-core users>={config.user_core} items>={config.item_core}", "events": n})
    else:
        user_counts, item_counts = collect_counts(events.scan(), events.engine)
    if user_counts.height == 0:
        raise ValueError("no events left after filtering")

    # Surviving ids keep their canonical order: users 0..n-1, items 1..n (0 is padding).
    user_index = user_counts.select("user", pl.int_range(pl.len(), dtype=pl.Int32).alias("user_idx"))
    item_index = item_counts.select("item", (pl.int_range(pl.len(), dtype=pl.Int32) + 1).alias("item_idx"))
    lengths = user_counts["len"].to_numpy().astype(np.int64)
    rng = np.random.default_rng(config.seed)
    before = _before_cutoffs(events, config) if config.split == "temporal" else None
    split = split_positions(lengths, config, rng, before)
    n_items = item_index.height
    is_cold = np.zeros(n_items, dtype=bool)
    if config.split == "cold-item":
        is_cold[rng.permutation(n_items)[: int(round(config.cold_item_fraction * n_items))]] = True

    users = pl.DataFrame(
        {
            "user": user_map["key"].gather(user_counts["user"]).cast(pl.String),
            "user_idx": user_index["user_idx"],
            "role": pl.Series(split["role"].tolist(), dtype=pl.String),
            "n_train": pl.Series(split["n_train"], dtype=pl.Int64),
            "valid_pos": pl.Series(split["valid_pos"], dtype=pl.Int64),
            "test_pos": pl.Series(split["test_pos"], dtype=pl.Int64),
        }
    )
    if user_attributes is not None:
        users = users.join(user_attributes.unique(subset=["user"], keep="first"), on="user", how="left")
    items = pl.DataFrame(
        {
            "item_idx": item_index["item_idx"],
            "item": item_map["key"].gather(item_counts["item"]).cast(pl.String),
            "is_cold": is_cold,
        }
    )
    if catalogue is not None:
        items = items.join(catalogue.unique(subset=["item"], keep="first"), on="item", how="left")
    for col, dtype in (("title", pl.String), ("text", pl.String), ("categories", pl.List(pl.String))):
        if col not in items.columns:
            items = items.with_columns(pl.lit(None, dtype=dtype).alias(col))
    optional = ["available"] if "available" in items.columns else []  # the catalogue's yes/no column (filters)
    items = items.select("item_idx", "item", "title", "text", "categories", "is_cold", *optional).sort("item_idx")
    return PreparedTables(
        user_index=user_index,
        item_index=item_index,
        users=users,
        items=items,
        lengths=lengths,
        item_counts=item_counts["len"].to_numpy().astype(np.int64),
        n_train=split["n_train"],
        is_cold=np.concatenate([[False], is_cold]),
    )


def sequence_frames(events: Events, tables: PreparedTables) -> Iterator[pl.DataFrame]:
    """Per part of `events`: user_idx, items (list of item_idx), times, in user_idx order.

    Stable chronological sort: ties in time keep file order (_row), so the test targets never move.
    """
    for part in events.parts():
        frame = (
            part.join(tables.user_index.lazy(), on="user")
            .join(tables.item_index.lazy(), on="item")
            .sort("user_idx", "time", "_row")
            .select("user_idx", "item_idx", "time")
            .collect(engine=events.engine)
        )
        yield frame.group_by("user_idx", maintain_order=True).agg(
            pl.col("item_idx").alias("items"), pl.col("time").alias("times")
        )


def train_event_count(frame: pl.DataFrame, tables: PreparedTables) -> int:
    """Training events in one `sequence_frames` frame: each user's first n_train items, cold items excluded."""
    lengths = frame["items"].list.len().to_numpy().astype(np.int64)
    flat = frame["items"].explode().to_numpy()
    user = np.repeat(frame["user_idx"].to_numpy(), lengths)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return int(((pos < tables.n_train[user]) & ~tables.is_cold[flat]).sum())


def prepared_manifest(
    *,
    config: PrepareConfig,
    name: str,
    domain: str,
    source: dict[str, Any],
    steps: list[dict[str, Any]],
    stats: dict[str, Any],
    engine: Engine,
) -> dict[str, Any]:
    """manifest.json of a prepared dataset, less the file checksums that `write_prepared` adds."""
    cfg = asdict(config)
    cfg["keep_events"] = list(config.keep_events)
    return {
        "format": "llmrec.prepared/1",
        "name": name,
        "domain": domain,
        "source": source,
        "prepare": cfg,
        "engine": engine,
        "steps": steps,
        "split": {"protocol": config.split, "description": SPLIT_DESCRIPTIONS[config.split]},
        "stats": stats,
    }
