"""Load test of a running `llmrec serve`: an open-loop async httpx client on loopback, bounded in count and time.

    llmrec serve --model runs/beauty/model --no-access-log &          # 1 worker, 127.0.0.1:8000
    python benchmarks/load_serve.py --url http://127.0.0.1:8000 --model runs/beauty/model --out load.json

Phase 1 (fixed): `--requests` requests at `--rate` req/s (default 20,000 at 200/s, 100 s). Phase 2 (ramp): short
steps at rising rates (`--ramp`, `--step-seconds` each) until p99 passes `--p99-ms` or a request fails; the answer
is the highest rate that held. Prints one JSON document (and writes it to `--out`).

Open loop: request i is sent at t0 + i/rate whether or not earlier ones have been answered, and its latency counts
from that scheduled time, so a stalled server shows up as latency (no coordinated omission). In-flight requests
are capped (`--max-in-flight`); a request that would pass the cap is not sent and counts as an error.

Requests: half by `user_id` (users of the model), half by `history` (the 20 most recent items of such a user,
as raw ids), k = 10; read from the model folder (`histories.parquet`, `items.parquet`).
Loopback only: the URL must point at 127.0.0.0/8 or localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import polars as pl


def _bodies(model: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` request bodies over the model's known users: even ones by user id, odd ones by raw history."""
    items = pl.read_parquet(model / "items.parquet").sort("item_idx")["item"].to_list()
    h = pl.read_parquet(model / "histories.parquet")
    users, seqs = h["user"].to_list(), h["items"].to_list()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        j = rng.randrange(len(users))
        if i % 2 == 0:
            out.append({"user_id": users[j], "k": 10})
        else:
            out.append({"history": [items[t - 1] for t in seqs[j][-20:]], "k": 10})
    return out


async def _run(
    client: httpx.AsyncClient, bodies: list[dict[str, Any]], rate: float, max_in_flight: int, limit_s: float
) -> dict[str, Any]:
    """Send `bodies` open-loop at `rate` req/s; latencies (ms) from each request's scheduled time."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(body: dict[str, Any], scheduled: float) -> None:
        nonlocal in_flight
        try:
            r = await client.post("/v1/recommend", json=body)
            statuses[str(r.status_code)] += 1
            if r.status_code == 200:
                latencies.append((time.perf_counter() - scheduled) * 1000)
        except httpx.HTTPError as e:
            statuses[type(e).__name__] += 1
        finally:
            in_flight -= 1

    t0 = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() - t0 > limit_s:
            statuses["not_sent_time_limit"] += len(bodies) - i
            break
        if in_flight >= max_in_flight:
            statuses["not_sent_too_many_in_flight"] += 1
            continue
        in_flight += 1
        task = asyncio.create_task(one(body, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    errors = sum(n for s, n in statuses.items() if s != "200")
    return {
        "target_rate": rate,
        "requests": len(bodies),
        "achieved_rate": round(statuses["200"] / elapsed, 1),
        "seconds": round(elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "errors": errors,
        "statuses": dict(statuses),
    }


def _batch_stats(metrics_text: str) -> tuple[float, float]:
    """(forward passes, requests in them) from the server's Prometheus text."""
    count = re.search(r"^llmrec_batch_size_count (\S+)$", metrics_text, re.MULTILINE)
    total = re.search(r"^llmrec_batch_size_sum (\S+)$", metrics_text, re.MULTILINE)
    return (float(count.group(1)) if count else 0.0), (float(total.group(1)) if total else 0.0)


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout closes them from its side:
    # otherwise a request can go out on a connection the server is closing at that moment (a client-side ReadError).
    limits = httpx.Limits(max_connections=a.max_in_flight, max_keepalive_connections=a.max_in_flight, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=a.url, timeout=a.timeout, limits=limits) as client:
        ready = (await client.get("/readyz")).json()
        bodies = _bodies(a.model, max(a.requests, 1000), a.seed)
        await _run(client, bodies[:200], 50, a.max_in_flight, 30)  # warm the connections and the model
        passes0, reqs0 = _batch_stats((await client.get("/metrics")).text)
        fixed = await _run(client, bodies[: a.requests], a.rate, a.max_in_flight, a.requests / a.rate * 1.5 + 10)
        passes1, reqs1 = _batch_stats((await client.get("/metrics")).text)
        fixed["mean_batch_size"] = round((reqs1 - reqs0) / max(passes1 - passes0, 1), 2)
        print(json.dumps({"fixed": fixed}), file=sys.stderr, flush=True)

        ramp, best = [], None
        for rate in [float(r) for r in a.ramp.split(",") if r]:
            n = int(rate * a.step_seconds)
            step = await _run(
                client,
                bodies[:n] if n <= len(bodies) else (bodies * (n // len(bodies) + 1))[:n],
                rate,
                a.max_in_flight,
                a.step_seconds * 1.5 + 5,
            )
            ramp.append(step)
            print(json.dumps({"ramp": step}), file=sys.stderr, flush=True)
            held = step["errors"] == 0 and step["p99_ms"] <= a.p99_ms and step["achieved_rate"] >= 0.95 * rate
            if not held:
                break
            best = rate
            await asyncio.sleep(1)  # let queues drain between steps
    return {
        "url": a.url,
        "model": str(a.model),
        "server": ready,
        "fixed": fixed,
        "ramp": ramp,
        f"max_rate_with_p99_le_{a.p99_ms:g}ms": best,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", type=Path, required=True, help="The model folder the server runs (for request bodies).")
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--ramp", default="25,50,100,150,200,250,300,400,500,650,800,1000", help="Ramp rates ('' skips).")
    ap.add_argument("--step-seconds", type=float, default=5.0)
    ap.add_argument("--p99-ms", type=float, default=50.0)
    ap.add_argument("--max-in-flight", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    host = urlsplit(a.url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        ap.error(f"--url must be a loopback address (127.0.0.0/8, localhost, ::1), got {host!r}")
    result = asyncio.run(main_async(a))
    text = json.dumps(result, indent=2)
    print(text)
    if a.out is not None:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
