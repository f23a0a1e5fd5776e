"""ASGI middleware of the service: `RequestGuard` (the body limit and deadline, clients that go away, 503 for a
request cancelled at shutdown). Authentication is a route dependency (`api_key_dependency`), so the OpenAPI
document shows it.
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

__all__ = ["API_KEY_HEADER", "CLIENT_CLOSED", "RequestGuard", "api_key_dependency"]

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


class _ClientGone(Exception):
    """The client closed the connection before its body arrived (raised from `receive`)."""


class _BodyTimeout(Exception):
    """The body did not arrive in time (raised from `receive`)."""


CLIENT_CLOSED = 499  # nginx's status for "the client closed the request": counted in /metrics, never sent


class RequestGuard:
    """What every HTTP request goes through before the app, in one pure-ASGI layer:

    - a body over `max_bytes`: 413, at once from Content-Length, or while reading a chunked body;
    - a body that has not fully arrived `body_timeout` seconds after the request head: 408 ``body_timeout`` and
      the connection closed (a slow or stalled client cannot hold a request open; the header timeout is the
      protocol's, `llmrec.serve.connections`);
    - a client that goes away before its body arrived: one log line, no traceback, counted as status 499 in
      /metrics (Starlette would raise ClientDisconnect, answered 500 with a 60-line traceback);
    - a request still running when the graceful shutdown times out is cancelled by uvicorn, which would answer
      500 in plain text and log a traceback: 503 ``not_ready`` in the error shape instead (one log line).

    FastAPI's own ``max_body_size`` answers in plain text; this one keeps the ErrorResponse shape. A chunked body
    that grows past the limit raises an HTTPException from ``receive``, which FastAPI passes on to the handler.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            message = f"request body over {self.max_bytes} bytes" if declared.isdigit() else "bad Content-Length"
            response = error_response(413 if declared.isdigit() else 400, "body_too_large", message)
            await response(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.body_timeout is None else loop.time() + self.body_timeout
        received = 0
        body_done = False
        failure: type[Exception] | None = None  # _ClientGone or _BodyTimeout, once seen
        started = False

        async def receive_guarded() -> Message:
            nonlocal received, body_done, failure
            if body_done:  # after the body: a wait for the disconnect (no deadline)
                return await receive()
            if failure is not None:  # asked again after a failure (an error handler re-reading the body)
                raise failure()
            try:
                if deadline is None:
                    message = await receive()
                else:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
            except TimeoutError:
                failure = _BodyTimeout
                raise _BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
                body_done = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                failure = _ClientGone
                raise _ClientGone
            return message

        async def send_noting(message: Message) -> None:
            nonlocal started
            if failure is not None:  # the app answered a failed read (400 "error parsing the body"): ours instead
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_guarded, send_noting)
        except asyncio.CancelledError:
            if started:  # half an answer went out: nothing better than closing the connection
                raise
            log.warning("%s %s cancelled at shutdown (graceful timeout exceeded): answered 503", scope["method"], scope["path"])
            response = error_response(
                503, "not_ready", "the service is shutting down; retry", headers={"Retry-After": "1", "Connection": "close"}
            )
            await response(scope, receive, send)
            return
        except (_ClientGone, _BodyTimeout):
            pass  # answered below
        if failure is _ClientGone:
            log.warning("%s %s: the client went away after %d bytes of its body", scope["method"], scope["path"], received)
            # Nobody reads this answer (uvicorn drops what is sent after a disconnect); /metrics counts it.
            await send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif failure is _BodyTimeout and not started:
            log.warning(
                "%s %s: the body did not arrive within %g s: answered 408", scope["method"], scope["path"], self.body_timeout
            )
            message = f"the body did not arrive within {self.body_timeout:g} s"
            await error_response(408, "body_timeout", message, headers={"Connection": "close"})(scope, receive, send)
