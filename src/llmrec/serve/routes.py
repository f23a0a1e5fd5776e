"""The service's routes: ``v1`` (recommendations, the catalogue, users; behind the API key when the server has one)
and ``operations`` (health, readiness, metrics, the demo page). Each route reaches the app's `Service` (the loaded
recommender, its batcher and catalogue, built by `llmrec.serve.app.create_app`) through the `service` dependency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmrec.serve.errors import ERRORS, ApiError, require_json_body
from llmrec.serve.limits import check_costs
from llmrec.serve.schemas import (
    MAX_ID_CHARS,
    BatchRecommendRequest,
    BatchRecommendResponse,
    ErrorResponse,
    HealthResponse,
    ItemInfo,
    ItemList,
    ReadyResponse,
    RecommendRequest,
    RecommendResponse,
    ServiceInfo,
    UserHistory,
)
from llmrec.serve.service import Service

__all__ = ["operations", "service", "v1"]


async def service(request: Request) -> Service:
    """The app's `Service` (a FastAPI dependency; async, so FastAPI calls it on the event loop instead of sending
    it to a worker thread: a thread round trip per request was most of the service's own time per request)."""
    found: Service = request.app.state.service
    return found


ServiceDep = Annotated[Service, Depends(service)]


v1 = APIRouter(responses=ERRORS)
operations = APIRouter(tags=["operations"])


# ---- recommendations ---------------------------------------------------------------------------------------------
@v1.post("/v1/recommend", response_model=RecommendResponse, dependencies=[Depends(require_json_body)], tags=["recommend"])
async def recommend(svc: ServiceDep, req: RecommendRequest) -> RecommendResponse:
    """Top-k items for a known user (`user_id`) or a history of raw item ids (`history`)."""
    check_costs((req,), svc.limits, batch=False)
    job, frame = svc.job_for(req)
    (found,) = await svc.scored([job])
    return svc.answer(frame, found)


@v1.post(
    "/v1/recommend/batch", response_model=BatchRecommendResponse, dependencies=[Depends(require_json_body)], tags=["recommend"]
)
async def recommend_batch(svc: ServiceDep, req: BatchRecommendRequest) -> BatchRecommendResponse:
    """Several requests in one call; one answer per request, in order. Any bad request fails the call (422)."""
    check_costs(req.requests, svc.limits, batch=True)
    prepared, problems = [], []
    for i, one in enumerate(req.requests):
        try:
            prepared.append(svc.job_for(one))
        except ApiError as e:
            problems.append((i, e))
    if problems:
        # The first problem's code; the message names each request; `ids` gathers every unknown id.
        message = "; ".join(f"requests[{i}]: {e.message}" for i, e in problems)
        ids = list(dict.fromkeys(id_ for _, e in problems for id_ in e.ids))
        raise ApiError(422, problems[0][1].code, message, ids=ids)
    results = await svc.scored([job for job, _ in prepared])
    return BatchRecommendResponse(results=[svc.answer(frame, recs) for (_, frame), recs in zip(prepared, results, strict=True)])


# ---- catalogue -----------------------------------------------------------------------------------------------------
@v1.get("/v1/items", response_model=ItemList, tags=["items"])
async def search_items(
    svc: ServiceDep,
    query: str = Query(min_length=1, max_length=200, description="Case-insensitive text to find in titles, or an exact item id."),
    limit: int = Query(20, ge=1, le=100),
) -> ItemList:
    """Items whose title contains `query` (an exact id match first), in catalogue order."""
    return ItemList(items=[svc.item_info(i) for i in svc.search(query, limit)])


@v1.get(
    "/v1/items/{item_id}",
    response_model=ItemInfo,
    tags=["items"],
    responses={404: {"model": ErrorResponse, "description": "Unknown item id."}},
)
async def get_item(svc: ServiceDep, item_id: str = Path(max_length=MAX_ID_CHARS)) -> ItemInfo:
    """One catalogue entry by raw item id."""
    if item_id not in svc.position:
        raise ApiError(404, "not_found", f"unknown item id: {item_id}", ids=[item_id])
    return svc.item_info(svc.position[item_id])


# ---- users and the service (the demo page's header and history panel) -------------------------------------------
@v1.get("/v1/info", response_model=ServiceInfo, tags=["users"])
async def service_info(svc: ServiceDep) -> ServiceInfo:
    """The dataset the model was trained on, its size, and a few user ids to try."""
    return svc.info()


@v1.get(
    "/v1/users/{user_id}/history",
    response_model=UserHistory,
    tags=["users"],
    responses={404: {"model": ErrorResponse, "description": "Unknown user id."}},
)
async def user_history(
    svc: ServiceDep, user_id: str = Path(max_length=MAX_ID_CHARS), limit: int = Query(20, ge=1, le=1000)
) -> UserHistory:
    """A known user's history as the model reads it for `user_id` requests: the most recent items first."""
    histories = svc.rec.histories
    if user_id not in histories:
        raise ApiError(404, "not_found", f"unknown user id: {user_id}", ids=[user_id])
    history = histories[user_id]
    recent = [int(i) - 1 for i in history[::-1][:limit]]  # item ids are 1-based rows of the catalogue
    return UserHistory(user_id=user_id, length=len(history), items=[svc.item_info(i) for i in recent])


# ---- operations ----------------------------------------------------------------------------------------------------
@operations.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up (it says nothing of the model: see /readyz)."""
    return HealthResponse(status="ok")


@operations.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "Starting, stopping, or the warm-up failed."}},
)
async def readyz(svc: ServiceDep) -> ReadyResponse:
    """Ready when the model has answered a warm-up request, the text encoder is loaded (when queries are on or the
    model reads item text) and the batcher runs."""
    if not (svc.is_ready and svc.batcher.is_running):
        raise ApiError(503, "not_ready", "the model is not ready", headers={"Retry-After": "1"})
    return ReadyResponse(status="ready", n_items=svc.rec.n_items, max_seq_len=svc.max_seq_len, max_batch=svc.max_batch)


@operations.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus text format."}},
)
async def prometheus_metrics(svc: ServiceDep) -> Response:
    """Prometheus metrics: llmrec_http_requests_total, llmrec_http_request_duration_seconds, llmrec_batch_size, llmrec_forward_duration_seconds."""
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@operations.get("/", response_class=HTMLResponse, include_in_schema=False)
async def demo(svc: ServiceDep) -> HTMLResponse:
    return HTMLResponse(svc.demo_page)
