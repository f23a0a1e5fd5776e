"""One error shape for every answer that is not a success: `ApiError`, the `ErrorResponse` body and the exception
handlers that turn FastAPI's and Starlette's own errors (validation, 404, 413, a body that is not UTF-8) into it.

No input produces a 500: bad bodies are 422 ``invalid_request``, unknown ids 422 ``unknown_ids`` naming them, an
oversized body 413, a body that is not UTF-8 400. A bug still answers in the error shape (and is logged).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from llmrec.serve.schemas import ErrorResponse

__all__ = ["ERRORS", "ApiError", "add_error_handlers", "error_response", "require_utf8_body"]

log = logging.getLogger("llmrec.serve")


class ApiError(Exception):
    """An error answer: HTTP status, a stable ``code`` and a message (see ``ErrorResponse``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        ids: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.ids = ids or []
        self.headers = headers


class _ErrorJSONResponse(JSONResponse):
    """ASCII-escaped JSON: an error may echo an id holding a lone surrogate, which UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    ids: list[str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = ErrorResponse.model_validate({"code": code, "message": message, "ids": ids or [], "errors": errors or []})
    return _ErrorJSONResponse(body.model_dump(), status_code=status, headers=headers)


_NOT_UTF8 = "the body is not UTF-8 text (byte {}); JSON must be UTF-8"

# Documented on every /v1 route, so the OpenAPI document lists every status the route can answer.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not JSON text (for example, not UTF-8)."},
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key (only when the server has a key)."},
    413: {"model": ErrorResponse, "description": "Body over the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid body, unknown ids, or an option this model cannot serve."},
    503: {"model": ErrorResponse, "description": "Overloaded, shutting down, or the model failed."},
}


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` in the ``ErrorResponse`` shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> Response:
        return error_response(e.status, e.code, e.message, ids=e.ids, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        not_utf8 = await _not_utf8(request)
        if not_utf8 is not None:
            return not_utf8
        # loc/msg/type only: echoing `input` back could be large, or not JSON at all (bytes).
        errors = [
            {
                "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in e.errors()
        ]
        shown = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return error_response(422, "invalid_request", f"{shown}{more}" or "invalid request", errors=errors)

    async def _not_utf8(request: Request) -> Response | None:
        """400 for a body that is not UTF-8 (JSON text must be, RFC 8259; Python's decoder would also take UTF-16)."""
        if request.method not in ("POST", "PUT", "PATCH"):
            return None
        try:
            (await request.body()).decode("utf-8")
        except UnicodeDecodeError as bad:
            return error_response(400, "http_error", _NOT_UTF8.format(bad.start))
        return None

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> Response:
        if e.status_code == 400:  # FastAPI's "error parsing the body": say why when it is the encoding
            not_utf8 = await _not_utf8(request)
            if not_utf8 is not None:
                return not_utf8
        code = {401: "unauthorized", 404: "not_found", 413: "body_too_large"}.get(e.status_code, "http_error")
        return error_response(e.status_code, code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> Response:  # a bug: logged; the client still gets JSON
        log.error("unhandled error", exc_info=e)
        return error_response(500, "internal_error", "internal error; it was logged")


async def require_utf8_body(request: Request) -> None:
    """A route dependency: JSON bodies must be UTF-8 (RFC 8259); Python's decoder would also accept UTF-16 and UTF-32."""
    try:
        (await request.body()).decode("utf-8")
    except UnicodeDecodeError as bad:
        raise ApiError(400, "http_error", _NOT_UTF8.format(bad.start)) from None
