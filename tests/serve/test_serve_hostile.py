"""Hostile input to the service: loose JSON types, bodies that are not UTF-8, paths that would grow /metrics,
explain batches that would hold the model thread, and requests still running when the graceful shutdown ends."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from llmrec.recommend import Recommender


@pytest.mark.parametrize("k", ["3", True, 3.0])
def test_k_must_be_a_json_integer(client: TestClient, k: Any) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u01", "k": k})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_request"
    assert r.json()["errors"][0]["loc"][-1] == "k"


@pytest.mark.parametrize("field", ["exclude_seen", "explain"])
def test_flags_must_be_json_booleans(client: TestClient, field: str) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u01", field: "true"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id": "u\xff01"}',  # a byte that is no UTF-8
        '{"user_id": "u01"}'.encode("utf-16"),  # UTF-16 with a BOM: Python's json would decode it
    ],
)
def test_a_body_that_is_not_utf8_is_400(client: TestClient, body: bytes) -> None:
    r = client.post("/v1/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["code"] == "http_error"
    assert "UTF-8" in r.json()["message"]


def test_malformed_json_in_utf8_stays_422(client: TestClient) -> None:
    r = client.post("/v1/recommend", content=b'{"user_id": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


def _route_labels(client: TestClient) -> set[str]:
    text = client.get("/metrics").text
    return {
        line.split('route="')[1].split('"')[0] for line in text.splitlines() if line.startswith("llmrec_http_requests_total{")
    }


def test_metrics_labels_stay_bounded_whatever_the_paths(client: TestClient) -> None:
    for i in range(60):
        client.get(f"/v1/items/x{i}/", follow_redirects=False)  # 307 to the path without the slash
        client.get(f"/nowhere/{i}")  # 404
        client.get(f"/v1/items/{i}")  # a real route: its template is the label
    labels = _route_labels(client)
    assert not any(label.startswith(("/v1/items/x", "/nowhere")) for label in labels), labels
    assert "unmatched" in labels and "/v1/items/{item_id}" in labels
    assert len(labels) <= 4  # unmatched, the item template, and at most /metrics itself


def test_one_call_may_explain_at_most_a_bounded_number(client: TestClient) -> None:
    from llmrec.serve.schemas import MAX_EXPLAINED_PER_CALL

    one = {"user_id": "u01", "k": 2, "explain": True}
    ok = client.post("/v1/recommend/batch", json={"requests": [one] * MAX_EXPLAINED_PER_CALL})
    assert ok.status_code == 200 and all(item["explanation"] for res in ok.json()["results"] for item in res["items"])
    too_many = client.post("/v1/recommend/batch", json={"requests": [one] * (MAX_EXPLAINED_PER_CALL + 1)})
    assert too_many.status_code == 422 and too_many.json()["code"] == "invalid_request"
    assert str(MAX_EXPLAINED_PER_CALL) in too_many.json()["message"]


def test_explanations_are_split_across_passes_of_the_model_thread(recommender: Recommender, make_client: Any) -> None:
    from llmrec.serve import create_app

    app = create_app(recommender, max_batch=64, max_wait_ms=50)
    client = make_client(app)
    sizes: list[int] = []
    app.state.service.heavy.on_batch = lambda size, seconds: sizes.append(size)  # explain runs in the options lane
    one = {"user_id": "u01", "k": 2, "explain": True}
    assert client.post("/v1/recommend/batch", json={"requests": [one] * 16}).status_code == 200
    # Each explained request scores up to max_seq_len (8) extra rows; a pass takes at most max_batch (64) rows.
    assert len(sizes) >= 2 and max(sizes) < 16, sizes


def test_requests_outlasting_the_graceful_timeout_get_503_not_500(recommender: Recommender, serve_in_thread: Any) -> None:
    from llmrec.serve import create_app

    release = threading.Event()
    plain = recommender.recommend_batch

    def slow(*args: Any, **kwargs: Any) -> Any:
        if len(args[0]) > 0 and not release.is_set() and threading.current_thread().name.startswith("llmrec-model"):
            release.wait(5)  # a forward pass far longer than the graceful timeout
        return plain(*args, **kwargs)

    recommender.recommend_batch = slow  # type: ignore[method-assign]
    release.set()  # the warm-up at start passes at once
    app = create_app(recommender, max_wait_ms=1)
    server, thread, host, port = serve_in_thread(app, log_level="critical", access_log=False, timeout_graceful_shutdown=0.3)
    base = f"http://{host}:{port}"
    release.clear()

    async def clients() -> list[httpx.Response | Exception]:
        async with httpx.AsyncClient(base_url=base, timeout=20) as c:
            tasks = [asyncio.create_task(c.post("/v1/recommend", json={"user_id": f"u{i:02d}", "k": 3})) for i in range(1, 6)]
            await asyncio.sleep(0.5)  # all five are in the server: one in the slow pass, four queued behind it
            server.should_exit = True
            return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        answers = asyncio.run(clients())
    finally:
        release.set()
        thread.join(timeout=15)
    statuses = [a.status_code for a in answers if isinstance(a, httpx.Response)]
    assert statuses and 500 not in statuses, answers
    for a in answers:
        if isinstance(a, httpx.Response):
            assert a.status_code == 503 and a.json()["code"] == "not_ready", a.text
