"""/v1/info (dataset name, example users) and /v1/users/{id}/history, which the demo page shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.recommend import Recommender


def test_info_names_the_dataset_and_gives_known_example_users(client: Any, recommender: Recommender) -> None:
    info = client.get("/v1/info").json()
    assert info["dataset"] == recommender.meta["name"] == "dataset"  # the tiny fixture has no files to name it after
    assert (info["n_items"], info["n_users"]) == (recommender.n_items, len(recommender.histories))
    assert 1 <= len(info["example_user_ids"]) <= 5
    for user in info["example_user_ids"]:
        assert len(recommender.user_history(user)) >= 5
        assert client.post("/v1/recommend", json={"user_id": user, "k": 2}).status_code == 200


def test_user_history_is_most_recent_first_with_titles(client: Any, recommender: Recommender) -> None:
    full = recommender.user_history("u03")
    got = client.get("/v1/users/u03/history", params={"limit": 3}).json()
    assert got["user_id"] == "u03" and got["length"] == len(full)
    assert [i["item_id"] for i in got["items"]] == [recommender.raw_ids[i - 1] for i in full[::-1][:3]]
    assert [i["title"] for i in got["items"]] == [recommender.titles[i - 1] for i in full[::-1][:3]]
    missing = client.get("/v1/users/ghost/history")
    assert missing.status_code == 404 and missing.json()["ids"] == ["ghost"]
    assert client.get("/v1/users/u03/history", params={"limit": 0}).status_code == 422


def test_info_and_history_need_the_api_key(recommender: Recommender, make_client: Any) -> None:
    from llmrec.serve import create_app

    client = make_client(create_app(recommender, api_key="k3y"))
    assert client.get("/v1/info").status_code == 401
    assert client.get("/v1/users/u03/history").status_code == 401
    assert client.get("/v1/info", headers={"X-API-Key": "k3y"}).status_code == 200
