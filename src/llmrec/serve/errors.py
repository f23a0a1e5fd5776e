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

__all__ = ["ERRORS", "ApiError", "add_error_handlers", "error_response", "require_json_body"]

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
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.ids = ids or []
        self.headers = headers
        self.errors = errors


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


_CODES = {401: "unauthorized", 404: "not_found", 408: "body_timeout", 413: "body_too_large", 415: "unsupported_media_type"}
_NOT_UTF8 = "the body is not UTF-8 text (byte {}); JSON must be UTF-8"

# Documented on every /v1 route, so the OpenAPI document lists every status the route can answer.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not JSON text (for example, not UTF-8)."},
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key (only when the server has a key)."},
    408: {"model": ErrorResponse, "description": "The body did not arrive within the body timeout."},
    413: {"model": ErrorResponse, "description": "Body over the size limit."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {
        "model": ErrorResponse,
        "description": "Invalid body, over a cost limit, unknown ids, or an option this model cannot serve.",
    },
    503: {"model": ErrorResponse, "description": "Overloaded, shutting down, or the model failed."},
    504: {
        "model": ErrorResponse,
        "description": "A request with options (diversity, query, explain, adapt) ran past its deadline.",
    },
}


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` in the ``ErrorResponse`` shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> Response:
        return error_response(e.status, e.code, e.message, ids=e.ids, errors=e.errors, headers=e.headers)

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
        except Exception:  # noqa: BLE001 - the body cannot be read again (the client went away): answer as we were
            return None
        return None

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> Response:
        if e.status_code == 400:  # FastAPI's "error parsing the body": say why when it is the encoding
            not_utf8 = await _not_utf8(request)
            if not_utf8 is not None:
                return not_utf8
        code = _CODES.get(e.status_code, "http_error")
        return error_response(e.status_code, code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> Response:  # a bug: logged; the client still gets JSON
        log.error("unhandled error", exc_info=e)
        return error_response(500, "internal_error", "internal error; it was logged")


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """A route dependency: the body is sent as ``application/json`` (415 otherwise: FastAPI would read a JSON text
    sent as text/plain as a string and answer 422) and is UTF-8 (RFC 8259; Python's decoder would also accept
    UTF-16 and UTF-32)."""
    content_type = request.headers.get("content-type")
    if content_type is None or not _is_json(content_type):
        raise ApiError(
            415, "unsupported_media_type", f"send the body as application/json (Content-Type: {content_type or 'none'})"
        )
    try:
        (await request.body()).decode("utf-8")
    except UnicodeDecodeError as bad:
        raise ApiError(400, "http_error", _NOT_UTF8.format(bad.start)) from None
