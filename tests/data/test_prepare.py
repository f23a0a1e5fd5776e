"""Data preparation: literal inputs with literal expected outputs, then properties over generated event logs."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llmrec.data import SPLITS, PrepareConfig, PreparedDataset, RawData, k_core, prepare

_SCHEMA = {"user": pl.String, "item": pl.String, "time": pl.Int64, "event": pl.String, "value": pl.Float64}


def _raw(rows: list[tuple[Any, ...]], columns: tuple[str, ...] = ("user", "item", "time")) -> RawData:
    """RawData from literal rows, in file order."""
    events = pl.DataFrame(rows, schema={c: _SCHEMA[c] for c in columns}, orient="row")
    return RawData(events=events, items=None, users=None, domain="generic", source_files=[])


def _raw_sequences(ds: PreparedDataset) -> dict[str, list[str]]:
    """Each user's chronological sequence in raw ids: the easiest form to write expected values in."""
    users, items = ds.users["user"].to_list(), ["<pad>", *ds.raw_item_ids()]
    return {users[u]: [items[i] for i in seq] for u, seq in enumerate(ds.sequences)}


def _split_table(ds: PreparedDataset) -> dict[str, tuple[str, int, int, int]]:
    """raw user -> (role, n_train, valid_pos, test_pos)."""
    rows = ds.users.select("user", "role", "n_train", "valid_pos", "test_pos").iter_rows()
    return {u: (role, n, v, t) for u, role, n, v, t in rows}


# ---- filters ---------------------------------------------------------------------------------------------------
def test_prepare_dedupe_drops_repeated_user_item_time() -> None:
    rows = [("a", "1", 10), ("a", "1", 10), ("a", "2", 10), ("a", "1", 11), ("b", "2", 10)]
    assert _raw_sequences(prepare(_raw(rows))) == {"a": ["1", "2", "1"], "b": ["2"]}
    no_dedupe = prepare(_raw(rows), PrepareConfig(dedupe=False))
    assert _raw_sequences(no_dedupe) == {"a": ["1", "1", "2", "1"], "b": ["2"]}


def test_prepare_keep_events_and_min_value_filter() -> None:
    rows = [
        ("a", "1", 1, "click", 1.0),
        ("a", "2", 2, "purchase", 5.0),
        ("a", "3", 3, "view", 4.0),
        ("b", "1", 1, "purchase", 3.0),
        ("b", "3", 2, "click", 4.5),
    ]
    cols = ("user", "item", "time", "event", "value")
    kept = prepare(_raw(rows, cols), PrepareConfig(keep_events=("purchase", "click")))
    assert _raw_sequences(kept) == {"a": ["1", "2"], "b": ["1", "3"]}
    rated = prepare(_raw(rows, cols), PrepareConfig(min_value=4.0))
    assert _raw_sequences(rated) == {"a": ["2", "3"], "b": ["3"]}
    both = prepare(_raw(rows, cols), PrepareConfig(keep_events=("click",), min_value=4.0))
    assert _raw_sequences(both) == {"b": ["3"]}
    assert [s["events"] for s in both.manifest["steps"]] == [5, 2, 1, 1]


def test_prepare_filters_need_their_column() -> None:
    with pytest.raises(ValueError, match="event column"):
        prepare(_raw([("a", "1", 1)]), PrepareConfig(keep_events=("click",)))
    with pytest.raises(ValueError, match="value column"):
        prepare(_raw([("a", "1", 1)]), PrepareConfig(min_value=1.0))
    with pytest.raises(ValueError, match="no events left"):
        prepare(_raw([("a", "1", 1, 2.0)], ("user", "item", "time", "value")), PrepareConfig(min_value=3.0))


def test_k_core_removes_violations_until_fixed_point() -> None:
    # d has 1 event -> item 4 falls to 1 -> c falls to 1 -> item 3 falls to 1 -> a keeps items 1 and 2.
    rows = [
        ("a", "1", 1),
        ("a", "2", 2),
        ("a", "3", 3),
        ("b", "1", 1),
        ("b", "2", 2),
        ("c", "3", 1),
        ("c", "4", 2),
        ("d", "4", 1),
    ]
    kept = k_core(_raw(rows).events, user_core=2, item_core=2)
    assert kept.rows() == [("a", "1", 1), ("a", "2", 2), ("b", "1", 1), ("b", "2", 2)]
    assert k_core(_raw(rows).events, user_core=2, item_core=0).rows() == rows[:7]
    ds = prepare(_raw(rows), PrepareConfig(user_core=2, item_core=2))
    assert _raw_sequences(ds) == {"a": ["1", "2"], "b": ["1", "2"]}


