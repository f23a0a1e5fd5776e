"""Fixtures of the service tests: a tiny model artifact (tests/conftest.py's 20 users x 50 items) and its app.

``client`` runs the app's lifespan (the micro-batcher starts, a warm-up request passes) inside a TestClient.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from llmrec.recommend import Recommender


@pytest.fixture
def recommender(tiny_artifact: Path) -> Recommender:
    from llmrec.recommend import Recommender

    return Recommender.load(tiny_artifact)


@pytest.fixture
def make_client() -> Iterator[Any]:
    """make_client(app) -> a started TestClient (lifespan run), closed after the test."""
    from fastapi.testclient import TestClient

    opened: list[TestClient] = []

    def make(app: FastAPI, **kwargs: Any) -> TestClient:
        client = TestClient(app, **kwargs)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(recommender: Recommender, make_client: Any) -> TestClient:
    from llmrec.serve import create_app

    return make_client(create_app(recommender))


@pytest.fixture
def live_server(serve_in_thread: Any) -> Any:
    """live_server(app) -> "http://127.0.0.1:PORT": the app under uvicorn in a thread, stopped after the test."""

    def start(app: FastAPI) -> str:
        _, _, host, port = serve_in_thread(app, log_level="warning", access_log=False, lifespan="on")
        return f"http://{host}:{port}"

    return start
