"""Names where ids mean nothing (titles and categories in batch files and answers) and business rules (filters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.filters import ItemFilter
from llmrec.recommend import Recommender

runner = CliRunner()
UNAVAILABLE = ("3", "7", "11")  # what the shop_prepared fixture (tests/shop/conftest.py) marks out of stock


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_batch_files_carry_titles_and_categories(shop_artifact: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"recs{suffix}"
    r = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--users", "all", "--out", str(out), "-k", "3"])
    assert r.exit_code == 0, r.output
    table = pl.read_parquet(out) if suffix == ".parquet" else pl.read_csv(out, schema_overrides={"item": pl.String})
    assert table.columns == ["user", "rank", "item", "score", "fallback", "title", "categories"]
    row = table.row(0, named=True)
    assert row["title"] == f"Item {row['item']}"
    genre = ("drama", "comedy", "jazz", "rock", "sports")[int(row["item"]) % 5]
    assert row["categories"] == ([genre] if suffix == ".parquet" else genre)
    only = tmp_path / f"title{suffix}"
    r = runner.invoke(
        app, ["recommend", "--model", str(shop_artifact), "--users", "all", "--out", str(only), "--columns", "title"]
    )
    assert r.exit_code == 0, r.output
    assert (pl.read_parquet(only) if suffix == ".parquet" else pl.read_csv(only)).columns[-1] == "title"
    bad = runner.invoke(
        app, ["recommend", "--model", str(shop_artifact), "--users", "all", "--out", str(only), "--columns", "price"]
    )
    assert bad.exit_code == 2 and "unknown column 'price'" in bad.stderr


def test_http_answers_carry_categories(shop_client: Any) -> None:
    items = shop_client.post("/v1/recommend", json={"user_id": "u01", "k": 3}).json()["items"]
    assert all(i["categories"] and i["title"] == f"Item {i['item_id']}" for i in items)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_filtered_top_k_is_the_full_ranking_without_the_blocked_items(shop_artifact: Path, seed: int) -> None:
    rec = Recommender.load(shop_artifact)
    g = torch.Generator().manual_seed(seed)
    user = list(rec.histories)[seed]
    excluded = [rec.raw_ids[int(i)] for i in torch.randperm(rec.n_items, generator=g)[:10]]
    cats = ["jazz"] if seed % 2 else []
    everything = rec.recommend(user=user, k=rec.n_items, include_unavailable=True)
    expected = [r.item_id for r in everything if r.item_id not in excluded and "jazz" not in (r.categories if cats else ())]
    got = rec.recommend(user=user, k=5, exclude_items=excluded, exclude_categories=cats or None, include_unavailable=True)
    assert [r.item_id for r in got] == expected[:5]
    assert [r.score for r in got] == [r.score for r in everything if r.item_id in expected[:5]]


def test_include_rules_and_the_available_column(shop_artifact: Path) -> None:
    rec = Recommender.load(shop_artifact)
    user = "u02"
    by_default = rec.recommend(user=user, k=rec.n_items, exclude_seen=False)
    assert not {r.item_id for r in by_default} & set(UNAVAILABLE)  # never recommended unless asked
    anyway = rec.recommend(user=user, k=rec.n_items, exclude_seen=False, include_unavailable=True)
    assert set(UNAVAILABLE) <= {r.item_id for r in anyway}
    some = rec.recommend(user=user, k=3, include_items=["1", "2", "4", "3"])
    assert {r.item_id for r in some} <= {"1", "2", "4"}  # 3 is unavailable
    jazz = rec.recommend(user=user, k=rec.n_items, include_categories=["jazz"])
    assert jazz and all(r.categories == ("jazz",) for r in jazz)
    batch = rec.recommend_batch([rec.histories[user]] * 2, 3, filters=[ItemFilter(exclude_items=("1",)), None])
    assert "1" not in [r.item_id for r in batch[0]]
    with pytest.raises(TypeError, match="list of ids"):
        rec.recommend(user=user, exclude_items="12")  # type: ignore[arg-type]


def test_filters_over_http_and_the_command_line(shop_client: Any, shop_artifact: Path, tmp_path: Path) -> None:
    body = {"user_id": "u03", "k": 50, "exclude_categories": ["rock"], "exclude_items": ["1"]}
    items = shop_client.post("/v1/recommend", json=body).json()["items"]
    assert items and all("rock" not in i["categories"] and i["item_id"] not in ("1", *UNAVAILABLE) for i in items)
    body = {"user_id": "u03", "k": 50, "include_unavailable": True, "exclude_seen": False}
    anyway = shop_client.post("/v1/recommend", json=body).json()
    assert set(UNAVAILABLE) <= {i["item_id"] for i in anyway["items"]}
    (tmp_path / "skip.txt").write_text("2\n4\n")
    out = tmp_path / "recs.parquet"
    args = ["--users", "all", "--out", str(out), "--exclude-items-file", str(tmp_path / "skip.txt")]
    r = runner.invoke(app, ["recommend", "--model", str(shop_artifact), *args, "--include-categories", "drama,jazz"])
    assert r.exit_code == 0, r.output
    table = pl.read_parquet(out)
    assert not set(table["item"]) & {"2", "4", *UNAVAILABLE}
    assert set(table["categories"].explode()) <= {"drama", "jazz"}


def test_prepare_reads_an_available_column(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("uid,sku,ts\n" + "".join(f"u{u},{i},{u * 10 + j}\n" for u in range(4) for j, i in enumerate("ABCD")))
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("sku,name,in_stock\nA,Mug,yes\nB,Towel,no\nC,Cup,\nD,Jar,1\n")
    out = tmp_path / "data"
    r = runner.invoke(
        app,
        ["data", "prepare", "--events", str(events), "--columns", "user=uid,item=sku,time=ts", "--items", str(catalogue)]
        + ["--item-columns", "title=name,available=in_stock", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    items = pl.read_parquet(out / "items.parquet").sort("item")
    assert items["available"].to_list() == [True, False, None, True]  # empty: not said, served as available
    catalogue.write_text("sku,name,in_stock\nA,Mug,maybe\n")
    bad = runner.invoke(
        app,
        ["data", "prepare", "--events", str(events), "--columns", "user=uid,item=sku,time=ts", "--items", str(catalogue)]
        + ["--item-columns", "title=name,available=in_stock", "--out", str(tmp_path / "bad")],
    )
    assert bad.exit_code == 2 and "'maybe'" in bad.stderr and "not yes/no" in bad.stderr