# ---- order and ids ---------------------------------------------------------------------------------------------
def test_prepare_sort_is_stable_for_ties_in_time() -> None:
    # Items 30, 10 and 40 share t=5: they keep file order, whatever their ids.
    rows = [("a", "30", 5), ("a", "10", 5), ("a", "20", 3), ("b", "10", 7), ("a", "40", 5)]
    ds = prepare(_raw(rows))
    assert _raw_sequences(ds) == {"a": ["20", "30", "10", "40"], "b": ["10"]}
    assert [t.tolist() for t in ds.times] == [[3, 5, 5, 5], [7]]
    assert ds.sequences[0].tolist() == [2, 3, 1, 4]  # 10 -> 1, 20 -> 2, 30 -> 3, 40 -> 4


def test_prepare_ids_follow_canonical_order_not_first_appearance() -> None:
    rows = [("u2", "10", 1), ("u10", "9", 1), ("u1", "100", 1), ("u2", "2", 2)]
    ds = prepare(_raw(rows))
    # numeric item ids sort as numbers (2 < 9 < 10 < 100), 1-based: 0 is padding
    assert ds.items.select("item_idx", "item").rows() == [(1, "2"), (2, "9"), (3, "10"), (4, "100")]
    # non-numeric user ids sort as strings, 0-based
    assert ds.users.select("user_idx", "user").rows() == [(0, "u1"), (1, "u10"), (2, "u2")]
    assert [s.tolist() for s in ds.sequences] == [[4], [2], [3, 1]]
    assert ds.n_items == 4 and ds.is_cold_item.tolist() == [False] * 5
    assert ds.item_index("100") == 4 and ds.user_index("u2") == 2
    mixed = prepare(_raw([("a", "b7", 1), ("a", "10", 2), ("a", "9", 3)]))
    assert mixed.raw_item_ids() == ["10", "9", "b7"]  # not all numeric: lexicographic


def test_prepare_keeps_ids_apart_that_are_equal_as_numbers() -> None:
    # "7" and "07" are two items; read as numbers they would merge (and shift every later item's raw id).
    ds = prepare(_raw([("a", "07", 1), ("a", "7", 2), ("a", "8", 3), ("b", "8", 1)]))
    assert ds.raw_item_ids() == ["07", "7", "8"]  # lexicographic, since numeric order cannot tell them apart
    assert _raw_sequences(ds) == {"a": ["07", "7", "8"], "b": ["8"]}


# ---- splits ----------------------------------------------------------------------------------------------------
def test_loo_split_positions() -> None:
    rows = [("a", str(i), i) for i in range(1, 5)] + [("b", "1", 1), ("b", "2", 2)] + [("c", "3", 1)]
    rows += [("d", "4", 1), ("d", "3", 2), ("d", "2", 3)]
    ds = prepare(_raw(rows))
    assert _split_table(ds) == {
        "a": ("train", 2, 2, 3),
        "b": ("train", 1, -1, 1),
        "c": ("train", 1, -1, -1),
        "d": ("train", 1, 1, 2),
    }
    test = ds.eval_examples("test")
    assert test.user_idx.tolist() == [0, 1, 3]
    assert [h.tolist() for h in test.histories] == [[1, 2, 3], [1], [4, 3]]
    assert test.targets.tolist() == [4, 2, 2]
    valid = ds.eval_examples("valid")
    assert valid.user_idx.tolist() == [0, 3] and valid.targets.tolist() == [3, 3]
    assert [s.tolist() for s in ds.train_sequences()] == [[1, 2], [1], [3], [4]]


def test_temporal_split_uses_global_cutoffs() -> None:
    rows = [("a", str(i), t) for i, t in enumerate([1, 5, 12, 15, 22, 30], start=1)]
    rows += [("b", "1", 12), ("b", "2", 25), ("c", "1", 1), ("c", "2", 2), ("c", "3", 3), ("d", "1", 25), ("d", "2", 26)]
    ds = prepare(_raw(rows), PrepareConfig(split="temporal", valid_cutoff=10, test_cutoff=20))
    assert _split_table(ds) == {
        "a": ("train", 2, 2, 4),  # train t<10: 1, 5; valid: first in [10, 20) = 12; test: first >= 20 = 22
        "b": ("train", 0, -1, 1),  # nothing before 10: no validation; the test history is the event at 12
        "c": ("train", 3, -1, -1),  # everything before 10
        "d": ("train", 0, -1, -1),  # everything after 20 with no history before it
    }
    with pytest.raises(ValueError, match="test_cutoff"):
        prepare(_raw(rows), PrepareConfig(split="temporal", valid_cutoff=20, test_cutoff=10))


