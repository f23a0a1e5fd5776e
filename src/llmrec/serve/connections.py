"""What uvicorn needs beside the app so that no client can hold the server: a header timeout, a cap on open
connections below the file-descriptor limit, and a port check before anything is printed.

uvicorn closes an *idle* keep-alive connection after ``timeout_keep_alive`` seconds, but neither of its HTTP
parsers (httptools, h11) times out a request head that arrives slowly or never: a client that connects and sends
half a header line holds a socket, and thousands of them exhaust the file descriptors. `guarded_protocol` adds
what is missing to uvicorn's own protocol class:

- a header timeout: a connection that has not sent a complete request head within ``header_timeout`` seconds of
  connecting, or of its previous answer, is closed (no answer: there is no request to answer);
- a cap on open connections: past ``max_connections``, a new connection gets ``503 overloaded`` in the error shape
  and is closed at once, so the process keeps file descriptors for the model, its files and the log.

The body has its own deadline (`llmrec.serve.middleware.RequestGuard`, 408). With one process the CLI hands
uvicorn `guarded_protocol(...)`; with ``--workers N`` uvicorn imports `GuardedProtocol` by name in each worker,
which reads its settings from the ``LLMREC_SERVE_GUARD`` environment variable (`guard_env`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import socket
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # httptools is a dependency of the serve extra

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "GUARD_ENV",
    "GuardedProtocol",
    "check_port_free",
    "default_max_connections",
    "guard_env",
    "guarded_protocol",
    "uvicorn_guards",
]

log = logging.getLogger("llmrec.serve")

GUARD_ENV = "LLMREC_SERVE_GUARD"
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds for a request head (uvicorn's keep-alive is 5 s)
_RESERVED_FDS = 256  # descriptors kept for the model, its files, the log and the worker threads

_OVERLOADED = json.dumps(
    {"code": "overloaded", "message": "too many open connections; retry shortly", "ids": [], "errors": []},
    separators=(",", ":"),
).encode()
_OVERLOADED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n"
    + b"content-length: "
    + str(len(_OVERLOADED)).encode()
    + b"\r\n\r\n"
    + _OVERLOADED
)


def default_max_connections() -> int:
    """Open connections allowed by default: the soft file-descriptor limit less a reserve, at most 4,096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft - _RESERVED_FDS))


def check_port_free(host: str, port: int) -> None:
    """A ValueError naming the address when `host`:`port` cannot be bound (in use, or not an address here)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port is free
        try:
            probe.bind(address)
        except OSError as e:
            why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise ValueError(f"cannot listen on {host}:{port}: {why}") from None


def _guard_from_env() -> tuple[float | None, int | None]:
    """(header timeout, connection cap) from GUARD_ENV, where `llmrec serve --workers N` leaves them for its
    worker processes (uvicorn imports the protocol class there by name); the defaults when it is unset."""
    raw = os.environ.get(GUARD_ENV)
    if not raw:
        return DEFAULT_HEADER_TIMEOUT, default_max_connections()
    found = json.loads(raw)
    return found.get("header_timeout"), found.get("max_connections")


_SWEEPING: set[asyncio.AbstractEventLoop] = set()  # loops whose header sweep is scheduled


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a connection cap (class attributes; None: off).

    The header timeout costs a request two attribute stores, not a timer: each connection keeps the loop time by
    which its next request head must be complete, and one sweep per event loop (every ``header_timeout / 4``
    seconds, at most 1 s) closes the connections past it. A timer armed and cancelled per request took about a
    quarter of a worker's capacity at 400 req/s (docs/benchmarks.md). A stalled head is closed between
    ``header_timeout`` and ``header_timeout`` + one sweep interval after it was due.
    """

    header_timeout: ClassVar[float | None]
    max_connections: ClassVar[int | None]
    header_timeout, max_connections = _guard_from_env()

    _head_deadline: float | None = None  # loop time by which a complete request head must arrive; None: not waiting
    _armed_cycle: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            transport.write(_OVERLOADED_RESPONSE)
            transport.close()
            return
        self._arm()
        if self.header_timeout is not None and self.loop not in _SWEEPING:
            _SWEEPING.add(self.loop)
            self.loop.call_later(self._sweep_interval(), self._sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._head_deadline = None  # a whole request head arrived: the body has its own deadline (RequestGuard)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request head has header_timeout seconds too

    def _arm(self) -> None:
        if self.header_timeout is not None:
            self._armed_cycle = self.cycle
            self._head_deadline = self.loop.time() + self.header_timeout

    def _sweep_interval(self) -> float:
        return min(1.0, (self.header_timeout or 4.0) / 4)

    def _sweep(self) -> None:
        """Close every connection of this loop whose request head is overdue; run again while any is open."""
        now = self.loop.time()
        for conn in list(self.connections):
            if isinstance(conn, GuardedProtocol) and conn._head_deadline is not None and now >= conn._head_deadline:
                conn._head_timed_out()
        if self.connections:
            self.loop.call_later(self._sweep_interval(), self._sweep)
        else:
            _SWEEPING.discard(self.loop)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        cycle = self.cycle
        waiting = cycle is self._armed_cycle and (cycle is None or cycle.response_complete)
        if waiting and not self.transport.is_closing():  # no new request head since armed
            log.info("closed a connection that sent no complete request head within %g s", self.header_timeout)
            self.transport.close()


def guarded_protocol(header_timeout: float | None, max_connections: int | None) -> type[GuardedProtocol]:
    """`GuardedProtocol` with these settings (None: that guard off), for one serving process."""
    if header_timeout is not None and not header_timeout > 0:
        raise ValueError(f"--header-timeout must be > 0, got {header_timeout}")
    if max_connections is not None and max_connections < 1:
        raise ValueError(f"--max-connections must be >= 1, got {max_connections}")

    class Configured(GuardedProtocol):
        pass

    Configured.header_timeout, Configured.max_connections = header_timeout, max_connections
    return Configured


def guard_env(header_timeout: float | None, max_connections: int | None) -> str:
    """The value of GUARD_ENV for worker processes."""
    return json.dumps({"header_timeout": header_timeout, "max_connections": max_connections})


def uvicorn_guards(header_timeout: float, keep_alive_timeout: int, max_connections: int, *, workers: int = 1) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that guard the server (max_connections 0: from the descriptor
    limit). With several workers the settings go to them through GUARD_ENV and uvicorn imports the class by name."""
    if not 0 < header_timeout <= 3600:
        raise ValueError(f"--header-timeout: must be between 0 and 3600 seconds, got {header_timeout}")
    if not 1 <= keep_alive_timeout <= 3600:
        raise ValueError(f"--keep-alive-timeout: must be between 1 and 3600 seconds, got {keep_alive_timeout}")
    if max_connections < 0:
        raise ValueError(f"--max-connections: must be >= 0 (0: from the file-descriptor limit), got {max_connections}")
    cap = max_connections or default_max_connections()
    if workers > 1:
        os.environ[GUARD_ENV] = guard_env(header_timeout, cap)
        http: Any = f"{__name__}:GuardedProtocol"
    else:
        http = guarded_protocol(header_timeout, cap)
    return {"http": http, "timeout_keep_alive": keep_alive_timeout}
