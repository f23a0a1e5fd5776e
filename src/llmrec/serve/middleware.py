"""ASGI middleware of the service: the request body limit (413 in the error shape) and 503 for a request cancelled
at shutdown. Authentication is a route dependency (`api_key_dependency`), so the OpenAPI document shows it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from fastapi import Depends
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmrec.serve.errors import ApiError, error_response

__all__ = ["API_KEY_HEADER", "BodyLimitMiddleware", "CancelledAsNotReady", "api_key_dependency"]

log = logging.getLogger("llmrec.serve")

API_KEY_HEADER = "X-API-Key"


def api_key_dependency(api_key: str) -> Any:
    """A route dependency: every request must carry `api_key` in the X-API-Key header (401 otherwise)."""
    expected = api_key.encode()
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The server's API key.")

    async def check_key(key: str | None = Depends(key_header)) -> None:
        if key is None or not secrets.compare_digest(key.encode(), expected):
            raise ApiError(
                401,
                "unauthorized",
                f"missing or wrong {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": "ApiKey"},
            )

    return Depends(check_key)


class _BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once from Content-Length, or while reading a chunked body.

    FastAPI's own ``max_body_size`` answers in plain text; this one keeps the ErrorResponse shape. A chunked body
    that grows past the limit raises an HTTPException from ``receive``, which FastAPI passes on to the handler.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            message = f"request body over {self.max_bytes} bytes" if declared.isdigit() else "bad Content-Length"
            response = error_response(413 if declared.isdigit() else 400, "body_too_large", message)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, receive_limited, send)


class CancelledAsNotReady:
    """A request still running when the graceful shutdown times out is cancelled by uvicorn, which would answer
    500 in plain text and log a traceback. Answer 503 ``not_ready`` in the error shape instead (one log line)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        except asyncio.CancelledError:
            if started:  # half an answer went out: nothing better than closing the connection
                raise
            log.warning("%s %s cancelled at shutdown (graceful timeout exceeded): answered 503", scope["method"], scope["path"])
            response = error_response(
                503, "not_ready", "the service is shutting down; retry", headers={"Retry-After": "1", "Connection": "close"}
            )
            await response(scope, receive, send)
