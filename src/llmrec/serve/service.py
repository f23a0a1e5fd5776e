"""What the routes work with: `Service`, one loaded `Recommender` behind two micro-batchers, plus its catalogue.

Two lanes, each a MicroBatcher (``batcher.py``) with a model thread of its own (one torch thread each):

- plain requests (no option but ``k`` and ``exclude_seen``): concurrent ones within ``max_wait_ms`` share one forward
  pass. Nothing else ever waits in this queue, so a plain request's latency does not depend on expensive ones.
- requests with options (``query``, ``diversity``, ``adapt``, ``explain``): grouped by their values, ``explain`` per
  request; a bounded queue (``ServeLimits.options_queue``, 503 ``overloaded`` beyond) and a deadline
  (``options_timeout``, 504 ``timeout``). What one request or call may ask for is bounded (``limits.py``), so a pass
  of this lane is bounded too; a request past its deadline is dropped from the queue if it has not started.

A failure inside the model is 503 ``model_error`` (logged with its traceback), an option the artifact cannot serve
422 ``not_available``, a full queue 503 ``overloaded`` with Retry-After.

This module imports neither torch nor the model code (only the worker thread imports torch, to set its thread
count): the recommender comes in as an argument.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.filters import ItemFilter
from llmrec.serve.batcher import MicroBatcher, Overloaded, ShuttingDown
from llmrec.serve.errors import ApiError
from llmrec.serve.limits import ServeLimits, group_key
from llmrec.serve.metrics import Metrics
from llmrec.serve.schemas import (
    MAX_LLM_TEXT_K,
    Contribution,
    ItemExplanation,
    ItemInfo,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ServiceInfo,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmrec.recommend import Explanation, Recommender

__all__ = ["Job", "Service", "model_threads", "one_torch_thread"]

log = logging.getLogger("llmrec.serve")

# Errors of a job with options that mean "this artifact cannot do that" (no adapter, no text model installed, a
# model without item features for diversity ...): 422 not_available, not a server failure.
_NOT_AVAILABLE = (ValueError, NotImplementedError, ImportError, TypeError, AttributeError)


@dataclass(frozen=True)
class Job:
    history: np.ndarray  # internal item ids, oldest first, full length (exclude_seen uses all of it)
    k: int
    exclude_seen: bool
    query: str | None = None
    diversity: float = 0.0
    adapt: bool = False
    explain: bool = False
    filters: ItemFilter | None = None  # business rules (None: the default, unavailable items left out)
    llm_text: bool = False  # with explain: the reasons written by the service's LLM (checked; `Recommender.llm_writer`)
    new_items: int = 0  # the last new_items places hold new items (`Recommender.recommend_batch`)

    @property
    def is_plain(self) -> bool:
        """No option: the plain lane."""
        return self.query is None and self.diversity <= 0 and not self.adapt and not self.explain

    def options(self) -> list[str]:
        """The options beyond plain ranking that this job uses (for messages)."""
        used = {
            "query": self.query is not None,
            "diversity": self.diversity > 0,
            "adapt": self.adapt,
            "new_items": self.new_items > 0,
        }
        return [name for name, is_used in (used | {"explain": self.explain, "llm_text": self.llm_text}).items() if is_used]


# A job's answer from the worker: its recommendations, its explanations, or the error that stopped it.
Answer = Any  # list[Recommendation] | list[Explanation] | Exception


def one_torch_thread() -> None:
    # The worker thread is the only one that runs the model; one intra-op thread keeps it from fighting the event
    # loop (and anything else on the machine) for cores. torch is already imported by the Recommender, and so is
    # faiss when the Recommender retrieves through an index (its OpenMP thread count is per calling thread).
    _set_threads(1)


def model_threads(threads: int) -> Callable[[], None]:
    """The model threads' initializer for ``llmrec serve --threads N`` (0: the default, `one_torch_thread`)."""
    if threads <= 1:
        return one_torch_thread
    return lambda: _set_threads(threads)


def _set_threads(n: int) -> None:
    import sys

    import torch

    torch.set_num_threads(n)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(n)


