"""The demo page's "reasons written by the LLM" box in headless Chromium: offered only when the service allows it,
and each reason says who wrote it (a tiny random Llama folder in place of SmolLM2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.serve.test_serve_demo_page import page  # noqa: F401 - the headless Chromium fixture

from llmrec.recommend import Recommender
from llmrec.serve import create_app


def test_demo_page_offers_llm_text_only_when_the_service_allows_it(
    page: Any,  # noqa: F811 - the fixture imported above
    recommender: Recommender,
    live_server: Any,
    tiny_llm: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off = live_server(create_app(recommender))
    page.goto(off + "/")
    page.wait_for_selector("#examples button")
    assert page.locator("#llm-text-box").is_hidden()

    writer = recommender.llm_writer(tiny_llm)
    monkeypatch.setattr(recommender, "llm_writer", lambda source=None: writer)
    monkeypatch.setattr("llmrec.index.llm.default_llm_path", lambda: tiny_llm)  # installed or not
    on = live_server(create_app(recommender, llm_text=True))
    page.goto(on + "/")
    page.wait_for_selector("#llm-text-box:not([hidden])")
    page.check("#llm-text")
    page.fill("#k", "3")
    page.fill("#user-id", "u03")
    page.click("#recommend-user")
    page.wait_for_selector("#results:not([hidden]) tbody tr")
    expected = recommender.explain(user="u03", k=3, generator=writer)
    who = [
        " (written by the LLM)" if e.written_by == "llm" else f" (the template's; the LLM's text was not used: {e.fallback})"
        for e in expected
    ]
    shown = page.locator("#results tbody td.title .why").all_text_contents()
    assert shown == [e.text + w for e, w in zip(expected, who, strict=True)]
