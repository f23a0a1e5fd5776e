"""The new-item quota (``new_items``, TIGER's cold-item quota): the last n places of a top-k list hold the n
best-scored items with no event in the stored histories, in Python, on the command line and over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.shop.conftest import NEW_ITEMS, UNAVAILABLE
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.recommend import Recommender

runner = CliRunner()
RULES: list[dict[str, Any]] = [
    {},
    {"include_categories": ["Drama", "rock"]},
    {"exclude_items": ["5", "10"], "exclude_categories": ["sports"]},
]


def _passes(rec: Recommender, j: int, rules: dict[str, Any]) -> bool:
    """Whether item j (internal id) may be listed under `rules` (and the stock rule), read off the catalogue."""
    raw, cats = rec.raw_ids[j - 1], set(rec.categories[j - 1])
    if raw in UNAVAILABLE or raw in rules.get("exclude_items", ()):
        return False
    if "include_items" in rules and raw not in rules["include_items"]:
        return False
    if "include_categories" in rules and not cats & {c.lower() for c in rules["include_categories"]}:
        return False
    return not cats & {c.lower() for c in rules.get("exclude_categories", ())}


def _by_hand(rec: Recommender, user: str, k: int, n: int, rules: dict[str, Any]) -> list[str]:
    """The n best-scored new items that the top k-n listable items (by the model's score) do not hold, after the
    best-scored other items (the top k-n, and more when fewer than n new items are left)."""
    h = rec.histories[user]
    scores = rec.score_batch([h])[0].tolist()
    seen = set(h.tolist()) if rec.exclude_seen_default else set()
    listable = [j for j in range(1, rec.n_items + 1) if j not in seen and _passes(rec, j, rules)]
    ranked = sorted(listable, key=lambda j: (-scores[j], j))
    quota = [j for j in ranked if rec.raw_ids[j - 1] in NEW_ITEMS and j not in ranked[: k - n]][:n]
    rest = [j for j in ranked if j not in quota][: k - len(quota)]
    return [rec.raw_ids[j - 1] for j in rest + quota]


def test_the_last_places_hold_the_best_scored_new_items(shop_new_artifact: Path) -> None:
    rec = Recommender.load(shop_new_artifact, device="cpu")
    assert sorted(rec.raw_ids[j - 1] for j in rec.new_item_mask().nonzero()[0]) == sorted(NEW_ITEMS)
    k, changed = 8, 0
    for user in list(rec.histories)[:8]:
        for rules in RULES:
            plain = rec.recommend(user=user, k=k, **rules)
            assert [r.item_id for r in rec.recommend(user=user, k=k, new_items=0, **rules)] == [r.item_id for r in plain]
            got = rec.recommend(user=user, k=k, new_items=2, **rules)
            assert [r.item_id for r in got] == _by_hand(rec, user, k, 2, rules), (user, rules)
            assert [r.rank for r in got] == list(range(1, k + 1))
            listable_new = [i for i in NEW_ITEMS if _passes(rec, rec.item_index[i], rules)]
            assert len({r.item_id for r in got} & set(NEW_ITEMS)) >= min(2, len(listable_new))
            assert not {r.item_id for r in got} & set(UNAVAILABLE)
            scores = rec.score_batch([rec.histories[user]])[0]
            for r in got:  # the quota's items keep their own score
                assert r.score == pytest.approx(float(scores[rec.item_index[r.item_id]]))
            changed += [r.item_id for r in got] != [r.item_id for r in plain]
    assert changed  # the tiny model ranks some new items out of some top-8s: the quota brings them in


def test_new_items_is_checked_and_may_fill_the_list(shop_new_artifact: Path) -> None:
    rec = Recommender.load(shop_new_artifact, device="cpu")
    user = next(iter(rec.histories))
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="new_items"):
            rec.recommend(user=user, k=3, new_items=bad)
    for wrong in (1.5, True, "2"):
        with pytest.raises(TypeError, match="new_items"):
            rec.recommend(user=user, k=3, new_items=wrong)  # type: ignore[arg-type]
    # with diversity the head is the re-ranked list's, the quota the best-scored new items after it
    mixed = [r.item_id for r in rec.recommend(user=user, k=6, diversity=0.5, new_items=2)]
    assert mixed[:4] == [r.item_id for r in rec.recommend(user=user, k=6, diversity=0.5)][:4]
    assert mixed[4:] == [i for i in _by_hand(rec, user, 6, 6, {}) if i not in mixed[:4]][:2]  # new items by score
    explained = rec.explain(user=user, k=4, new_items=2)
    assert [e.recommendation.item_id for e in explained] == _by_hand(rec, user, 4, 2, {})
    every = rec.recommend(user=user, k=3, new_items=3)
    assert [r.item_id for r in every] == _by_hand(rec, user, 3, 3, {})
    assert {r.item_id for r in every} <= set(NEW_ITEMS)
    # fewer new items left than places: the model's ranking fills the rest
    only_two = {"include_items": ["5", "8", "1", "2", "3", "4", "6", "9", "11", "12"]}
    got = [r.item_id for r in rec.recommend(user=user, k=6, new_items=4, **only_two)]
    assert got == _by_hand(rec, user, 6, 4, only_two) and len(got) == 6
    assert set(got[-2:]) == {"5", "8"} and not set(got[:-2]) & set(NEW_ITEMS)


def test_command_line_and_service_give_the_python_list(shop_new_artifact: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from llmrec.serve import create_app

    rec = Recommender.load(shop_new_artifact, device="cpu")
    users = list(rec.histories)[:4]
    python = {
        u: [r.item_id for r in rec.recommend(user=u, k=8, new_items=2, include_categories=["drama", "rock"])] for u in users
    }
    model = ["--model", str(shop_new_artifact)]
    for u in users:
        r = runner.invoke(
            app, ["recommend", *model, "--user", u, "-k", "8", "--new-items", "2", "--include-categories", "drama,rock", "--json"]
        )
        assert r.exit_code == 0, r.output
        assert [row["item_id"] for row in json.loads(r.stdout)] == python[u]
    out = tmp_path / "recs.parquet"
    ids = tmp_path / "users.txt"
    ids.write_text("\n".join(users) + "\n")
    r = runner.invoke(
        app,
        [
            "recommend",
            *model,
            "--users",
            str(ids),
            "--out",
            str(out),
            "-k",
            "8",
            "--new-items",
            "2",
            "--include-categories",
            "drama,rock",
        ],
    )
    assert r.exit_code == 0, r.output
    table = pl.read_parquet(out)
    assert {u: table.filter(pl.col("user") == u).sort("rank")["item"].to_list() for u in users} == python
    bad = runner.invoke(app, ["recommend", *model, "--user", users[0], "-k", "8", "--new-items", "9"])
    assert bad.exit_code == 2 and bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("error: --new-items must be in 0..k (8)") and "Traceback" not in bad.output
    bad_batch = runner.invoke(app, ["recommend", *model, "--users", "all", "--out", str(tmp_path / "x.csv"), "--new-items", "-1"])
    assert bad_batch.exit_code == 2 and "--new-items" in bad_batch.stderr and not (tmp_path / "x.csv").exists()

    with TestClient(create_app(Recommender.load(shop_new_artifact, device="cpu"))) as client:
        rules = {"include_categories": ["drama", "rock"]}
        for u in users:
            got = client.post("/v1/recommend", json={"user_id": u, "k": 8, "new_items": 2, **rules})
            assert got.status_code == 200 and [i["item_id"] for i in got.json()["items"]] == python[u]
        plain = [r.item_id for r in rec.recommend(user=users[0], k=5)]
        mixed = client.post(  # one call, requests with and without the quota and with other k: each its own list
            "/v1/recommend/batch",
            json={"requests": [{"user_id": u, "k": 8, "new_items": 2, **rules} for u in users] + [{"user_id": users[0], "k": 5}]},
        )
        assert mixed.status_code == 200, mixed.text
        lists = [[i["item_id"] for i in res["items"]] for res in mixed.json()["results"]]
        assert lists == [python[u] for u in users] + [plain]
        for body in ({"k": 3, "new_items": 4}, {"k": 3, "new_items": -1}, {"k": 3, "new_items": 1.5}):
            refused = client.post("/v1/recommend", json={"user_id": users[0], **body})
            assert refused.status_code == 422 and "new_items" in refused.text, refused.text


def test_items_a_cold_item_split_held_out_are_new(tiny_raw: Any, tmp_path: Path) -> None:
    """A cold-item split keeps its held-out items' validation and test events in the stored histories; the model
    never trained on them, so they are new items all the same, in Python and in the exported ONNX scorer."""
    from tests.shop.conftest import TINY_MODEL
    from tests.shop.test_rules_everywhere import _onnx_export

    from llmrec.data import PrepareConfig, prepare
    from llmrec.training import build_model, save_artifact

    data = prepare(tiny_raw, PrepareConfig(split="cold-item", cold_item_fraction=0.1))
    model = build_model(data, TINY_MODEL, seed=0)[0].eval()
    path = save_artifact(model, data, tmp_path / "model")
    rec = Recommender.load(path, device="cpu")
    cold = set(data.is_cold_item.nonzero()[0].tolist())
    assert cold and set(rec.new_item_mask().nonzero()[0].tolist()) == cold
    # their events are stored: the stored histories alone would not tell them
    assert any(set(h.tolist()) & cold for h in rec.histories.values())
    users = list(rec.histories)[:5]
    python = {u: [r.item_id for r in rec.recommend(user=u, k=6, new_items=2)] for u in users}
    for u, items in python.items():
        assert {rec.item_index[i] for i in items[-2:]} <= cold, u
    scorer = _onnx_export(path, tmp_path / "deploy")
    assert {u: [i for i, _ in scorer.recommend(user=u, k=6, new_items=2)] for u in users} == python
