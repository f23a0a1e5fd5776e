"""SIGTERM stops a command as Ctrl-C does: a clean stop, one line on stderr, exit code 143 (130 for Ctrl-C).

A supervisor (``kill``, systemd, Docker, Kubernetes, a batch scheduler) stops a process with SIGTERM, whose
default action ends the process on the spot: no ``finally`` runs, so an atomic write leaves its hidden
temporary file or folder behind. `stop_on_sigterm` installs a handler that raises `Terminated`, a
`KeyboardInterrupt`, in the main thread instead: the code unwinds exactly as after Ctrl-C (temporary files
removed, the previous output intact), and the process exits with 128 + 15 = 143, the status a shell reports
for a process ended by SIGTERM. ``llmrec serve`` keeps uvicorn's own handling: while it serves, SIGTERM drains
the in-flight requests and the server exits 0 (``tests/serve/test_serve_shutdown.py``).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

__all__ = ["SIGINT_EXIT", "SIGTERM_EXIT", "Terminated", "run_stoppable"]

SIGINT_EXIT = 128 + signal.SIGINT  # 130, what typer exits with on KeyboardInterrupt
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt."""


class _Received:
    sigterm = False


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _Received.sigterm = True
    raise Terminated


def run_stoppable(run: Callable[[], object]) -> None:
    """Call `run` (the Typer app) with SIGTERM raising `Terminated`; on a stop by SIGTERM or Ctrl-C, print one
    line (``stopped by SIGTERM``) and exit 143 or 130."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        run()
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        run()
    except SystemExit as e:  # typer turns any KeyboardInterrupt into exit code 130, silently
        if e.code != SIGINT_EXIT:
            raise
        _stopped()
    except KeyboardInterrupt:  # raised outside typer's own handling (e.g. while it starts)
        _stopped()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped() -> NoReturn:
    by_sigterm = _Received.sigterm
    print(f"stopped by {'SIGTERM' if by_sigterm else 'SIGINT (Ctrl-C)'}", file=sys.stderr, flush=True)
    raise SystemExit(SIGTERM_EXIT if by_sigterm else SIGINT_EXIT) from None
