"""The service's `llm_text` option: off unless the service allows it, then the LLM's checked text (a tiny random
Llama folder in place of SmolLM2), with who wrote each reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmrec.recommend import Recommender
from llmrec.serve import create_app


def test_service_llm_text_is_off_by_default_and_checked_when_on(
    recommender: Recommender, tiny_llm: Path, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recommender
    user = next(iter(rec.histories))
    ask = {"user_id": user, "k": 2, "explain": True, "llm_text": True}
    off = make_client(create_app(rec, queries=False))
    r = off.post("/v1/recommend", json=ask)
    assert r.status_code == 422 and "llm_text: the LLM's text is turned off" in r.json()["message"], r.text
    plain = off.post("/v1/recommend", json={**ask, "llm_text": False}).json()
    assert all(i["explanation"]["written_by"] == "template" for i in plain["items"])

    writer = rec.llm_writer(tiny_llm)
    monkeypatch.setattr(rec, "llm_writer", lambda source=None: writer)  # the tiny model in place of SmolLM2
    monkeypatch.setattr("llmrec.index.llm.default_llm_path", lambda: tiny_llm)  # installed or not
    on = make_client(create_app(rec, queries=False, llm_text=True))
    r = on.post("/v1/recommend", json=ask)
    assert r.status_code == 200, r.text
    expected = rec.explain(user=user, k=2, generator=writer)
    got = [i["explanation"] for i in r.json()["items"]]
    assert [g["text"] for g in got] == [e.text for e in expected]
    assert [(g["written_by"], g["fallback"]) for g in got] == [(e.written_by, e.fallback) for e in expected]
    for body, message in [
        ({**ask, "explain": False}, "llm_text: goes with explain"),
        ({**ask, "k": 6}, "llm_text: k 6 is over the limit of 5"),
    ]:
        r = on.post("/v1/recommend", json=body)
        assert r.status_code == 422 and message in r.json()["message"], r.text


def test_service_with_llm_text_refuses_to_start_without_the_llm(
    recommender: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmrec.index import llm

    monkeypatch.setattr(llm, "default_llm_path", lambda: None)
    with pytest.raises(ValueError, match="--llm-text needs the LLM"):
        create_app(recommender, llm_text=True)
    create_app(recommender)  # without llm_text nothing is asked of it
