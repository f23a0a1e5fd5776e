"""Fixtures of the shop tests: the tiny catalogue (tests/conftest.py) with an `available` column, a tiny next-item LM
artifact over it, and its service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from llmrec.data import PreparedDataset, RawData

TINY_MODEL = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
UNAVAILABLE = ("3", "7", "11")  # raw ids the catalogue marks out of stock


@pytest.fixture
def shop_prepared(tiny_raw: RawData) -> PreparedDataset:
    from llmrec.data import PrepareConfig, prepare

    assert tiny_raw.items is not None
    items = tiny_raw.items.with_columns((~pl.col("item").is_in(UNAVAILABLE)).alias("available"))
    tiny_raw.items = items
    return prepare(tiny_raw, PrepareConfig(split="loo"))


@pytest.fixture
def shop_artifact(shop_prepared: PreparedDataset, tmp_path: Path) -> Path:
    from llmrec.training import build_model, save_artifact

    model = build_model(shop_prepared, TINY_MODEL, seed=0)[0].eval()
    return save_artifact(model, shop_prepared, tmp_path / "model")


@pytest.fixture
def shop_client(shop_artifact: Path) -> Any:
    from fastapi.testclient import TestClient

    from llmrec.recommend import Recommender
    from llmrec.serve import create_app

    client: TestClient = TestClient(create_app(Recommender.load(shop_artifact, device="cpu")))
    with client:
        yield client


# Raw ids whose events shop_new_artifact's stored histories drop: items the model scores but no user has had ("new"
# items); drama 5, 10, 20, rock 8, 13, sports 24, and 7 (jazz) is out of stock.
NEW_ITEMS = ("5", "7", "8", "10", "13", "20", "24")


@pytest.fixture
def shop_new_artifact(shop_artifact: Path) -> Path:
    """shop_artifact whose stored histories hold no event with NEW_ITEMS (its manifest written again)."""
    from llmrec.artifact import write_manifest

    items = pl.read_parquet(shop_artifact / "items.parquet")
    dropped = items.filter(pl.col("item").is_in(NEW_ITEMS))["item_idx"].to_list()
    histories = pl.read_parquet(shop_artifact / "histories.parquet")
    histories = histories.with_columns(pl.col("items").list.eval(pl.element().filter(~pl.element().is_in(dropped))))
    histories.write_parquet(shop_artifact / "histories.parquet")
    write_manifest(shop_artifact)
    return shop_artifact
