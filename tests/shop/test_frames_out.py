"""pandas / Polars out and readable objects: `to_frame()` on recommendations, `repr` of datasets, models and lists."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import polars as pl

from llmrec.data import PreparedDataset
from llmrec.recommend import Recommender


def test_recommendations_to_frame(shop_artifact: Path) -> None:
    rec = Recommender.load(shop_artifact, device="cpu")
    recs = rec.recommend(user="u02", k=4)
    frame = recs.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["user", "rank", "item", "title", "score", "fallback"]
    assert frame["item"].tolist() == [r.item_id for r in recs] and frame["rank"].tolist() == [1, 2, 3, 4]
    assert frame["score"].tolist() == [r.score for r in recs] and set(frame["user"]) == {"u02"}
    assert frame["fallback"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ghost = rec.recommend(user="nobody", k=2).to_polars()
    assert isinstance(ghost, pl.DataFrame) and ghost["fallback"].to_list() == ["popular", "popular"]
    assert rec.recommend(history=[], k=0 + 1).to_polars()["user"].to_list() == [None]


def test_readable_reprs(shop_artifact: Path, shop_prepared: PreparedDataset) -> None:
    rec = Recommender.load(shop_artifact, device="cpu")
    assert repr(rec).startswith(f"Recommender(next-item-lm from {str(shop_artifact)!r}: {rec.n_items} items, 3 unavailable, ")
    assert "seen items excluded, cpu)" in repr(rec)
    recs = rec.recommend(user="u02", k=3)
    lines = repr(recs).splitlines()
    assert lines[0] == "Recommendations for user='u02': 3 items"
    assert lines[1].split()[:2] == ["1", recs[0].item_id] and lines[1].endswith(f"Item {recs[0].item_id}")
    assert repr(shop_prepared) == (
        f"PreparedDataset({shop_prepared.name!r}: {shop_prepared.n_users} users, {shop_prepared.n_items} items, "
        f"{sum(len(s) for s in shop_prepared.sequences)} events; split loo; domain generic)"
    )
