"""What uvicorn needs beside the app so that no client can hold the server: a header timeout, bounded request
heads, a cap on open connections below the file-descriptor limit, and a port check before anything is printed.

uvicorn closes an *idle* keep-alive connection after ``timeout_keep_alive`` seconds, but neither of its HTTP
parsers (httptools, h11) times out a request head that arrives slowly or never: a client that connects and sends
half a header line holds a socket, and thousands of them exhaust the file descriptors. `guarded_protocol` adds
what is missing to uvicorn's own protocol class:

- a header timeout: a connection that has not sent a complete request head within ``header_timeout`` seconds of
  connecting, or of its previous answer, is closed (no answer: there is no request to answer);
- a cap on open connections: past ``max_connections``, a new connection gets ``503 overloaded`` in the error shape
  and is closed at once, so the process keeps file descriptors for the model, its files and the log;
- bounded request heads: a head (request line and header lines) over ``max_head_bytes`` bytes, or with more than
  ``max_header_lines`` header lines, gets ``431 head_too_large`` and the connection is closed, before more of it is
  read: the parser is fed at most the bytes left in the budget, so neither httptools' buffer of an unfinished
  header line nor the list of headers grows past it (neither parser bounds the head: httptools not at all, h11 only
  the incomplete part, and neither counts header lines). The budget counts from the start of a request head to its
  end; a body has its own limit (``--max-body-bytes``).

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
    "DEFAULT_MAX_HEADER_LINES",
    "DEFAULT_MAX_HEAD_BYTES",
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
DEFAULT_MAX_HEAD_BYTES = 32 * 1024  # request line + header lines (nginx's large header buffers: 4 x 8 KiB)
DEFAULT_MAX_HEADER_LINES = 100  # header lines of one request (Apache's LimitRequestFields)
_RESERVED_FDS = 256  # descriptors kept for the model, its files, the log and the worker threads


def _error_answer(status_line: str, code: str, message: str, extra_headers: str = "") -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape, written by the protocol itself (no app involved)."""
    body = json.dumps({"code": code, "message": message, "ids": [], "errors": []}, separators=(",", ":")).encode()
    head = f"HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\n{extra_headers}connection: close\r\n"
    return head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body


