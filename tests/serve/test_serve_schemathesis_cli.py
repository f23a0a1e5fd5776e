"""schemathesis' own command line against a real ``llmrec serve`` process: every check (``--checks all``), every
phase (examples, coverage, fuzzing, stateful), no failure allowed.

`test_serve_fuzz.py` fuzzes the app in process with a request count to hold to; this one runs what a user of the
service would run, over HTTP, with uvicorn, the guarded protocol and the CLI's defaults in the way. Bounded: a fixed
seed, a few examples per operation, and timeouts on every wait (schemathesis' ``--max-time`` is a budget it
fills, not a cap).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# As in test_serve_fuzz.py: a schema-valid request may still be refused by design (ids the model does not know:
# 422 unknown_ids or 404; an option the artifact cannot serve: 422 not_available; rules across fields such as a
# blank query), and invalid data is refused with 400, 404, 413 (its size), 415 (no JSON body) or 422.
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2XX", "404", "422"]

[checks.negative_data_rejection]
expected-statuses = ["400", "404", "413", "415", "422"]
"""
EXAMPLES = 30  # per operation and phase


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tiny_artifact: Path, tmp_path: Path) -> Iterator[str]:
    """`llmrec serve` on a free 127.0.0.1 port, ready; its base URL. Stopped (SIGTERM) after the test."""
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    command = [sys.executable, "-m", "llmrec.cli", "serve", "--model", str(tiny_artifact), "--port", str(port)]
    server = subprocess.Popen([*command, "--no-queries"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "llmrec serve was not ready within 120 s"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@pytest.mark.slow  # about 30 s: the server's start and some 2,000 requests
def test_schemathesis_run_with_every_check_finds_nothing(served: str, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis' command line (st) is not installed")
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    run = [st, "--config-file", str(tmp_path / "schemathesis.toml"), "--no-color", "run", f"{served}/openapi.json"]
    options = ["--checks", "all", "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1"]
    result = subprocess.run(
        [*run, *options, "--request-timeout", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    summary = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    assert "passed" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1], summary


def test_the_request_schema_says_exactly_one_of_user_id_and_history(client: Any) -> None:
    """Issue 28: schemathesis reported that the schema allowed both, which the server then refused."""
    import jsonschema_rs  # what schemathesis validates with

    schema = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
    validator = jsonschema_rs.Draft202012Validator(schema)
    for body in ({"user_id": "u03"}, {"user_id": 7}, {"history": []}, {"user_id": "u03", "history": None}):
        assert validator.is_valid(body), body
        assert client.post("/v1/recommend", json=body).status_code == 200, body
    for body in ({"user_id": "u03", "history": ["1"]}, {}, {"user_id": None, "history": None}, {"user_id": 2**53}):
        assert not validator.is_valid(body), body
        assert client.post("/v1/recommend", json=body).status_code == 422, body
