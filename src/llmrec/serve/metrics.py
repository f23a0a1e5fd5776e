"""Prometheus metrics of one app, in a registry of their own (several apps in one process, as in tests, do not
collide), and the ASGI middleware that counts and times every request.

Labels stay bounded: a route is labelled by its template (``/v1/items/{item_id}``), never by the raw path of an
unmatched request, so no client can add series. With ``--workers N`` each worker process counts its own requests.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]


class Metrics:
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


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task overhead): count and time every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
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
