"""CPU cost of one plain request through the service, in process: the whole ASGI stack (middleware, routing,
pydantic validation, the micro-batcher, the model thread) without a socket, so it is fair on a busy machine.

    python benchmarks/serve_request_cost.py --model runs/beauty/model --requests 3000
    python benchmarks/serve_request_cost.py --model runs/beauty/model --profile prof.out   # cProfile of the loop side

Requests are sent one at a time (`--concurrency 1`, the default: every request is its own forward pass, as at 200
req/s) straight into the ASGI app (no client library: only the server's work is counted), the same bodies as `load_serve.py` (half by `user_id`, half by a 20-item
history, k = 10). Prints process CPU time per request (all threads: event loop and model thread), its split
between the two threads, and wall time per request. One torch thread.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from load_serve import _bodies  # noqa: E402


async def _call(app: Any, body: bytes) -> int:
    """One POST /v1/recommend straight through the ASGI app (no client library, no socket): its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/recommend",
        "raw_path": b"/v1/recommend",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def _measure(app: Any, bodies: list[bytes], concurrency: int, profile: cProfile.Profile | None) -> dict[str, float]:
    async with app.router.lifespan_context(app):
        for body in bodies[:200]:  # warm-up
            assert await _call(app, body) == 200
        sem = asyncio.Semaphore(concurrency)

        async def one(body: bytes) -> None:
            async with sem:
                assert await _call(app, body) == 200

        cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        await asyncio.gather(*(one(b) for b in bodies))
        if profile is not None:
            profile.disable()
        cpu, loop_cpu, wall = time.process_time() - cpu0, time.thread_time() - loop0, time.perf_counter() - wall0
    n = len(bodies)
    return {
        "requests": n,
        "cpu_ms_per_request": round(1000 * cpu / n, 3),
        "event_loop_cpu_ms_per_request": round(1000 * loop_cpu / n, 3),
        "other_threads_cpu_ms_per_request": round(1000 * (cpu - loop_cpu) / n, 3),
        "wall_ms_per_request": round(1000 * wall / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--profile", type=Path, default=None, help="Write a cProfile of the event-loop thread here.")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from llmrec.recommend import Recommender
    from llmrec.serve import create_app

    app = create_app(Recommender.load(a.model, ann="off", device="cpu"), queries=False)
    profile = cProfile.Profile() if a.profile else None
    bodies = [json.dumps(b).encode() for b in _bodies(a.model, a.requests, seed=0)]
    result = asyncio.run(_measure(app, bodies, a.concurrency, profile))
    if profile is not None and a.profile is not None:
        profile.dump_stats(a.profile)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