def test_cold_user_split_holds_users_out_of_training() -> None:
    rows = [(u, str(i), i) for u in "abcdef" for i in range(1, 4)] + [("g", "1", 1)]
    ds = prepare(_raw(rows), PrepareConfig(split="cold-user", cold_user_fraction=0.5, seed=0))
    # round(0.5 * 7) = 4 cold users drawn among those with >= 2 events (not g): 2 validate, 2 test
    assert _split_table(ds) == {
        "a": ("train", 1, 1, 2),
        "b": ("train", 1, 1, 2),
        "c": ("cold_valid", 0, -1, -1),
        "d": ("cold_valid", 0, -1, -1),
        "e": ("cold_test", 0, -1, -1),
        "f": ("cold_test", 0, -1, -1),
        "g": ("train", 1, -1, -1),
    }
    users, seqs = ds.cold_users("cold_valid")
    assert users.tolist() == [2, 3] and [s.tolist() for s in seqs] == [[1, 2, 3], [1, 2, 3]]
    assert [s.tolist() for s in ds.train_sequences()] == [[1], [1], [1]]
    assert ds.eval_examples("test").user_idx.tolist() == [0, 1]  # cold users are evaluated apart
    assert ds.stats()["roles"] == {"cold_test": 2, "cold_valid": 2, "train": 3}


def test_cold_item_split_removes_items_from_training_only() -> None:
    rows = [("a", "1", 1), ("a", "2", 2), ("a", "3", 3), ("a", "4", 4), ("b", "4", 1), ("b", "2", 2), ("b", "1", 3)]
    ds = prepare(_raw(rows), PrepareConfig(split="cold-item", cold_item_fraction=0.5, seed=0))
    assert ds.items.filter(pl.col("is_cold"))["item"].to_list() == ["1", "3"]
    assert ds.is_cold_item.tolist() == [False, True, False, True, False]
    assert [s.tolist() for s in ds.train_sequences()] == [[2], [4]]  # a: [1, 2] minus 1; b: [4]
    test = ds.eval_examples("test")  # evaluation is leave-one-out over the full sequences
    assert test.targets.tolist() == [4, 1] and [h.tolist() for h in test.histories] == [[1, 2, 3], [4, 2]]
    assert ds.item_popularity().tolist() == [0, 0, 1, 0, 1]


def test_prepare_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="split"):
        PrepareConfig(split="random")
    with pytest.raises(ValueError, match="cold_user_fraction"):
        PrepareConfig(cold_user_fraction=1.0)
    with pytest.raises(ValueError, match="user_core"):
        PrepareConfig(user_core=-1)


# ---- persistence -----------------------------------------------------------------------------------------------
def test_save_load_roundtrip_is_identical(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    out = tiny_prepared.save(tmp_path / "tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no temporary folder left behind
    loaded = PreparedDataset.load(out)
    assert [s.tolist() for s in loaded.sequences] == [s.tolist() for s in tiny_prepared.sequences]
    assert [t.tolist() for t in loaded.times] == [t.tolist() for t in tiny_prepared.times]
    assert loaded.users.equals(tiny_prepared.users)
    assert loaded.items.equals(tiny_prepared.items)
    assert loaded.stats() == tiny_prepared.stats() == loaded.manifest["stats"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"]["protocol"] == "loo" and set(manifest["files"]) == {
        "sequences.parquet",
        "users.parquet",
        "items.parquet",
    }
    assert tiny_prepared.stats()["users"] == 20 and tiny_prepared.n_items <= 50


def test_load_refuses_an_altered_file(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    out = tiny_prepared.save(tmp_path / "tiny")
    users = pl.read_parquet(out / "users.parquet")
    users.with_columns(pl.col("test_pos") - 1).write_parquet(out / "users.parquet")  # a quietly moved target
    with pytest.raises(ValueError, match=r"users\.parquet: checksum mismatch"):
        PreparedDataset.load(out)


# ---- properties over generated logs ----------------------------------------------------------------------------
_rows = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 7), st.integers(0, 30)).map(lambda r: (f"u{r[0]}", str(r[1]), r[2])),
    min_size=1,
    max_size=40,
)


