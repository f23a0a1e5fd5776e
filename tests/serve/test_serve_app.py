"""The HTTP service through FastAPI's TestClient: every endpoint, its answers and its errors (never a 500)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from llmrec.recommend import Recommender
from llmrec.serve import create_app


def _history(rec: Recommender, user: str) -> list[str]:
    return [rec.raw_ids[i - 1] for i in rec.user_history(user)]


def test_recommend_for_a_user_matches_the_recommender(client: TestClient, recommender: Recommender) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u03", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = recommender.recommend(user="u03", k=5)
    assert [i["item_id"] for i in body["items"]] == [e.item_id for e in expected]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert [i["title"] for i in body["items"]] == [f"Item {i['item_id']}" for i in body["items"]]
    np.testing.assert_allclose([i["score"] for i in body["items"]], [e.score for e in expected], rtol=1e-6)
    n = len(recommender.user_history("u03"))
    assert body["user_id"] == "u03"
    assert body["history_length"] == n
    assert body["history_used"] == min(n, 8)
    assert body["truncated"] is (n > 8)


def test_recommend_from_a_history(client: TestClient, recommender: Recommender) -> None:
    r = client.post("/v1/recommend", json={"history": ["3", "7", "11"], "k": 4})
    assert r.status_code == 200, r.text
    assert [i["item_id"] for i in r.json()["items"]] == [e.item_id for e in recommender.recommend(history=["3", "7", "11"], k=4)]
    assert r.json()["user_id"] is None
    assert client.post("/v1/recommend", json={"history": [3, 7]}).status_code == 422  # ids are strings, as in the data


def test_a_history_longer_than_the_model_reads_is_cut_to_the_most_recent_and_says_so(
    client: TestClient, recommender: Recommender
) -> None:
    history = [str(i) for i in range(1, 13)]  # 12 items; the tiny model reads 8
    # exclude_seen false: by default the whole history (also past the cut) is left out, so the lists would differ
    long = client.post("/v1/recommend", json={"history": history, "k": 5, "exclude_seen": False}).json()
    recent = client.post("/v1/recommend", json={"history": history[-8:], "k": 5, "exclude_seen": False}).json()
    assert (long["truncated"], long["history_length"], long["history_used"]) == (True, 12, 8)
    assert (recent["truncated"], recent["history_length"], recent["history_used"]) == (False, 8, 8)
    assert long["items"] == recent["items"]  # the model saw the same 8 most recent items


def test_exclude_seen_leaves_out_the_whole_history_even_past_the_cut(client: TestClient) -> None:
    history = [str(i) for i in range(1, 13)]
    body = client.post("/v1/recommend", json={"history": history, "k": 30, "exclude_seen": True}).json()
    assert len(body["items"]) == 30
    assert not {i["item_id"] for i in body["items"]} & set(history)
    default = client.post("/v1/recommend", json={"history": history, "k": 30}).json()
    assert default["items"] == body["items"]  # leaving the history out is the default
    included = client.post("/v1/recommend", json={"history": history, "k": 49, "exclude_seen": False}).json()
    assert {i["item_id"] for i in included["items"]} & set(history)


@pytest.mark.parametrize("k", [0, -1, 1001, "ten", 2.5, None])
def test_k_out_of_range_is_422_naming_the_field(client: TestClient, k: Any) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u03", "k": k})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_request"
    assert body["errors"][0]["loc"] == ["body", "k"]
    assert body["message"].startswith("body.k: ")


def test_k_above_the_catalogue_returns_the_whole_catalogue(client: TestClient, recommender: Recommender) -> None:
    body = client.post("/v1/recommend", json={"user_id": "u03", "k": 1000, "exclude_seen": False}).json()
    assert len(body["items"]) == recommender.n_items
    unseen = client.post("/v1/recommend", json={"user_id": "u03", "k": 1000}).json()  # the history left out
    assert len(unseen["items"]) == recommender.n_items - len(set(recommender.user_history("u03").tolist()))


@pytest.mark.parametrize("body", [{}, {"k": 3}, {"user_id": "u03", "history": ["1"]}])
def test_exactly_one_of_user_id_or_history(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 422
    assert "give exactly one of user_id or history" in r.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"history": [""]},
        {"history": ["1"], "colour": "red"},
        {"user_id": "x" * 257},
        {"history": "1,2"},
    ],
    ids=["empty-id", "unknown-field", "long-id", "history-not-a-list"],
)
def test_malformed_bodies_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_request"


def test_unknown_item_ids_are_422_naming_them(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": ["1", "nope", "2", "zzz"], "strict": True})
    assert r.status_code == 422
    assert r.json() == {
        "code": "unknown_ids",
        "message": "unknown item id(s): nope, zzz",
        "ids": ["nope", "zzz"],
        "errors": [],
    }


def test_an_unknown_user_is_422_naming_it(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"user_id": "ghost", "strict": True})
    assert (r.status_code, r.json()["code"], r.json()["ids"]) == (422, "unknown_ids", ["ghost"])
    assert "unknown user id(s): ghost" in r.json()["message"]


def test_explain_adds_the_history_items_behind_each_recommendation(client: TestClient, recommender: Recommender) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u03", "k": 3, "explain": True})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    expected = recommender.explain(user="u03", k=3)
    assert [i["item_id"] for i in items] == [e.recommendation.item_id for e in expected]
    assert [i["explanation"]["text"] for i in items] == [e.text for e in expected]
    history = set(_history(recommender, "u03"))
    for item, e in zip(items, expected, strict=True):
        contributions = item["explanation"]["contributions"]
        assert [c["item_id"] for c in contributions] == [c.item_id for c in e.contributions]
        assert {c["item_id"] for c in contributions} <= history
        assert all(c["title"] == f"Item {c['item_id']}" for c in contributions)
    plain = client.post("/v1/recommend", json={"user_id": "u03", "k": 3}).json()["items"]
    assert all(i["explanation"] is None for i in plain)


def test_diversity_reranks_like_the_recommender(client: TestClient, recommender: Recommender) -> None:
    body = client.post("/v1/recommend", json={"user_id": "u05", "k": 6, "diversity": 0.7}).json()
    expected = recommender.recommend(user="u05", k=6, diversity=0.7)
    assert [i["item_id"] for i in body["items"]] == [e.item_id for e in expected]
    assert client.post("/v1/recommend", json={"user_id": "u05", "k": 6, "diversity": 1.5}).status_code == 422


def test_a_query_blends_a_text_intent(client: TestClient, recommender: Recommender) -> None:
    pytest.importorskip("sentence_transformers", reason="the text extra is not installed")
    r = client.post("/v1/recommend", json={"user_id": "u05", "k": 5, "query": "a jazz thing"})
    assert r.status_code == 200, r.text
    expected = recommender.recommend(user="u05", k=5, query="a jazz thing")
    assert [i["item_id"] for i in r.json()["items"]] == [e.item_id for e in expected]
    blank = client.post("/v1/recommend", json={"user_id": "u05", "query": "   "})
    assert (blank.status_code, blank.json()["message"]) == (422, "query: the query is empty")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"adapt": True}, "adapt: adapt=True needs a meta-trained artifact"),
        ({"adapt": True, "explain": True}, "adapt, explain: explain together with adapt is not available"),
    ],
)
def test_an_option_this_artifact_cannot_serve_is_422_not_available(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u03", **body})
    assert (r.status_code, r.json()["code"]) == (422, "not_available")
    assert r.json()["message"].startswith(message)
    assert client.post("/v1/recommend", json={"user_id": "u03"}).status_code == 200  # the service goes on


def test_explain_is_bounded_in_k(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u03", "k": 101, "explain": True})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
    assert "k 101 is over the limit of 100 with explain" in r.json()["message"]
    assert r.json()["errors"] == [
        {"loc": ["body", "k"], "msg": "k 101 is over the limit of 100 with explain", "type": "over_limit"}
    ]


def test_batch_answers_each_request_in_order(client: TestClient) -> None:
    requests = [{"user_id": "u03", "k": 2}, {"history": ["5", "9"], "k": 3, "exclude_seen": True}, {"user_id": "u07"}]
    r = client.post("/v1/recommend/batch", json={"requests": requests})
    assert r.status_code == 200, r.text
    singles = [client.post("/v1/recommend", json=one).json() for one in requests]
    for got, single in zip(r.json()["results"], singles, strict=True):
        # Batched rows are padded to the batch's longest history: the same ranking, scores equal to float precision.
        scores = [i.pop("score") for i in got["items"]], [i.pop("score") for i in single["items"]]
        np.testing.assert_allclose(*scores, rtol=1e-5)
        assert got == single
    assert [len(x["items"]) for x in r.json()["results"]] == [2, 3, 10]


def test_batch_with_bad_requests_is_422_naming_each(client: TestClient) -> None:
    requests = [{"user_id": "u03"}, {"user_id": "ghost", "strict": True}, {"history": ["1", "nope"], "strict": True}]
    r = client.post("/v1/recommend/batch", json={"requests": requests})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "unknown_ids"
    assert body["ids"] == ["ghost", "nope"]
    assert body["message"] == "requests[1]: unknown user id(s): ghost; requests[2]: unknown item id(s): nope"


@pytest.mark.parametrize("n", [0, 257])
def test_batch_size_is_bounded(client: TestClient, n: int) -> None:
    r = client.post("/v1/recommend/batch", json={"requests": [{"user_id": "u03"}] * n})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request")


def test_items_by_id_and_by_title(client: TestClient) -> None:
    assert client.get("/v1/items/7").json() == {
        "item_id": "7",
        "title": "Item 7",
        "text": "Item 7, a jazz thing.",  # tests/conftest.py: genre i % 5
        "categories": ["jazz"],
    }
    missing = client.get("/v1/items/nope")
    assert (missing.status_code, missing.json()["code"], missing.json()["ids"]) == (404, "not_found", ["nope"])
    found = client.get("/v1/items", params={"query": "item 1", "limit": 3}).json()["items"]
    assert [i["item_id"] for i in found] == ["1", "10", "11"]  # case-insensitive, catalogue order
    exact_first = client.get("/v1/items", params={"query": "12"}).json()["items"]
    assert [i["item_id"] for i in exact_first] == ["12"]  # "Item 12" also contains it: listed once
    assert client.get("/v1/items", params={"query": "no such title"}).json() == {"items": []}
    assert client.get("/v1/items", params={"query": ""}).status_code == 422
    assert client.get("/v1/items", params={"query": "item", "limit": 101}).status_code == 422


def test_health_and_readiness(client: TestClient, recommender: Recommender) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {
        "status": "ready",
        "n_items": recommender.n_items,
        "max_seq_len": 8,
        "max_batch": 64,
    }


def test_before_startup_readyz_and_recommend_are_503_not_500(recommender: Recommender) -> None:
    client = TestClient(create_app(recommender))  # no `with`: the lifespan (batcher, warm-up) never ran
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["code"], ready.headers["retry-after"]) == (503, "not_ready", "1")
    r = client.post("/v1/recommend", json={"user_id": "u03"})
    assert (r.status_code, r.json()["code"]) == (503, "not_ready")
    assert client.get("/healthz").status_code == 200


def test_a_body_over_the_limit_is_413(recommender: Recommender, make_client: Any) -> None:
    client = make_client(create_app(recommender, max_body_bytes=1000))
    big = {"history": ["1"] * 400}  # ~2.4 kB of JSON
    r = client.post("/v1/recommend", json=big)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    assert r.json()["message"] == "request body over 1000 bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"history": ['
        for _ in range(300):
            yield b'"1", '
        yield b'"1"]}'

    r = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    assert client.post("/v1/recommend", json={"history": ["1"] * 100}).status_code == 200  # 600 bytes: fine


def test_bodies_that_are_not_json_are_4xx(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    bad_json = client.post("/v1/recommend", content=b'{"user_id": ', headers=headers)
    assert (bad_json.status_code, bad_json.json()["code"]) == (422, "invalid_request")
    not_utf8 = client.post("/v1/recommend", content=b'{"user_id": "u\xff"}', headers=headers)
    assert not_utf8.status_code == 400
    lone_surrogate = client.post("/v1/recommend", content=b'{"history": ["\\ud800"]}', headers=headers)
    assert (lone_surrogate.status_code, lone_surrogate.json()["code"]) == (422, "invalid_request")
    non_ascii = client.post("/v1/recommend", json={"history": ["é"], "strict": True})
    assert (non_ascii.status_code, non_ascii.json()["ids"]) == (422, ["é"])


def test_api_key_when_configured(recommender: Recommender, make_client: Any) -> None:
    client = make_client(create_app(recommender, api_key="s3cret"))
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
        r = client.post("/v1/recommend", json={"user_id": "u03"}, headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        assert r.headers["www-authenticate"] == "ApiKey"
        assert client.get("/v1/items/1", headers=headers).status_code == 401
    assert client.post("/v1/recommend", json={"user_id": "u03"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/"):
        assert client.get(open_path).status_code == 200
    assert "APIKeyHeader" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_without_a_key_the_openapi_document_declares_no_security(client: TestClient, recommender: Recommender) -> None:
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})
    with pytest.raises(ValueError, match="non-empty"):
        create_app(recommender, api_key="")


def test_openapi_states_the_limits(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    assert (request["k"]["minimum"], request["k"]["maximum"]) == (1, 1000)
    assert set(schema["paths"]) == {
        "/v1/recommend",
        "/v1/recommend/batch",
        "/v1/items",
        "/v1/items/{item_id}",
        "/v1/info",
        "/v1/users/{user_id}/history",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    responses = set(schema["paths"]["/v1/recommend"]["post"]["responses"])
    assert responses == {"200", "400", "401", "408", "413", "415", "422", "503", "504"}


def test_metrics_count_requests_latency_and_batch_sizes(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v1/recommend", json={"user_id": "u03"})
    client.post("/v1/recommend", json={"user_id": "ghost", "strict": True})
    client.get("/v1/items/nope")
    client.get("/no/such/path")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert 'llmrec_http_requests_total{method="POST",route="/v1/recommend",status="200"} 3.0' in lines
    assert 'llmrec_http_requests_total{method="POST",route="/v1/recommend",status="422"} 1.0' in lines
    assert 'llmrec_http_requests_total{method="GET",route="/v1/items/{item_id}",status="404"} 1.0' in lines
    assert 'llmrec_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in lines
    assert 'llmrec_http_request_duration_seconds_count{route="/v1/recommend"} 4.0' in lines
    assert "llmrec_batch_size_count 4.0" in lines  # warm-up + 3 (the unknown user never reached the model)
    assert "llmrec_forward_duration_seconds_count 4.0" in lines


def test_a_failure_inside_the_model_is_a_structured_503_and_the_service_goes_on(
    recommender: Recommender, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recommender.recommend_batch

    def flaky(histories: list[np.ndarray], k: int, **kwargs: Any) -> Any:
        if any(len(h) == 3 for h in histories):
            raise RuntimeError("CUDA exploded")
        return real(histories, k, **kwargs)

    monkeypatch.setattr(recommender, "recommend_batch", flaky)
    client = make_client(create_app(recommender))
    r = client.post("/v1/recommend", json={"history": ["1", "2", "3"]})
    assert r.status_code == 503
    assert r.json()["code"] == "model_error"
    assert "CUDA" not in r.text  # internals stay in the log
    assert client.post("/v1/recommend", json={"history": ["1", "2"]}).status_code == 200


def test_the_demo_page_is_served_and_not_in_the_api_document(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for element in ('id="user-id"', 'id="item-search"', 'id="recommend-history"', 'id="results"'):
        assert element in r.text
    assert "innerHTML" not in r.text and "outerHTML" not in r.text  # server text goes in as text only


def test_importing_the_service_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import llmrec.serve\n"
        "from llmrec.serve import create_app\n"
        "print(sorted(m for m in ('torch', 'polars', 'llmrec.recommend', 'llmrec.models') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
