"""Micro-batching: concurrent requests share one forward pass; the event loop never waits for the model."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from llmrec.recommend import Recommender
from llmrec.serve import create_app
from llmrec.serve.batcher import MicroBatcher, Overloaded, ShuttingDown


def _recording_run(calls: list[list[int]], delay: float = 0.0) -> Any:
    def run(jobs: list[int]) -> list[int]:
        calls.append(list(jobs))
        time.sleep(delay)
        return [j * 10 for j in jobs]

    return run


def test_concurrent_jobs_within_the_wait_share_one_call() -> None:
    calls: list[list[int]] = []

    async def main() -> list[int]:
        batcher = MicroBatcher(_recording_run(calls), max_batch=64, max_wait_ms=50)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(j) for j in range(8)))
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert calls == [list(range(8))]


def test_batches_never_exceed_max_batch() -> None:
    calls: list[list[int]] = []

    async def main() -> list[int]:
        batcher = MicroBatcher(_recording_run(calls), max_batch=4, max_wait_ms=50)
        await batcher.start()
        try:
            return await batcher.submit_many(list(range(10)))
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == [j * 10 for j in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]


def test_a_failing_batch_fails_its_jobs_and_the_batcher_goes_on() -> None:
    def run(jobs: list[int]) -> list[int]:
        if 13 in jobs:
            raise RuntimeError("bad luck")
        return jobs

    async def main() -> tuple[list[Any], int]:
        batcher = MicroBatcher(run, max_wait_ms=20)
        await batcher.start()
        try:
            failed = await asyncio.gather(batcher.submit(13), batcher.submit(1), return_exceptions=True)
            return failed, await batcher.submit(2)
        finally:
            await batcher.stop()

    failed, later = asyncio.run(main())
    assert [type(f) for f in failed] == [RuntimeError, RuntimeError]  # same batch, same fate
    assert later == 2


def test_a_full_queue_is_overloaded_and_a_stopped_batcher_refuses() -> None:
    release = threading.Event()

    def run(jobs: list[int]) -> list[int]:
        release.wait(5)
        return jobs

    async def main() -> None:
        batcher = MicroBatcher(run, max_batch=1, max_wait_ms=0, max_queue=2)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(0))  # taken by the worker, which blocks
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]  # fill the queue
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit(3)
        release.set()
        assert await first == 0
        assert await asyncio.gather(*queued) == [1, 2]
        await batcher.stop()
        with pytest.raises(ShuttingDown):
            await batcher.submit(4)

    asyncio.run(main())


def test_stop_fails_queued_jobs_instead_of_leaving_them_hanging() -> None:
    release = threading.Event()

    def run(jobs: list[int]) -> list[int]:
        release.wait(5)
        return jobs

    async def main() -> list[Any]:
        batcher = MicroBatcher(run, max_batch=1, max_wait_ms=0)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.01)
        release.set()
        await stopping
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, ShuttingDown) for r in results), results


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(_recording_run([]), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(_recording_run([]), max_wait_ms=-1)


# ---- through the app ------------------------------------------------------------------------------------------
async def _with_app(app: Any, body: Any) -> Any:
    """Run `body(client)` against `app` with its lifespan started (batcher up, warm-up done)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)


