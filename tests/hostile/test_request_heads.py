"""Request heads are bounded (issue 28 point 4: 401 MB of header lines sent to /healthz were read to the end and
grew the service by about 390 MB): a head over --max-head-bytes or with more than --max-header-lines header lines
gets 431 and the connection is closed before more is read.

A real server: uvicorn with `llmrec.serve.connections.GuardedProtocol` (what `llmrec serve` runs) in a thread on
127.0.0.1, a port the OS picks, raw sockets; every wait is bounded.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from llmrec.data import PreparedDataset


@pytest.fixture
def guarded_server(tiny_prepared: PreparedDataset, tmp_path: Path, serve_in_thread: Any) -> Any:
    """start(**head limits) -> (host, port): the service of a tiny model behind the guarded protocol."""
    from llmrec.recommend import Recommender
    from llmrec.serve import create_app
    from llmrec.serve.connections import guarded_protocol
    from llmrec.training import build_model, save_artifact

    model = build_model(tiny_prepared, {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32})[0]
    recommender = Recommender.load(save_artifact(model.eval(), tiny_prepared, tmp_path / "model"))

    def start(**heads: Any) -> tuple[str, int]:
        http = guarded_protocol(10.0, 100, **heads)
        _, _, host, port = serve_in_thread(create_app(recommender), log_level="warning", access_log=False, http=http)
        return host, port

    return start


def _send_until_closed(sock: socket.socket, chunk: bytes, total: int) -> int:
    """Send `chunk` until `total` bytes went out or the server stopped reading; returns the bytes sent."""
    sent = 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("shape", ["many-lines", "one-long-line", "long-url"])
def test_a_huge_request_head_gets_431_before_it_is_read(guarded_server: Any, shape: str, read_all: Any) -> None:
    """Issue 28: 401 MB of header lines were read to the end and grew the service by 390 MB."""
    host, port = guarded_server()  # the defaults: 32 KiB, 100 header lines
    head = {
        "many-lines": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Pad: " + b"a" * 1000 + b"\r\n"),
        "one-long-line": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ", b"a" * 65536),  # a line that never ends
        "long-url": (b"GET /healthz?", b"a" * 65536),
    }[shape]
    before = _peak_rss_mib()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(head[0])
        sent = _send_until_closed(s, head[1], 256 << 20)  # up to 256 MiB
        answer = read_all(s, 10)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"code":"head_too_large"' in answer and b"32768 bytes" in answer
    assert sent < 64 << 20, sent  # the server stopped reading long before (the socket buffers hold a few MiB)
    assert _peak_rss_mib() - before < 64  # the service (this process) did not grow by what was sent


def test_too_many_header_lines_get_431(guarded_server: Any, read_all: Any) -> None:
    host, port = guarded_server(max_header_lines=20)
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(21))  # 21 short lines, 200 bytes: only the count is over
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        answer = read_all(s, 10)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"20 header lines" in answer, answer[:200]


def test_heads_within_the_limits_are_served_one_after_another(guarded_server: Any, read_all: Any) -> None:
    """The budget is per request head: on one keep-alive connection, each head under it is served; a body does
    not count against it."""
    host, port = guarded_server(max_head_bytes=2048, max_header_lines=20)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 60) for i in range(18))
    body = b'{"user_id": "u03", "k": 3}' + b" " * 8000  # four times the head budget
    post = b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, port), timeout=10) as s:
        for _ in range(3):  # 3 x 1.4 KB heads on one connection: over 2 KiB together, each under it
            s.sendall(head + b"\r\n")
            answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        s.sendall(post + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        answer = read_all(s, 10)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


def test_the_head_limits_are_range_checked() -> None:
    from llmrec.serve.connections import guarded_protocol, uvicorn_guards

    with pytest.raises(ValueError, match="--max-head-bytes"):
        guarded_protocol(10.0, 10, max_head_bytes=10)
    with pytest.raises(ValueError, match="--max-header-lines"):
        uvicorn_guards(10.0, 5, 10, max_header_lines=0)
