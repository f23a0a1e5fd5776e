"""`llmrec.prepare` / `llmrec.train` take pandas or Polars DataFrames with the CLI's column maps, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import tiny_events

import llmrec
from llmrec.errors import DataError


def _frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = tiny_events()
    events = pl.DataFrame({"uid": [r[0] for r in rows], "sku": [r[1] for r in rows], "ts": [r[2] for r in rows]}, strict=False)
    items = pl.DataFrame({"sku": [str(i) for i in range(1, 51)], "name": [f"Item {i}" for i in range(1, 51)], "price": 1.0})
    return events, items


def test_prepare_polars_and_pandas_frames_alike(tmp_path: Path) -> None:
    events, items = _frames()
    columns = {"user": "uid", "item": "sku", "time": "ts"}
    with pytest.warns(UserWarning, match="'price' is ignored"):
        a = llmrec.prepare(events, items=items, columns=columns, item_columns={"title": "name"})
    with pytest.warns(UserWarning, match="'price' is ignored"):
        b = llmrec.prepare(events.to_pandas(), items=items.to_pandas(), columns=columns, item_columns={"title": "name"})
    assert a.n_items == b.n_items and a.manifest["stats"] == b.manifest["stats"]
    assert a.items["title"].drop_nulls().len() == a.n_items
    assert list(tmp_path.iterdir()) == []  # nothing was written anywhere we can see


def test_prepare_frame_bad_cell_names_the_row(tmp_path: Path) -> None:
    events, _ = _frames()
    bad = events.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(-5)).otherwise(pl.col("ts")).alias("ts"))
    with pytest.raises(DataError, match=r"events \(DataFrame\).*row 3.*negative"):
        llmrec.prepare(bad, columns={"user": "uid", "item": "sku", "time": "ts"})
    with pytest.raises(DataError, match="missing column 'user_id'"):
        llmrec.prepare(events)
    with pytest.raises(TypeError):
        llmrec.prepare([1, 2, 3])


def test_train_from_a_frame(tmp_path: Path) -> None:
    events, items = _frames()
    rec = llmrec.train(
        events.to_pandas(),
        out=tmp_path / "model",
        items=items.drop("price"),
        columns={"user": "uid", "item": "sku", "time": "ts"},
        item_columns={"title": "name"},
        epochs=1,
        d_model=16,
        n_layers=1,
        d_ff=32,
        max_seq_len=8,
        progress=False,
        device="cpu",
        threads=1,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no prepared folder written beside the model
    prepared = Path(rec.meta["prepared_path"])
    assert (prepared / "manifest.json").is_file() and Path(os.environ["LLMREC_CACHE_DIR"]) in prepared.parents
    assert rec.recommend(user="u01", k=3) and rec.item_info("1").title == "Item 1"
    assert json.loads((tmp_path / "model" / "training.json").read_text())["threads"] == 1