def test_concurrent_requests_are_one_forward_pass(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_sizes: list[int] = []
    real = recommender.recommend_batch

    def spy(histories: list[np.ndarray], k: int, **kwargs: Any) -> Any:
        batch_sizes.append(len(histories))
        return real(histories, k, **kwargs)

    monkeypatch.setattr(recommender, "recommend_batch", spy)
    app = create_app(recommender, max_wait_ms=100)  # a long wait, so that all 8 surely meet
    users = [f"u{i:02d}" for i in range(1, 9)]

    async def body(client: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(*(client.post("/v1/recommend", json={"user_id": u, "k": 3 + i}) for i, u in enumerate(users)))

    responses = asyncio.run(_with_app(app, body))
    assert batch_sizes == [1, 8]  # the warm-up, then all 8 requests in one pass
    for i, (user, r) in enumerate(zip(users, responses, strict=True)):
        assert r.status_code == 200, r.text
        expected = [e.item_id for e in real([recommender.user_history(user)], 3 + i)[0]]
        assert [item["item_id"] for item in r.json()["items"]] == expected  # each with its own k
    samples = {s.name: s.value for s in app.state.metrics.batch_size.collect()[0].samples}
    assert (samples["llmrec_batch_size_count"], samples["llmrec_batch_size_sum"]) == (2.0, 9.0)


def test_mixed_exclude_seen_in_one_batch(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_sizes: list[int] = []
    real = recommender.recommend_batch

    def spy(histories: list[np.ndarray], k: int, **kwargs: Any) -> Any:
        batch_sizes.append(len(histories))
        return real(histories, k, **kwargs)

    monkeypatch.setattr(recommender, "recommend_batch", spy)
    app = create_app(recommender, max_wait_ms=100)
    history = [str(i) for i in range(1, 9)]

    async def body(client: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(
            client.post("/v1/recommend", json={"history": history, "k": 49, "exclude_seen": True}),
            client.post("/v1/recommend", json={"history": history, "k": 49, "exclude_seen": False}),
        )

    excluded, kept = asyncio.run(_with_app(app, body))
    assert batch_sizes == [1, 2]
    assert len(kept.json()["items"]) == 49 and set(history) <= {i["item_id"] for i in kept.json()["items"]}
    assert len(excluded.json()["items"]) == 41 and not set(history) & {i["item_id"] for i in excluded.json()["items"]}


def test_the_event_loop_answers_while_the_model_works(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    real = recommender.recommend_batch

    def slow(histories: list[np.ndarray], k: int, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return real(histories, k, **kwargs)

    app = create_app(recommender)

    async def body(client: httpx.AsyncClient) -> tuple[float, float, int]:
        monkeypatch.setattr(recommender, "recommend_batch", slow)  # after the warm-up
        started = time.perf_counter()
        slow_request = asyncio.create_task(client.post("/v1/recommend", json={"user_id": "u03"}))
        await asyncio.sleep(0.05)
        health = await client.get("/healthz")
        health_at = time.perf_counter() - started
        assert health.status_code == 200
        r = await slow_request
        return health_at, time.perf_counter() - started, r.status_code

    health_at, slow_done_at, status = asyncio.run(_with_app(app, body))
    assert status == 200
    assert health_at < 0.4 < slow_done_at  # /healthz did not wait for the 0.5 s forward pass


def test_requests_with_options_are_grouped_by_their_values(recommender: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    real = recommender.recommend_batch

    def spy(histories: list[np.ndarray], k: int, **kwargs: Any) -> Any:
        calls.append(
            (len(histories), {key: v for key, v in kwargs.items() if key != "exclude_seen" and v != [None] * len(histories)})
        )
        return real(histories, k, **kwargs)

    monkeypatch.setattr(recommender, "recommend_batch", spy)
    app = create_app(recommender, max_wait_ms=100)
    bodies = [{"user_id": f"u{i:02d}"} for i in range(1, 5)]  # 4 plain
    bodies += [{"user_id": f"u{i:02d}", "diversity": 0.5} for i in range(5, 8)]  # 3 with the same diversity
    bodies += [{"user_id": "u09", "diversity": 0.9}]  # 1 with another

    async def body(client: httpx.AsyncClient) -> list[httpx.Response]:
        return await asyncio.gather(*(client.post("/v1/recommend", json=b) for b in bodies))

    responses = asyncio.run(_with_app(app, body))
    assert all(r.status_code == 200 for r in responses)
    assert calls[0] == (1, {})  # the warm-up
    assert sorted(calls[1:], key=str) == sorted([(4, {}), (3, {"diversity": 0.5}), (1, {"diversity": 0.9})], key=str)
    samples = {s.name: s.value for s in app.state.metrics.batch_size.collect()[0].samples}
    # The plain lane: the warm-up, then one pass of the 4 plain requests (the options have a lane of their own).
    assert samples["llmrec_batch_size_sum"] == 5.0 and samples["llmrec_batch_size_count"] == 2.0