_OVERLOADED_RESPONSE = _error_answer(
    "503 Service Unavailable", "overloaded", "too many open connections; retry shortly", "retry-after: 1\r\n"
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


def _guard_from_env() -> tuple[float | None, int | None, int | None, int | None]:
    """(header timeout, connection cap, head bytes, header lines) from GUARD_ENV, where `llmrec serve --workers N`
    leaves them for its worker processes (uvicorn imports the protocol class there by name); the defaults when it
    is unset."""
    raw = os.environ.get(GUARD_ENV)
    if not raw:
        return DEFAULT_HEADER_TIMEOUT, default_max_connections(), DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADER_LINES
    found = json.loads(raw)
    return (
        found.get("header_timeout"),
        found.get("max_connections"),
        found.get("max_head_bytes", DEFAULT_MAX_HEAD_BYTES),
        found.get("max_header_lines", DEFAULT_MAX_HEADER_LINES),
    )


_SWEEPING: set[asyncio.AbstractEventLoop] = set()  # loops whose header sweep is scheduled


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a connection cap and bounded request heads (class
    attributes; None: off).

    The header timeout costs a request two attribute stores, not a timer: each connection keeps the loop time by
    which its next request head must be complete, and one sweep per event loop (every ``header_timeout / 4``
    seconds, at most 1 s) closes the connections past it. A timer armed and cancelled per request took about a
    quarter of a worker's capacity at 400 req/s (docs/benchmarks.md). A stalled head is closed between
    ``header_timeout`` and ``header_timeout`` + one sweep interval after it was due.
    """

    header_timeout: ClassVar[float | None]
    max_connections: ClassVar[int | None]
    max_head_bytes: ClassVar[int | None]
    max_header_lines: ClassVar[int | None]
    header_timeout, max_connections, max_head_bytes, max_header_lines = _guard_from_env()

    _head_deadline: float | None = None  # loop time by which a complete request head must arrive; None: not waiting
    _armed_cycle: Any = None
    _in_head = True  # the bytes that arrive belong to a request head (from the connection or the last message on)
    _head_bytes = 0  # bytes of the current request head fed to the parser so far
    _header_lines = 0  # header lines of the current request head
    _head_refused = False  # answered 431: nothing more of this connection is parsed or served

    def data_received(self, data: bytes) -> None:
        """Feed the parser at most what is left of the head's byte budget; past it, answer 431 without reading on."""
        limit = self.max_head_bytes
        while limit is not None and self._in_head and data and not self._head_refused:
            room = limit - self._head_bytes
            if room <= 0:
                self._refuse_head()
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
        if data and not self._head_refused and not self.transport.is_closing():
            super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_refused:
            return
        self._header_lines += 1
        if self.max_header_lines is not None and self._header_lines > self.max_header_lines:
            self._refuse_head()
            return
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if not self._head_refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._head_refused:
            return
        super().on_message_complete()
        self._in_head, self._head_bytes, self._header_lines = True, 0, 0  # what follows is the next request's head

    def _refuse_head(self) -> None:
        """Answer 431 in the error shape and close: the parser may still call back for the bytes it was just fed,
        and those callbacks do nothing now (no request reaches the app)."""
        self._head_refused, self._head_deadline = True, None
        log.info("refused a request head over %s bytes or %s header lines (431)", self.max_head_bytes, self.max_header_lines)
        if not self.transport.is_closing():
            self.transport.write(self._head_too_large())
            self.transport.close()

    def _head_too_large(self) -> bytes:
        limits = []
        if self.max_head_bytes is not None:
            limits.append(f"{self.max_head_bytes} bytes")
        if self.max_header_lines is not None:
            limits.append(f"{self.max_header_lines} header lines")
        message = f"request head too large: at most {' and '.join(limits)}"
        return _error_answer("431 Request Header Fields Too Large", "head_too_large", message)

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
        if self._head_refused:
            return
        self._head_deadline = None  # a whole request head arrived: the body has its own deadline (RequestGuard)
        self._in_head = False
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


def guarded_protocol(
    header_timeout: float | None,
    max_connections: int | None,
    max_head_bytes: int | None = DEFAULT_MAX_HEAD_BYTES,
    max_header_lines: int | None = DEFAULT_MAX_HEADER_LINES,
) -> type[GuardedProtocol]:
    """`GuardedProtocol` with these settings (None: that guard off), for one serving process."""
    if header_timeout is not None and not header_timeout > 0:
        raise ValueError(f"--header-timeout must be > 0, got {header_timeout}")
    if max_connections is not None and max_connections < 1:
        raise ValueError(f"--max-connections must be >= 1, got {max_connections}")
    if max_head_bytes is not None and not 256 <= max_head_bytes <= 1 << 24:
        raise ValueError(f"--max-head-bytes: must be between 256 and {1 << 24}, got {max_head_bytes}")
    if max_header_lines is not None and not 1 <= max_header_lines <= 10_000:
        raise ValueError(f"--max-header-lines: must be between 1 and 10000, got {max_header_lines}")

    class Configured(GuardedProtocol):
        pass

    Configured.header_timeout, Configured.max_connections = header_timeout, max_connections
    Configured.max_head_bytes, Configured.max_header_lines = max_head_bytes, max_header_lines
    return Configured


def guard_env(
    header_timeout: float | None,
    max_connections: int | None,
    max_head_bytes: int | None = DEFAULT_MAX_HEAD_BYTES,
    max_header_lines: int | None = DEFAULT_MAX_HEADER_LINES,
) -> str:
    """The value of GUARD_ENV for worker processes."""
    return json.dumps(
        {
            "header_timeout": header_timeout,
            "max_connections": max_connections,
            "max_head_bytes": max_head_bytes,
            "max_header_lines": max_header_lines,
        }
    )


def uvicorn_guards(
    header_timeout: float,
    keep_alive_timeout: int,
    max_connections: int,
    *,
    workers: int = 1,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    max_header_lines: int = DEFAULT_MAX_HEADER_LINES,
) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that guard the server (max_connections 0: from the descriptor
    limit). With several workers the settings go to them through GUARD_ENV and uvicorn imports the class by name."""
    if not 0 < header_timeout <= 3600:
        raise ValueError(f"--header-timeout: must be between 0 and 3600 seconds, got {header_timeout}")
    if not 1 <= keep_alive_timeout <= 3600:
        raise ValueError(f"--keep-alive-timeout: must be between 1 and 3600 seconds, got {keep_alive_timeout}")
    if max_connections < 0:
        raise ValueError(f"--max-connections: must be >= 0 (0: from the file-descriptor limit), got {max_connections}")
    cap = max_connections or default_max_connections()
    http: Any = guarded_protocol(header_timeout, cap, max_head_bytes, max_header_lines)  # checks the ranges
    if workers > 1:
        os.environ[GUARD_ENV] = guard_env(header_timeout, cap, max_head_bytes, max_header_lines)
        http = f"{__name__}:GuardedProtocol"
    return {"http": http, "timeout_keep_alive": keep_alive_timeout}