class Service:
    """One recommender behind a micro-batcher, with its catalogue as plain lists (no polars calls per request)."""

    def __init__(
        self,
        rec: Recommender,
        *,
        queries: bool,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        thread_init: Callable[[], None] | None,
        metrics: Metrics,
        limits: ServeLimits | None = None,
        llm_text: bool = False,
    ) -> None:
        self.rec = rec
        self.queries = queries
        self.llm_text = llm_text  # requests may ask for the LLM's text (`llmrec serve --llm-text`)
        self.max_batch = max_batch
        self.max_seq_len = int(rec.max_seq_len)
        self.metrics = metrics
        self.limits = limits or ServeLimits()
        self.is_ready = False
        self.batcher: MicroBatcher[Job, Answer] = MicroBatcher(  # plain requests only
            self.run,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            thread_init=thread_init,
            on_batch=metrics.on_batch,
        )
        # Requests with options, in a thread of their own. The model is shared read-only between the two threads
        # (eval mode, no grad; explanations use occlusion, which adds no hook to the model).
        self.heavy: MicroBatcher[Job, Answer] = MicroBatcher(
            self.run,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=self.limits.options_queue,
            thread_init=thread_init,
            cost=self.job_cost,
            max_cost=max(max_batch, self.max_seq_len + 1),
            thread_name="llmrec-options",
        )
        self.raw_ids: list[str] = [str(i) for i in rec.items["item"].to_list()]
        self.titles: list[str | None] = rec.items["title"].to_list()
        n = len(self.raw_ids)
        self.texts: list[str | None] = rec.items["text"].to_list() if "text" in rec.items.columns else [None] * n
        self.categories: list[list[str] | None] = (
            rec.items["categories"].to_list() if "categories" in rec.items.columns else [None] * n
        )
        self.position = {raw: i for i, raw in enumerate(self.raw_ids)}
        self.titles_lower = [(t or "").lower() for t in self.titles]
        self.demo_page = resources.files("llmrec.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        user_ids = list(rec.histories)
        self.n_users = len(user_ids)
        self.examples = [u for u in user_ids if len(rec.histories[u]) >= 5][:5] or user_ids[:5]
        self.dataset_name = str(rec.meta.get("name") or (rec.meta.get("source") or {}).get("dataset") or "unnamed dataset")

    # ---- the worker thread ---------------------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> list[Answer]:
        """Answer a batch in the worker thread: one `recommend_batch` call per group of jobs with the same options.

        Plain requests (the common case) form one group: one forward pass at the largest k, each row cut to its own
        k, per-row exclude_seen. A query, diversity or adapt makes a group of its own (the Recommender applies them
        per call); diversity also groups by k, since its candidate pool grows with k, and so does new_items, whose
        places are the last of the k. `explain` runs per job. A group's error becomes the answer of its jobs only.
        """
        answers: list[Answer] = [None] * len(jobs)
        groups: dict[tuple[tuple[str | None, float, bool, int], int, int], list[int]] = {}
        for i, job in enumerate(jobs):
            if job.explain:
                answers[i] = self._explained(job)
            else:
                quota = (job.new_items, job.k if job.new_items else 0)
                groups.setdefault((group_key(job.query, job.diversity, job.adapt, job.k), *quota), []).append(i)
        for ((query, diversity, adapt, _), new_items, _), members in groups.items():
            options: dict[str, Any] = {}
            if new_items:
                options["new_items"] = new_items
            if query is not None:
                options["query"] = query
            if diversity > 0:
                options["diversity"] = diversity
            if adapt:
                options["adapt"] = True
            out: list[Any]
            try:
                out = self.rec.recommend_batch(
                    [jobs[i].history for i in members],
                    max(jobs[i].k for i in members),
                    exclude_seen=[jobs[i].exclude_seen for i in members],
                    filters=[jobs[i].filters for i in members],
                    **options,
                )
            except Exception as e:  # noqa: BLE001 - becomes these jobs' answer (422 or 503), the others go on
                out = [e] * len(members)
            for i, recs in zip(members, out, strict=True):
                answers[i] = recs if isinstance(recs, Exception) else recs[: jobs[i].k]
        return answers

    def _explained(self, job: Job) -> list[Explanation] | Exception:
        if job.adapt:
            return NotImplementedError("explain together with adapt is not available")
        try:
            return self.rec.explain_history(
                job.history,
                k=job.k,
                exclude_seen=job.exclude_seen,
                query=job.query,
                diversity=job.diversity,
                filters=job.filters,
                new_items=job.new_items,
                generator=self.rec.llm_writer() if job.llm_text else None,  # loaded once, at start-up
            )
        except Exception as e:  # noqa: BLE001 - the endpoint turns it into 422 or 503
            return e

    def job_cost(self, job: Job) -> int:
        """Work of a job in scored rows: 1, or with explain one more per history item read (occlusion)."""
        return 1 + min(len(job.history), self.max_seq_len) if job.explain else 1

    # ---- requests ------------------------------------------------------------------------------------------------
    def job_for(self, req: RecommendRequest) -> tuple[Job, RecommendResponse]:
        """The batcher job and the response fields known before scoring; raises ApiError (422)."""
        if req.query is not None and not req.query.strip():
            raise ApiError(422, "invalid_request", "query: the query is empty")
        if req.query is not None and not self.queries:
            raise ApiError(422, "not_available", "query: queries are turned off on this service")
        if req.llm_text and not req.explain:
            raise ApiError(422, "invalid_request", "llm_text: goes with explain (it words the explanation)")
        if req.llm_text and not self.llm_text:
            raise ApiError(
                422, "not_available", "llm_text: the LLM's text is turned off on this service (llmrec serve --llm-text)"
            )
        if req.llm_text and req.k > MAX_LLM_TEXT_K:
            raise ApiError(422, "invalid_request", f"llm_text: k {req.k} is over the limit of {MAX_LLM_TEXT_K} with llm_text")
        try:  # unknown ids: skipped and listed (ignored_items, fallback), or 422 with `strict`
            history, ignored, fallback = self.rec.resolve_history(req.history, req.user_id, strict=req.strict)
        except KeyError as e:  # recommend.UnknownIdError (not imported here: that would import torch)
            raise ApiError(422, "unknown_ids", str(e), ids=[str(i) for i in getattr(e, "ids", [])]) from None
        n = len(history)
        frame = RecommendResponse(
            items=[],
            user_id=req.user_id,
            history_length=n,
            history_used=min(n, self.max_seq_len),
            truncated=n > self.max_seq_len,
            ignored_items=ignored,
            fallback=fallback,
        )
        exclude_seen = self.rec.exclude_seen_default if req.exclude_seen is None else req.exclude_seen
        rules = ItemFilter.of(
            req.include_items, req.exclude_items, req.include_categories, req.exclude_categories, req.include_unavailable
        )
        frame.ignored_categories = self.rec.masks.unknown_categories(rules)
        filters = None if rules == ItemFilter() else rules
        job = Job(
            history,
            req.k,
            exclude_seen,
            req.query,
            req.diversity or 0.0,
            req.adapt,
            req.explain,
            filters,
            req.llm_text,
            req.new_items,
        )
        return job, frame

    async def start(self) -> None:
        await self.batcher.start()
        await self.heavy.start()

    async def stop(self) -> None:
        await self.heavy.stop()
        await self.batcher.stop()

    async def _lanes(self, jobs: list[Job]) -> list[Answer]:
        """Plain jobs through the micro-batcher, the others through the options lane within the deadline."""
        if len(jobs) == 1 and jobs[0].is_plain:  # the common case, without a gather
            return [await self.batcher.submit(jobs[0])]
        plain = [i for i, job in enumerate(jobs) if job.is_plain]
        heavy = [i for i, job in enumerate(jobs) if not job.is_plain]
        timeout = self.limits.options_timeout
        try:
            parts = await asyncio.gather(
                self.batcher.submit_many([jobs[i] for i in plain]),
                asyncio.wait_for(self.heavy.submit_many([jobs[i] for i in heavy]), timeout),
            )
        except TimeoutError:
            log.warning("a request with options ran past its %.1f s deadline: answered 504", timeout)
            raise ApiError(
                504,
                "timeout",
                f"the options ({', '.join(sorted({o for i in heavy for o in jobs[i].options()}))}) took longer than "
                f"{timeout:g} s; ask for less (a smaller k, fewer distinct options per call) or retry",
                headers={"Retry-After": "1"},
            ) from None
        answers: list[Answer] = [None] * len(jobs)
        for indices, found in zip((plain, heavy), parts, strict=True):
            for i, answer in zip(indices, found, strict=True):
                answers[i] = answer
        return answers

    async def scored(self, jobs: list[Job]) -> list[Answer]:
        """The workers' answers, in order; an answer that is an error raises ApiError (the first one, in order)."""
        try:
            answers = await self._lanes(jobs)
        except Overloaded as e:
            raise ApiError(503, "overloaded", f"{e}; retry shortly", headers={"Retry-After": "1"}) from None
        except ShuttingDown as e:
            raise ApiError(503, "not_ready", str(e), headers={"Retry-After": "1"}) from None
        except ApiError:
            raise
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

    @staticmethod
    def answer(frame: RecommendResponse, found: list[Any]) -> RecommendResponse:
        """Fill the response from Recommendations, or from Explanations (each holds its Recommendation)."""
        items = []
        for entry in found:
            r = getattr(entry, "recommendation", entry)
            why = None
            if r is not entry:  # an llmrec.recommend.Explanation
                contributions = [Contribution(item_id=c.item_id, title=c.title, weight=c.weight) for c in entry.contributions]
                why = ItemExplanation(
                    text=entry.text, contributions=contributions, written_by=entry.written_by, fallback=entry.fallback
                )
            items.append(
                RecommendedItem(
                    item_id=r.item_id, score=r.score, rank=r.rank, title=r.title, categories=list(r.categories), explanation=why
                )
            )
        frame.items = items
        return frame

    # ---- catalogue and users ---------------------------------------------------------------------------------------
    def item_info(self, i: int) -> ItemInfo:
        return ItemInfo(
            item_id=self.raw_ids[i], title=self.titles[i], text=self.texts[i], categories=list(self.categories[i] or [])
        )

    def search(self, query: str, limit: int) -> list[int]:
        """Catalogue rows whose title contains `query` (an exact id match first), in catalogue order."""
        needle = query.lower()
        found = [self.position[query]] if query in self.position else []
        for i, title in enumerate(self.titles_lower):
            if len(found) >= limit:
                break
            if needle in title and (not found or i != found[0]):
                found.append(i)
        return found[:limit]

    def info(self) -> ServiceInfo:
        return ServiceInfo(
            dataset=self.dataset_name,
            n_items=self.rec.n_items,
            n_users=self.n_users,
            example_user_ids=self.examples,
            exclude_seen=self.rec.exclude_seen_default,
            llm_text=self.llm_text,
        )