def _reference_k_core(rows: list[tuple[str, str, int]], user_core: int, item_core: int) -> list[int]:
    """Indices of the rows kept: drop violating rows until nothing changes, in plain Python."""
    kept = list(range(len(rows)))
    while True:
        users = Counter(rows[i][0] for i in kept)
        items = Counter(rows[i][1] for i in kept)
        survivors = [i for i in kept if users[rows[i][0]] >= user_core and items[rows[i][1]] >= item_core]
        if len(survivors) == len(kept):
            return kept
        kept = survivors


def _largest_core(rows: list[tuple[str, str, int]], user_core: int, item_core: int) -> set[int]:
    """Brute force over every subset of users x items: the union of all rows of valid cores.

    A core is valid when every user and item with a row in it has enough rows; unions of valid cores are
    valid, so this union is the largest core.
    """
    users, items = sorted({r[0] for r in rows}), sorted({r[1] for r in rows})
    best: set[int] = set()
    for u_mask in itertools.product((False, True), repeat=len(users)):
        us = {u for u, m in zip(users, u_mask, strict=True) if m}
        for i_mask in itertools.product((False, True), repeat=len(items)):
            its = {i for i, m in zip(items, i_mask, strict=True) if m}
            idx = [k for k, r in enumerate(rows) if r[0] in us and r[1] in its]
            uc, ic = Counter(rows[k][0] for k in idx), Counter(rows[k][1] for k in idx)
            if all(c >= user_core for c in uc.values()) and all(c >= item_core for c in ic.values()):
                best |= set(idx)
    return best


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 4)).map(lambda r: (f"u{r[0]}", str(r[1]), 0)), min_size=1, max_size=30
    ),
    user_core=st.integers(1, 3),
    item_core=st.integers(1, 3),
)
@example(rows=[("a", "1", 0), ("a", "2", 0), ("b", "2", 0), ("b", "3", 0), ("c", "3", 0)], user_core=2, item_core=2)
def test_k_core_is_k_core_and_maximal(rows: list[tuple[str, str, int]], user_core: int, item_core: int) -> None:
    events = _raw(rows).events.with_row_index("_row")
    kept = k_core(events, user_core, item_core)
    kept_rows = kept["_row"].to_list()
    assert all(n >= user_core for n in Counter(kept["user"].to_list()).values())
    assert all(n >= item_core for n in Counter(kept["item"].to_list()).values())
    assert kept_rows == _reference_k_core(rows, user_core, item_core)
    assert set(kept_rows) == _largest_core(rows, user_core, item_core)


@pytest.mark.parametrize("split", SPLITS)
@settings(max_examples=50, deadline=None)
@given(rows=_rows, cutoffs=st.lists(st.integers(0, 31), min_size=2, max_size=2).map(sorted), fraction=st.floats(0.0, 0.9))
def test_split_invariants(split: str, rows: list[tuple[str, str, int]], cutoffs: list[int], fraction: float) -> None:
    config = PrepareConfig(
        split=split,
        valid_cutoff=cutoffs[0],
        test_cutoff=cutoffs[1],
        cold_user_fraction=fraction,
        cold_item_fraction=fraction,
        seed=len(rows),
    )
    ds = prepare(_raw(rows), config)
    # nothing lost but exact duplicates, nothing invented
    assert sum(len(s) for s in ds.sequences) == len(set(rows))
    assert Counter(itertools.chain.from_iterable(_raw_sequences(ds).values())) == Counter(r[1] for r in set(rows))
    table = ds.users.select("role", "n_train", "valid_pos", "test_pos").rows()
    for times, (role, n_train, valid_pos, test_pos) in zip(ds.times, table, strict=True):
        assert np.all(np.diff(times) >= 0)  # chronological
        assert 0 <= n_train <= len(times)
        for pos in (valid_pos, test_pos):
            if pos >= 0:
                assert n_train <= pos < len(times)  # the target is never a training event
                assert np.all(times[:pos] <= times[pos])  # the history precedes its target
        if valid_pos >= 0 and test_pos >= 0:
            assert valid_pos < test_pos
        if role != "train":
            assert n_train == 0 and valid_pos == test_pos == -1  # cold-start users train on nothing
    train = ds.train_sequences()
    assert not any(ds.is_cold_item[s].any() for s in train)  # cold items never reach training
    if split != "cold-item":
        assert not ds.is_cold_item.any()
    if split != "cold-user":
        assert set(ds.users["role"].to_list()) == {"train"}
