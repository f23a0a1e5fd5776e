"""`llmrec.data.dataset.PreparedDataset`: the splits, the counts, and the saved folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import PreparedDataset


def test_splits_hold_out_the_last_two_items(tiny_prepared: PreparedDataset) -> None:
    valid, test = tiny_prepared.eval_examples("valid"), tiny_prepared.eval_examples("test")
    for u, h, t in zip(valid.user_idx, valid.histories, valid.targets, strict=True):
        seq = tiny_prepared.sequences[u]
        np.testing.assert_array_equal(h, seq[:-2])
        assert t == seq[-2]
    for u, h, t in zip(test.user_idx, test.histories, test.targets, strict=True):
        np.testing.assert_array_equal(h, tiny_prepared.sequences[u][:-1])
        assert t == tiny_prepared.sequences[u][-1]
    np.testing.assert_array_equal(tiny_prepared.user_history(int(test.user_idx[0]), "test"), test.histories[0])


def test_train_sequences_never_include_test_targets(tiny_prepared: PreparedDataset) -> None:
    train = tiny_prepared.train_sequences()
    through_valid = tiny_prepared.train_sequences(through="valid")
    assert sum(map(len, through_valid)) - sum(map(len, train)) == len(tiny_prepared.eval_examples("valid").targets)
    for s, v in zip(train, through_valid, strict=True):
        np.testing.assert_array_equal(v[: len(s)], s)
    with pytest.raises(ValueError, match="through must be 'train' or 'valid'"):
        tiny_prepared.train_sequences(through="test")


def test_item_popularity_counts_training_events() -> None:
    import polars as pl

    users = pl.DataFrame(
        {
            "user_idx": [0, 1],
            "user": ["a", "b"],
            "role": ["warm", "warm"],
            "n_train": [2, 1],
            "valid_pos": [2, 1],
            "test_pos": [3, 2],
        }
    )
    items = pl.DataFrame({"item_idx": [1, 2, 3], "item": ["x", "y", "z"], "is_cold": [False, False, False]})
    seqs = [np.array([1, 2, 3, 1]), np.array([2, 3, 1])]
    ds = PreparedDataset(sequences=seqs, times=[np.arange(4), np.arange(3)], users=users, items=items, manifest={})
    np.testing.assert_array_equal(ds.item_popularity(), [0, 1, 2, 0])  # train: [1, 2] and [2]
    assert (ds.item_index("z"), ds.user_index("b"), ds.raw_item_ids()) == (3, 1, ["x", "y", "z"])


def test_save_load_roundtrip_and_a_tampered_file_is_refused(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.errors import ChecksumError

    path = tiny_prepared.save(tmp_path / "data")
    back = PreparedDataset.load(path)
    assert back.n_users == tiny_prepared.n_users and back.n_items == tiny_prepared.n_items
    for a, b in zip(back.sequences, tiny_prepared.sequences, strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(json.loads((path / "manifest.json").read_text())["files"]) == {
        "sequences.parquet",
        "users.parquet",
        "items.parquet",
    }
    (path / "users.parquet").write_bytes((path / "users.parquet").read_bytes() + b"x")
    with pytest.raises(ChecksumError, match="users.parquet: checksum mismatch"):
        PreparedDataset.load(path)
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        PreparedDataset.load(tmp_path)
