"""Micro-batching: concurrent requests wait up to ``max_wait_ms`` to share one forward pass.

A scorer call costs nearly the same for 1 or 32 histories (the output layer over the whole catalogue
dominates), so gathering the requests that arrive within a couple of milliseconds multiplies throughput for a
small, bounded wait. The forward pass runs in one dedicated worker thread, so the event loop keeps accepting and
parsing requests meanwhile; while it runs, new requests queue up and form the next batch.

    batcher = MicroBatcher(run=lambda jobs: [...one result per job...], max_batch=64, max_wait_ms=2.0)
    await batcher.start()
    result = await batcher.submit(job)
    await batcher.stop()

No torch here: ``run`` is whatever the caller gives (the app passes ``Recommender.recommend_batch``), and
``thread_init`` is how the caller sets up the worker thread (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["MicroBatcher", "Overloaded", "ShuttingDown"]

J = TypeVar("J")
R = TypeVar("R")


class Overloaded(RuntimeError):
    """The queue is full: the caller should answer 503 with Retry-After rather than wait without bound."""


class ShuttingDown(RuntimeError):
    """The batcher is stopped or stopping; no new work is taken."""


class MicroBatcher(Generic[J, R]):
    """Collect jobs for at most `max_wait_ms` (or until `max_batch` are waiting), run them as one call of `run`."""

    def __init__(
        self,
        run: Callable[[list[J]], Sequence[R]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        thread_init: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        cost: Callable[[J], int] | None = None,
        max_cost: int | None = None,
        thread_name: str = "llmrec-model",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.thread_init = thread_init
        self.on_batch = on_batch  # (batch size, seconds in `run`), called on the event loop after each batch
        # Work bound of one `run` call: jobs are added while their summed cost stays within max_cost (the first
        # job always goes), so expensive jobs (explanations) cannot hold the worker for a long pass.
        self.cost = cost or (lambda _: 1)
        self.max_cost = max_cost
        self.thread_name = thread_name
        self._held: tuple[J, asyncio.Future[R]] | None = None  # taken from the queue, did not fit: starts the next batch
        self._queue: asyncio.Queue[tuple[J, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.is_running:
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name, initializer=self.thread_init)
        self._task = asyncio.create_task(self._loop(), name="llmrec-micro-batcher")

    async def stop(self) -> None:
        """Stop taking work; jobs still queued fail with ShuttingDown. The server drains requests before this."""
        task, queue, executor = self._task, self._queue, self._executor
        self._task = self._queue = self._executor = None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        held, self._held = self._held, None
        if held is not None and not held[1].done():
            held[1].set_exception(ShuttingDown("the service is shutting down"))
        while queue is not None and not queue.empty():
            _, future = queue.get_nowait()
            if not future.done():
                future.set_exception(ShuttingDown("the service is shutting down"))
        if executor is not None:
            # Waits for a forward pass still running (its requests already failed) without blocking the loop.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def submit(self, job: J) -> R:
        """Queue one job and wait for its result (raises what `run` raised, Overloaded or ShuttingDown)."""
        if self._queue is None or not self.is_running:
            raise ShuttingDown("the service is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((job, future))
        except asyncio.QueueFull:
            raise Overloaded(f"more than {self.max_queue} requests waiting") from None
        return await future

    async def submit_many(self, jobs: Sequence[J]) -> list[R]:
        """Queue all of `jobs` or none (Overloaded when they do not all fit), and wait for their results."""
        if not jobs:
            return []
        if self._queue is not None and self._queue.qsize() + len(jobs) > self.max_queue:
            raise Overloaded(f"more than {self.max_queue} requests waiting")
        return list(await asyncio.gather(*(self.submit(j) for j in jobs)))

    async def _collect(self, queue: asyncio.Queue[tuple[J, asyncio.Future[R]]]) -> list[tuple[J, asyncio.Future[R]]]:
        """The first job waits without bound; then whatever arrives until the deadline or a full batch."""
        first, self._held = self._held, None
        batch = [first if first is not None else await queue.get()]
        spent = self.cost(batch[0][0])
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            if not queue.empty():
                entry = queue.get_nowait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):  # no task per wait, unlike asyncio.wait_for in 3.11
                        entry = await queue.get()
                except TimeoutError:
                    break
            spent += self.cost(entry[0])
            if self.max_cost is not None and spent > self.max_cost:
                self._held = entry
                break
            batch.append(entry)
        # A request whose client went away was cancelled: skip it rather than score it.
        return [(job, future) for job, future in batch if not future.done()]

    async def _loop(self) -> None:
        assert self._queue is not None and self._executor is not None
        queue, executor = self._queue, self._executor
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            if not batch:
                continue
            jobs = [job for job, _ in batch]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(executor, self.run, jobs)
                if len(results) != len(jobs):
                    raise RuntimeError(f"run returned {len(results)} results for {len(jobs)} jobs")
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(ShuttingDown("the service is shutting down"))
                raise
            except Exception as e:  # noqa: BLE001 - the callers decide what to answer; the batcher goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(jobs), time.perf_counter() - started)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
