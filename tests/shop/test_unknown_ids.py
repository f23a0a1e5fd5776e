"""Unknown ids in live traffic: skipped and listed by default, the popular items for an unknown user; `strict` refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.recommend import Recommender, UnknownIdError, UnknownIdWarning

runner = CliRunner()


def test_python_skips_unknown_items_and_falls_back_for_unknown_users(shop_artifact: Path) -> None:
    rec = Recommender.load(shop_artifact)
    known = rec.raw_ids[:3]
    with pytest.warns(UnknownIdWarning, match="ignored unknown item ids: nope, zzz"):
        lenient = rec.recommend(history=[known[0], "nope", known[1], "zzz", "nope"], k=5)
    assert lenient == rec.recommend(history=known[:2], k=5)
    assert (lenient.ignored_items, lenient.fallback) == (["nope", "zzz"], None)
    with pytest.warns(UnknownIdWarning, match="unknown user id 'ghost'"):
        ghost = rec.recommend(user="ghost", k=5)
    assert ghost.fallback == "popular" and ghost == rec.recommend(history=[], k=5)
    with pytest.warns(UnknownIdWarning, match="nope; no known item in the history.*fallback: popular"):
        assert rec.recommend(history=["nope"], k=5).fallback == "popular"
    with pytest.raises(UnknownIdError) as items:
        rec.recommend(history=[known[0], "nope"], strict=True)
    assert items.value.ids == ["nope"]
    with pytest.raises(UnknownIdError):
        rec.recommend(user="ghost", strict=True)


def test_http_skips_unknown_items_and_accepts_integer_ids(shop_client: Any) -> None:
    r = shop_client.post("/v1/recommend", json={"history": ["1", "nope", "2"], "k": 3})
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["ignored_items"] == ["nope"] and body["fallback"] is None and body["history_length"] == 2
    assert shop_client.post("/v1/recommend", json={"history": [1, 2]}).status_code == 422  # item ids are strings
    ghost = shop_client.post("/v1/recommend", json={"user_id": "ghost", "k": 3}).json()
    assert ghost["fallback"] == "popular" and len(ghost["items"]) == 3
    as_int = shop_client.post("/v1/recommend", json={"user_id": 7, "k": 3})
    assert as_int.status_code == 200 and as_int.json()["user_id"] == "7" and as_int.json()["fallback"] == "popular"
    strict = shop_client.post("/v1/recommend", json={"history": ["1", "nope"], "strict": True})
    assert (strict.status_code, strict.json()["code"], strict.json()["ids"]) == (422, "unknown_ids", ["nope"])
    batch = shop_client.post("/v1/recommend/batch", json={"requests": [{"user_id": "u01"}, {"user_id": "ghost"}]})
    assert batch.status_code == 200 and [x["fallback"] for x in batch.json()["results"]] == [None, "popular"]


def test_cli_notes_what_it_skipped_and_strict_exits_2(shop_artifact: Path) -> None:
    ok = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--history", "1,nope", "-k", "3", "--json"])
    assert ok.exit_code == 0, ok.output
    assert "ignored unknown item ids: nope" in ok.stderr and len(json.loads(ok.stdout)) == 3
    ghost = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--user", "ghost", "-k", "3"])
    assert ghost.exit_code == 0 and "fallback: popular" in ghost.stderr
    strict = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--user", "ghost", "--strict"])
    assert strict.exit_code == 2 and strict.stderr.startswith("error: ") and "ghost" in strict.stderr
