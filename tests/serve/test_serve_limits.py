"""No request can stall the service: cost limits on the options, a lane of their own with a deadline, clients that
go away or send slowly, a cap on connections, JSON sent as text, an empty history, a port in use.

Real-server tests run uvicorn in a thread on 127.0.0.1 (a port the OS picks) and talk to it with raw sockets;
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from llmrec.serve import create_app
from llmrec.serve.limits import ServeLimits

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from llmrec.recommend import Recommender


# ---- cost limits ---------------------------------------------------------------------------------------------------
def test_diversity_k_over_the_limit_is_422_naming_field_and_limit(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u03", "k": 101, "diversity": 0.5})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
    (error,) = r.json()["errors"]
    assert error["loc"] == ["body", "k"] and error["type"] == "over_limit" and "limit of 100 with diversity" in error["msg"]
    assert client.post("/v1/recommend", json={"user_id": "u03", "k": 1000}).status_code == 200  # plain k: no such limit


def test_the_slow_batch_of_the_report_is_refused_at_once(client: TestClient) -> None:
    """256 requests with k = 1000 and 256 distinct diversity values took 81.6 s; now a 422 without scoring."""
    requests = [{"user_id": "1", "k": 1000, "diversity": i / 256} for i in range(256)]
    started = time.monotonic()
    r = client.post("/v1/recommend/batch", json={"requests": requests})
    assert time.monotonic() - started < 5
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
    locs = {tuple(e["loc"]) for e in r.json()["errors"]}
    assert ("body", "requests", 1, "k") in locs and ("body", "requests") in locs
    assert any("distinct option groups" in e["msg"] and "at most 8" in e["msg"] for e in r.json()["errors"])


def test_distinct_groups_per_call_are_bounded(client: TestClient) -> None:
    ok = [{"user_id": "u03", "k": 3, "diversity": d} for d in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    assert client.post("/v1/recommend/batch", json={"requests": ok + [{"user_id": "u04", "k": 3}] * 20}).status_code == 200
    too_many = ok + [{"user_id": "u03", "k": 3, "diversity": 0.9}]
    r = client.post("/v1/recommend/batch", json={"requests": too_many})
    assert r.status_code == 422 and "9 distinct option groups" in r.json()["message"]


def test_requests_with_options_per_call_are_bounded(client: TestClient) -> None:
    one = {"user_id": "u03", "k": 3, "diversity": 0.5}  # one group: the bound is on rows, not only on groups
    assert client.post("/v1/recommend/batch", json={"requests": [one] * 32}).status_code == 200
    r = client.post("/v1/recommend/batch", json={"requests": [one] * 33})
    assert r.status_code == 422 and "33 requests ask for options" in r.json()["message"] and "at most 32" in r.json()["message"]


def test_limits_are_configurable(recommender: Recommender, make_client: Any) -> None:
    limits = ServeLimits(max_diverse_k=5, max_explain_k=3, max_explained=2, max_groups=1)
    client = make_client(create_app(recommender, limits=limits))
    assert client.post("/v1/recommend", json={"user_id": "u03", "k": 5, "diversity": 0.3}).status_code == 200
    assert "limit of 5 with diversity" in client.post("/v1/recommend", json={"user_id": "u03", "k": 6, "diversity": 0.3}).text
    assert "limit of 3 with explain" in client.post("/v1/recommend", json={"user_id": "u03", "k": 4, "explain": True}).text
    one = {"user_id": "u03", "k": 2, "explain": True}
    assert client.post("/v1/recommend/batch", json={"requests": [one] * 3}).json()["errors"][0]["type"] == "over_limit"
    two_groups = [{"user_id": "u03", "diversity": 0.1}, {"user_id": "u03", "diversity": 0.2}]
    assert "at most 1" in client.post("/v1/recommend/batch", json={"requests": two_groups}).json()["message"]


@pytest.mark.parametrize("field", ["max_diverse_k", "max_groups", "options_queue"])
def test_limits_out_of_range_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')}"):
        ServeLimits(**{field: 0})


# ---- the options lane: plain requests never wait behind expensive ones ----------------------------------------------
def _blocking_options(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """recommend_batch blocks (up to 20 s) in the options lane's thread until the returned event is set."""
    release = threading.Event()
    real = recommender.recommend_batch

    def slow(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("llmrec-options"):
            release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(recommender, "recommend_batch", slow)
    return release


async def _with_app(app: Any, body: Any) -> Any:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            return await body(client)


def test_plain_requests_complete_while_an_expensive_batch_runs(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    release = _blocking_options(recommender, monkeypatch)
    app = create_app(recommender)
    expensive = [{"user_id": f"u{i:02d}", "k": 50, "diversity": 0.1 * (1 + i % 8)} for i in range(1, 17)]

    async def body(client: httpx.AsyncClient) -> tuple[list[int], bool, int]:
        slow = asyncio.create_task(client.post("/v1/recommend/batch", json={"requests": expensive}))
        await asyncio.sleep(0.2)  # the batch is in the options lane, held there
        plain = [(await client.post("/v1/recommend", json={"user_id": f"u{i:02d}", "k": 5})).status_code for i in range(1, 11)]
        still_running = not slow.done()
        release.set()
        return plain, still_running, (await slow).status_code

    try:
        plain, still_running, slow_status = asyncio.run(_with_app(app, body))
    finally:
        release.set()
    assert plain == [200] * 10
    assert still_running  # every plain answer came back while the expensive batch was still being scored
    assert slow_status == 200


def test_options_past_their_deadline_get_504_and_the_service_goes_on(
    recommender: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = _blocking_options(recommender, monkeypatch)
    app = create_app(recommender, limits=ServeLimits(options_timeout=0.3))

    async def body(client: httpx.AsyncClient) -> tuple[httpx.Response, int]:
        late = await client.post("/v1/recommend", json={"user_id": "u03", "diversity": 0.5})
        release.set()
        return late, (await client.post("/v1/recommend", json={"user_id": "u03"})).status_code

    try:
        late, plain = asyncio.run(_with_app(app, body))
    finally:
        release.set()
    assert (late.status_code, late.json()["code"]) == (504, "timeout")
    assert "diversity" in late.json()["message"] and late.headers["retry-after"] == "1"
    assert plain == 200


def test_a_full_options_queue_is_503_for_the_whole_call(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    release = _blocking_options(recommender, monkeypatch)
    app = create_app(recommender, limits=ServeLimits(options_queue=4))
    requests = [{"user_id": f"u{i:02d}", "diversity": 0.5} for i in range(1, 7)]

    async def body(client: httpx.AsyncClient) -> httpx.Response:
        r = await client.post("/v1/recommend/batch", json={"requests": requests})
        release.set()
        return r

    try:
        r = asyncio.run(_with_app(app, body))
    finally:
        release.set()
    assert (r.status_code, r.json()["code"]) == (503, "overloaded")


# ---- awkward requests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_not_sent_as_json_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/recommend", content=b'{"user_id": "u03"}', headers=headers)
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    ok = client.post("/v1/recommend", content=b'{"user_id": "u03"}', headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_an_empty_history_answers_as_python_does(client: TestClient, recommender: Recommender) -> None:
    r = client.post("/v1/recommend", json={"history": [], "k": 5})
    assert r.status_code == 200, r.text
    expected = [(x.item_id, x.rank) for x in recommender.recommend(history=[], k=5)]
    assert [(x["item_id"], x["rank"]) for x in r.json()["items"]] == expected
    assert (r.json()["history_length"], r.json()["history_used"], r.json()["truncated"]) == (0, 0, False)
    explained = client.post("/v1/recommend", json={"history": [], "k": 2, "explain": True})
    assert explained.status_code == 200 and all(i["explanation"]["contributions"] == [] for i in explained.json()["items"])


# ---- clients that go away, or send slowly -------------------------------------------------------------------------
def test_a_client_gone_mid_body_is_499_in_metrics_and_one_log_line(
    client: TestClient, recommender: Recommender, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(recommender)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/recommend",
        "raw_path": b"/v1/recommend",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": b'{"user_id"', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    with caplog.at_level(logging.INFO):
        asyncio.run(run())
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1 and "went away" in records[0].getMessage() and records[0].exc_info is None
    assert sent[0]["status"] == 499  # nobody reads it; /metrics counts it
    metrics = "".join(s for s in _metrics_lines(app) if 'status="499"' in s)
    assert 'method="POST"' in metrics and "500" not in "".join(_metrics_lines(app))


def _metrics_lines(app: Any) -> list[str]:
    from prometheus_client import generate_latest

    text = generate_latest(app.state.metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith("llmrec_http_requests_total{")]


@pytest.fixture
def guarded_server(recommender: Recommender, serve_in_thread: Any) -> Any:
    """start(header_timeout=, max_connections=, body_timeout=) -> (host, port, app): uvicorn with the guarded
    protocol in a thread on 127.0.0.1, stopped after the test."""

    from llmrec.serve.connections import guarded_protocol

    def start(
        header_timeout: float | None = None, max_connections: int | None = None, body_timeout: float = 30.0, **heads: Any
    ) -> Any:
        app = create_app(recommender, body_timeout=body_timeout)
        http = guarded_protocol(header_timeout, max_connections, **heads)
        _, _, host, port = serve_in_thread(app, log_level="warning", access_log=False, http=http, timeout_keep_alive=5)
        return host, port, app

    return start


def test_real_server_client_gone_mid_body_logs_one_line_and_counts_499(
    guarded_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    host, port, app = guarded_server()
    with caplog.at_level(logging.INFO), socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        s.sendall(b'{"user_id"')
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while not any('status="499"' in line for line in _metrics_lines(app)):
        assert time.monotonic() < deadline, _metrics_lines(app)
        time.sleep(0.05)
    assert not any('status="500"' in line for line in _metrics_lines(app))
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1 and "went away after 10 bytes" in problems[0].getMessage(), problems
    assert not any(r.exc_info for r in caplog.records)


def test_a_body_that_stalls_gets_408_and_the_connection_closes(guarded_server: Any, read_all: Any) -> None:
    host, port, _ = guarded_server(body_timeout=0.5)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        s.sendall(b'{"user_id"')
        answer = read_all(s, 10)
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"code":"body_timeout"' in answer


def test_a_request_head_that_stalls_is_closed_after_the_header_timeout(guarded_server: Any, read_all: Any) -> None:
    host, port, _ = guarded_server(header_timeout=0.5)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # and nothing more
        started = time.monotonic()
        assert read_all(s, 10) == b""  # closed by the server, not by our 10 s timeout
        assert time.monotonic() - started < 5
    with socket.create_connection((host, port), timeout=5) as s:  # a whole head within the timeout is answered
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(s, 10).startswith(b"HTTP/1.1 200 ")


def test_connections_past_the_cap_get_503_and_are_closed(guarded_server: Any, read_all: Any) -> None:
    host, port, _ = guarded_server(max_connections=2)
    held = [socket.create_connection((host, port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)
        with socket.create_connection((host, port), timeout=5) as extra:
            answer = read_all(extra, 10)
        assert answer.startswith(b"HTTP/1.1 503 ") and b'"code":"overloaded"' in answer
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(held[0], 10).startswith(b"HTTP/1.1 200 ")  # the admitted ones are served
    finally:
        for s in held:
            s.close()


# ---- the command line ------------------------------------------------------------------------------------------------
def test_serve_on_a_port_in_use_is_one_line_and_exit_2(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from llmrec.cli import app

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn.run was called"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--model", str(tiny_artifact), "--port", str(port)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert "serving" not in result.output


def test_serve_hands_the_guards_to_uvicorn(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from llmrec.cli import app
    from llmrec.serve.connections import GuardedProtocol

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append(kwargs))
    args = ["serve", "--model", str(tiny_artifact), "--port", "1", "--header-timeout", "3", "--max-connections", "50"]
    monkeypatch.setattr("llmrec.serve.connections.check_port_free", lambda host, port: None)
    result = CliRunner().invoke(app, [*args, "--keep-alive-timeout", "7", "--max-diverse-k", "20"])
    assert result.exit_code == 0, result.output
    ((kwargs),) = calls
    assert issubclass(kwargs["http"], GuardedProtocol) and kwargs["timeout_keep_alive"] == 7
    assert (kwargs["http"].header_timeout, kwargs["http"].max_connections) == (3.0, 50)
    assert (kwargs["http"].max_head_bytes, kwargs["http"].max_header_lines) == (32768, 100)  # the defaults
    bad = CliRunner().invoke(app, ["serve", "--model", str(tiny_artifact), "--max-diverse-k", "0"])
    assert bad.exit_code == 2 and "--max-diverse-k" in bad.stderr
