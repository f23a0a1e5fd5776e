"""The preparation core shared by both engines: literal cases of its steps, and byte-identical output of the
in-memory and the streaming engine on a generated log with repeats, k-core removals and ties in time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmrec.data import ColumnMap, PrepareConfig, PreparedDataset, prepare, read_files
from llmrec.data.core import MemoryEvents, dedupe, filter_steps, id_map, k_core_rounds
from llmrec.data.streaming import prepare_streaming

FILES = ("sequences.parquet", "users.parquet", "items.parquet")


def test_id_map_orders_ids_canonically() -> None:
    assert id_map(pl.Series(["10", "9", "2", "9"])).rows() == [("2", 0), ("9", 1), ("10", 2)]  # numeric
    assert id_map(pl.Series(["7", "07", "8"])).rows() == [("07", 0), ("7", 1), ("8", 2)]  # "7" = "07": text
    assert id_map(pl.Series(["b", "a", "B"])).rows() == [("B", 0), ("a", 1), ("b", 2)]
    assert id_map(pl.Series([30, 4], dtype=pl.Int64)).rows() == [(4, 0), (30, 1)]


def test_dedupe_keeps_the_first_repeat_in_file_order() -> None:
    events = pl.LazyFrame({"_row": [0, 1, 2, 3, 4], "user": [1, 0, 1, 1, 0], "item": [5, 5, 5, 6, 5], "time": [3, 3, 3, 3, 4]})
    assert dedupe(events).collect().sort("_row")["_row"].to_list() == [0, 1, 3, 4]


def test_filter_steps_name_each_filter_and_need_their_column() -> None:
    config = PrepareConfig(keep_events=("buy",), min_value=3.0)
    frame = pl.DataFrame({"event": ["buy", "view", "buy"], "value": [5.0, 5.0, 1.0]})
    steps = filter_steps(config, event=pl.col("event"), value=pl.col("value"))
    assert [name for name, _ in steps] == ["keep events ['buy']", "value >= 3.0"]
    assert frame.filter(*(mask for _, mask in steps)).rows() == [("buy", 5.0)]
    with pytest.raises(ValueError, match="min_value needs a value column"):
        filter_steps(config, event=pl.col("event"), value=None)


def test_k_core_rounds_returns_the_final_counts() -> None:
    # u2 (one event) goes, then item 3, then u3 (left with item 2 alone), then item 2: four rounds.
    rows = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 3), (1, 2), (3, 2), (3, 3)]
    store = MemoryEvents(pl.DataFrame(rows, schema=["user", "item"], orient="row"))
    users, items = k_core_rounds(store, 2, 2)
    assert sorted(store.frame.rows()) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert users.rows() == [(0, 2), (1, 2)] and items.rows() == [(0, 2), (1, 2)]


def _log(seed: int, *, int_ids: bool) -> pl.DataFrame:
    """Users with 1 to 12 events, few distinct times (many ties), and 10% of the events sent twice."""
    rng = np.random.default_rng(seed)
    n = 600
    users, items = rng.integers(0, 80, n), rng.zipf(1.6, n) % 60
    times = rng.integers(0, 6, n)
    again = rng.choice(n, n // 10, replace=False)
    order = np.argsort(np.concatenate([np.arange(n), again]), kind="stable")  # a repeat right after its original
    pick = np.concatenate([np.arange(n), again])[order]
    frame = pl.DataFrame({"user_id": users[pick], "item_id": items[pick], "timestamp": times[pick]})
    if int_ids:
        return frame
    return frame.with_columns(pl.format("u{}", "user_id").alias("user_id"), pl.col("item_id").cast(pl.String))


@pytest.mark.parametrize("split", ["loo", "temporal", "cold-user", "cold-item"])
@pytest.mark.parametrize("int_ids", [True, False])
def test_engines_write_byte_identical_datasets(tmp_path: Path, split: str, int_ids: bool) -> None:
    path = tmp_path / "events.parquet"
    _log(7, int_ids=int_ids).write_parquet(path)
    config = PrepareConfig(user_core=3, item_core=3, split=split, cold_user_fraction=0.2, cold_item_fraction=0.2)
    columns = ColumnMap(user="user_id", item="item_id", time="timestamp")
    raw, source = read_files(path, "parquet", columns=columns)
    prepare(raw, config, source=source).save(tmp_path / "memory")
    memory = json.loads((tmp_path / "memory" / "manifest.json").read_text())
    # the log exercises every step: repeats removed, then users and items below the 3-core
    events = [s["events"] for s in memory["steps"]]
    assert events[0] > events[1] > events[2] > 0, memory["steps"]

    one = prepare_streaming(path, "parquet", tmp_path / "one", columns=columns, config=config)  # one bucket
    many = prepare_streaming(path, "parquet", tmp_path / "many", columns=columns, config=config, bucket_events=50)
    assert (memory["engine"], one["engine"], many["engine"]) == ("in-memory", "streaming", "streaming")
    for name in FILES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "memory" / name).read_bytes(), name
    assert {**one, "engine": "in-memory"} == memory
    # many buckets: one row group per bucket, so sequences.parquet differs in layout but not in content
    for name in ("users.parquet", "items.parquet"):
        assert (tmp_path / "many" / name).read_bytes() == (tmp_path / "memory" / name).read_bytes(), name
    skip = {"engine", "files"}
    assert {k: v for k, v in many.items() if k not in skip} == {k: v for k, v in memory.items() if k not in skip}
    a, b = PreparedDataset.load(tmp_path / "memory"), PreparedDataset.load(tmp_path / "many")
    assert len(a.sequences) == len(b.sequences)
    for x, y, tx, ty in zip(a.sequences, b.sequences, a.times, b.times, strict=True):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
        assert tx.dtype == ty.dtype and tx.tobytes() == ty.tobytes()
