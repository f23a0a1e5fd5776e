"""One rule set on every path: the same users, filters and out-of-stock items through `Recommender.recommend`, the
batch file, the HTTP service and the exported ONNX scorer give the same lists; a DataFrame catalogue keeps its
`available` column as a CSV catalogue does."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from llmrec.batch import write_recommendations
from llmrec.filters import ItemFilter, ItemMasks, UnknownCategoryWarning, UnknownIdWarning, apply_masks, seen_matrix
from llmrec.recommend import Recommender

UNAVAILABLE = ("3", "7", "11")  # what the shop_prepared fixture (tests/shop/conftest.py) marks out of stock
RULES: list[dict[str, Any]] = [
    {},
    {"exclude_categories": ["JAZZ"], "exclude_items": ["1", "2"]},  # the catalogue says "jazz"
    {"include_categories": ["Drama", "rock"]},
    {"include_items": [str(i) for i in range(1, 30)], "include_unavailable": True},
]


def _onnx_export(artifact: Path, out: Path) -> Any:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    import importlib.util

    from llmrec.export import export_artifact

    export_artifact(artifact, out, onnx=True, text_embeddings=False)
    spec = importlib.util.spec_from_file_location("shipped_onnx_scorer", out / "onnx_scorer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the shipped copy, which reads the shipped onnx_filters.py
    return module.OnnxScorer(out)


def test_every_door_gives_the_same_lists(shop_artifact: Path, shop_client: Any, tmp_path: Path) -> None:
    rec = Recommender.load(shop_artifact, device="cpu")
    scorer = _onnx_export(shop_artifact, tmp_path / "deploy")
    users = [*list(rec.histories)[:6], "ghost"]
    known = list(rec.histories)[0]
    sku_history = [rec.raw_ids[i - 1] for i in rec.histories[known]][:4] + ["no-such-sku"]
    k = 8
    for rules in RULES:
        f = ItemFilter.of(**rules)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownIdWarning)  # the ghost user: warned about, tested elsewhere
            python = {u: [r.item_id for r in rec.recommend(user=u, k=k, **rules)] for u in users}
            batch_file = tmp_path / "recs.parquet"
            write_recommendations(rec, users, batch_file, k=k, filters=f)
            onnx = {u: [i for i, _ in scorer.recommend(user=u, k=k, **rules)] for u in users}
            onnx_history = [i for i, _ in scorer.recommend(sku_history, k=k, **rules)]
            onnx_empty = [i for i, _ in scorer.recommend([], k=k, **rules)]
            python_history = [r.item_id for r in rec.recommend(history=sku_history, k=k, **rules)]
        table = pl.read_parquet(batch_file)
        batch = {u: table.filter(pl.col("user") == u).sort("rank")["item"].to_list() for u in users}
        http = {
            u: [i["item_id"] for i in shop_client.post("/v1/recommend", json={"user_id": u, "k": k, **rules}).json()["items"]]
            for u in users
        }
        http_history = shop_client.post("/v1/recommend", json={"history": sku_history, "k": k, **rules}).json()
        assert python == batch == http == onnx, rules
        assert python_history == onnx_history == [i["item_id"] for i in http_history["items"]], rules
        assert http_history["ignored_items"] == ["no-such-sku"]
        assert onnx_empty == [r.item_id for r in rec.recommend(history=[], k=k, **rules)] == python["ghost"]
        for u, items in python.items():
            assert items, (u, rules)
            if not f.include_unavailable:
                assert not set(items) & set(UNAVAILABLE), (u, rules)
            cats = {c for i in items for c in rec.item_info(i).categories}
            if f.exclude_categories:
                assert "jazz" not in cats and not {"1", "2"} & set(items)
            if f.include_categories:
                assert cats <= {"drama", "rock"}
            if f.include_items:
                assert set(items) <= set(f.include_items)
            if u in rec.histories and rec.exclude_seen_default:
                assert not set(items) & {rec.raw_ids[i - 1] for i in rec.histories[u]}
        scores = dict(zip(table["user"].to_list(), table["score"].to_list(), strict=True))
        assert scores["ghost"] is None and scores[known] is not None  # a popularity count is not a model score
        assert table.filter(pl.col("user") == "ghost")["fallback"].unique().to_list() == ["popular"]


def test_every_door_keeps_the_new_item_quota(shop_new_artifact: Path, tmp_path: Path) -> None:
    """new_items=2 on every path: the same users (one unknown: the popularity list) and rules give the same lists."""
    from fastapi.testclient import TestClient
    from tests.shop.conftest import NEW_ITEMS

    from llmrec.serve import create_app

    rec = Recommender.load(shop_new_artifact, device="cpu")
    scorer = _onnx_export(shop_new_artifact, tmp_path / "deploy")
    users = [*list(rec.histories)[:6], "ghost"]
    k, n = 8, 2
    with TestClient(create_app(Recommender.load(shop_new_artifact, device="cpu"))) as client:
        for rules in RULES:
            f = ItemFilter.of(**rules)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownIdWarning)
                python = {u: [r.item_id for r in rec.recommend(user=u, k=k, new_items=n, **rules)] for u in users}
                batch_file = tmp_path / "recs.parquet"
                write_recommendations(rec, users, batch_file, k=k, filters=f, new_items=n)
                onnx = {u: [i for i, _ in scorer.recommend(user=u, k=k, new_items=n, **rules)] for u in users}
            table = pl.read_parquet(batch_file)
            batch = {u: table.filter(pl.col("user") == u).sort("rank")["item"].to_list() for u in users}
            body = {"k": k, "new_items": n, **rules}
            http = {
                u: [i["item_id"] for i in client.post("/v1/recommend", json={"user_id": u, **body}).json()["items"]]
                for u in users
            }
            assert python == batch == http == onnx, rules
            for u, items in python.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UnknownIdWarning)
                    plain = [r.item_id for r in rec.recommend(user=u, k=k, **rules)]
                assert items[: k - n] == plain[: k - n], (u, rules)  # the head is the plain list's
                if not rules:  # six new items in stock: at least n of them in every list
                    assert len(set(items) & set(NEW_ITEMS)) >= n, u


def test_the_onnx_scorer_needs_neither_torch_nor_llmrec(shop_artifact: Path, tmp_path: Path, monkeypatch: Any) -> None:
    out = tmp_path / "deploy"
    _onnx_export(shop_artifact, out)
    import importlib.util
    import sys

    for name in [n for n in sys.modules if n == "llmrec" or n.startswith(("llmrec.", "torch"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # an import of either is now an ImportError
    monkeypatch.setitem(sys.modules, "llmrec", None)
    spec = importlib.util.spec_from_file_location("bare_onnx_scorer", out / "onnx_scorer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scorer = module.OnnxScorer(out)
    got = scorer.recommend(user="u01", k=5, exclude_categories=["Jazz"])
    assert len(got) == 5 and not {i for i, _ in got} & set(UNAVAILABLE)
    # the quota runs on the shipped copy of the rules; every item here has events, so it changes nothing
    assert scorer.recommend(user="u01", k=5, exclude_categories=["Jazz"], new_items=2) == got
    with pytest.raises(KeyError, match="nope"):
        scorer.recommend(["nope"], strict=True)
    with pytest.warns(scorer.filters.UnknownCategoryWarning, match="gardening"):
        scorer.recommend(user="u01", k=5, include_categories=["gardening"])


def test_a_dataframe_catalogue_keeps_availability(tmp_path: Path) -> None:
    from tests.conftest import tiny_events

    import llmrec

    rows = tiny_events()
    events = pd.DataFrame(rows, columns=["customer", "sku", "ts", "rating"])
    catalogue = pd.DataFrame(
        {
            "sku": [str(i) for i in range(1, 51)],
            "name": [f"Item {i}" for i in range(1, 51)],
            "in_stock": ["no" if str(i) in UNAVAILABLE else "yes" for i in range(1, 51)],
        }
    )
    data = llmrec.prepare(
        events,
        items=catalogue,
        columns={"user": "customer", "item": "sku", "time": "ts", "value": "rating"},
        item_columns={"title": "name", "available": "in_stock"},
        out=tmp_path / "data",
    )
    assert sorted(data.items.filter(~pl.col("available"))["item"].to_list()) == sorted(UNAVAILABLE)
    masks = ItemMasks.of_items(data.items)
    assert sorted(masks.index[i] for i in UNAVAILABLE) == np.flatnonzero(masks.unavailable).tolist()


def test_apply_masks_is_one_rule_for_numpy_and_torch() -> None:
    import torch

    masks = ItemMasks(["a", "b", "c", "d"], [["Horror"], ["horror", "Drama"], [], ["drama"]], [True, None, False, True])
    f = ItemFilter.of(exclude_categories=["HORROR", "westerns"])
    assert masks.unknown_categories(f) == ["westerns"]
    blocked = [masks.blocked(f), masks.blocked(None)]
    histories = [np.array([4]), np.array([4])]
    as_numpy = apply_masks(np.zeros((2, 5), dtype=np.float32), histories, [True, False], blocked)
    as_torch = apply_masks(torch.zeros(2, 5), histories, [True, False], blocked)
    # row 0: a, b horror (any case), c out of stock, d seen; row 1: the default rule, c out of stock only
    expected = [[True, True, True, True], [False, False, True, False]]
    assert np.isinf(as_numpy[:, 1:]).tolist() == expected
    np.testing.assert_array_equal(as_torch.numpy(), as_numpy)
    assert seen_matrix([np.array([2, 2])], 3).tolist() == [[False, False, True, False]]


def test_unknown_ids_and_categories_warn_in_python(shop_artifact: Path) -> None:
    rec = Recommender.load(shop_artifact, device="cpu")
    with pytest.warns(UnknownCategoryWarning, match="gardening"):
        got = rec.recommend(user="u01", k=5, exclude_categories=["gardening", "JAZZ"])
    assert got.ignored_categories == ["gardening"] and "jazz" not in {c for r in got for c in r.categories}
    with pytest.warns(UnknownIdWarning, match="'u999'.*fallback: popular"):
        assert rec.recommend(user="u999", k=3).fallback == "popular"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty history asked for is no mistake: no warning
        assert rec.recommend(history=[], k=3).fallback == "popular"
