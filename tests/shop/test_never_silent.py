"""Filters and ids never fail silently: categories match whatever their case, and an unknown category or user id
is reported on each door (a `warning:` line, a Python warning, `ignored_categories` / `fallback` over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import llmrec
from llmrec.cli import app
from llmrec.recommend import Recommender

runner = CliRunner()


def _categories(rec: Recommender, items: list[str]) -> set[str]:
    return {c for i in items for c in rec.item_info(i).categories}


def test_cli_categories_match_any_case_and_unknown_ones_are_a_warning_line(shop_artifact: Path) -> None:
    rec = Recommender.load(shop_artifact, device="cpu")
    base = ["recommend", "--model", str(shop_artifact), "--user", "u01", "-k", "10", "--json"]
    plain = runner.invoke(app, base)
    assert plain.exit_code == 0 and "warning" not in plain.stderr
    assert "jazz" in _categories(rec, [r["item_id"] for r in json.loads(plain.stdout)])  # the filter has work to do
    upper = runner.invoke(app, [*base, "--exclude-categories", "JAZZ,Westerns"])
    assert upper.exit_code == 0, upper.output
    assert "jazz" not in _categories(rec, [r["item_id"] for r in json.loads(upper.stdout)])
    assert "warning: ignored unknown categories: Westerns" in upper.stderr
    ghost = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--user", "ghost", "-k", "3"])
    assert ghost.exit_code == 0 and "warning: unknown user id 'ghost'" in ghost.stderr


def test_batch_cli_warns_about_unknown_users(shop_artifact: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("u01\nghost\n")
    out = tmp_path / "recs.csv"
    r = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--users", str(users), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "warning: 1 unknown user ids ('ghost') got the popular items" in r.stderr


def test_http_reports_ignored_categories_and_explains_with_filters(shop_client: Any) -> None:
    body = shop_client.post("/v1/recommend", json={"user_id": "u01", "k": 5, "exclude_categories": ["JAZZ", "nope"]}).json()
    assert body["ignored_categories"] == ["nope"]
    assert all("jazz" not in i["categories"] for i in body["items"])
    explained = shop_client.post(
        "/v1/recommend", json={"user_id": "u01", "k": 3, "explain": True, "include_categories": ["Drama"]}
    )
    assert explained.status_code == 200, explained.json()
    items = explained.json()["items"]
    assert items and all(i["categories"] == ["drama"] and i["explanation"]["text"] for i in items)


def test_python_explain_takes_the_rules_and_the_table_lists_only_cited_items(shop_artifact: Path) -> None:
    rec = Recommender.load(shop_artifact, device="cpu")
    explained = rec.explain(user="u01", k=4, exclude_categories=["DRAMA"], exclude_items=["5"])
    assert explained and all("drama" not in e.recommendation.categories for e in explained)
    assert all(e.recommendation.item_id != "5" for e in explained)
    for e in explained:
        assert set(e.cited) <= {c.item_id for c in e.contributions}
        assert all((c.title or c.item_id) in e.text for c in e.contributions if c.item_id in e.cited)
    with pytest.warns(llmrec.UnknownCategoryWarning, match="Westerns"):
        rec.explain(user="u01", k=2, include_categories=["Westerns", "rock"])
    r = runner.invoke(
        app, ["explain", "--model", str(rec.path), "--user", "u01", "-k", "3", "--exclude-categories", "jazz", "--json"]
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows and all(
        "jazz" not in row["categories"] and set(row["because_of"]) <= {c["item_id"] for c in row["contributions"]} for row in rows
    )


def test_explain_handles_unknown_ids_as_recommend_does(shop_artifact: Path) -> None:
    from llmrec.errors import UnknownIdError

    rec = Recommender.load(shop_artifact, device="cpu")
    known = [rec.raw_ids[i - 1] for i in rec.histories["u01"]][:3]
    with pytest.warns(llmrec.UnknownIdWarning, match="no-such-sku"):
        skipped = rec.explain(history=[*known, "no-such-sku"], k=3)
    assert [e.recommendation.item_id for e in skipped] == [e.recommendation.item_id for e in rec.explain(history=known, k=3)]
    with pytest.warns(llmrec.UnknownIdWarning, match="unknown user id 'ghost'.*fallback: popular"):
        ghost = rec.explain(user="ghost", k=2)
    assert [e.recommendation.item_id for e in ghost] == [r.item_id for r in rec.recommend(history=[], k=2)]
    with pytest.raises(UnknownIdError):
        rec.explain(user="ghost", strict=True)


def test_batch_warns_about_unknown_categories(shop_artifact: Path, tmp_path: Path) -> None:
    from llmrec.filters import ItemFilter

    rec = Recommender.load(shop_artifact, device="cpu")
    with pytest.warns(llmrec.UnknownCategoryWarning, match="ignored unknown categories: Westerns"):
        llmrec.write_recommendations(
            rec, ["u01"], tmp_path / "r.csv", k=3, filters=ItemFilter.of(exclude_categories=["Westerns", "JAZZ"])
        )
