"""Recommender over a saved artifact: raw ids in, ranked raw ids with catalogue titles out; unknown ids; model dispatch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.data.sequences import pad_left
from llmrec.models.baselines import ItemKNN, MostPopular
from llmrec.models.next_item_lm import NextItemLM
from llmrec.recommend import Recommender, UnknownIdError, load_model
from llmrec.training import build_model, save_artifact

TINY_MODEL = dict(max_seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)

MAKERS: dict[str, Callable[[PreparedDataset], Any]] = {
    "next-item-lm": lambda ds: build_model(ds, TINY_MODEL, seed=0)[0].eval(),
    "most-popular": lambda ds: MostPopular.fit(ds.train_sequences(), ds.n_items),
    "item-knn": lambda ds: ItemKNN.fit(ds.train_sequences(), ds.n_items, max_seq_len=8),
}


@pytest.fixture
def artifact(tiny_prepared: PreparedDataset, tmp_path: Path) -> tuple[NextItemLM, Path]:
    model = MAKERS["next-item-lm"](tiny_prepared)
    return model, save_artifact(model, tiny_prepared, tmp_path / "model")


def _raw_history(ds: PreparedDataset, user: int) -> list[str]:
    raw = ds.raw_item_ids()
    return [raw[i - 1] for i in ds.sequences[user]]


def test_artifact_layout(artifact: tuple[NextItemLM, Path]) -> None:
    _, path = artifact
    assert sorted(p.name for p in path.iterdir()) == [
        ".llmrec.json",  # the marker that says llmrec wrote this folder (llmrec.outputs)
        "config.json",
        "dataset.json",
        "histories.parquet",
        "items.parquet",
        "manifest.json",  # every file above with its size and SHA-256 (llmrec.artifact.write_manifest)
        "model.safetensors",
    ]
    assert not any(p.name.startswith(".model.tmp-") for p in path.parent.iterdir())


def test_recommend_from_a_raw_history(artifact: tuple[NextItemLM, Path], tiny_prepared: PreparedDataset) -> None:
    model, path = artifact
    rec = Recommender.load(path)
    history = _raw_history(tiny_prepared, 0)[:4]
    recs = rec.recommend(history=history, k=5, exclude_seen=False)

    # the model's own top 5 for the same internal ids (history items included, as asked)
    ids = np.array([tiny_prepared.item_index(h) for h in history])
    top = model.score(pad_left([ids], model.config.max_seq_len))[0].topk(5)
    raw = tiny_prepared.raw_item_ids()
    assert [r.item_id for r in recs] == [raw[i - 1] for i in top.indices.tolist()]
    assert [r.rank for r in recs] == [1, 2, 3, 4, 5]
    torch.testing.assert_close(torch.tensor([r.score for r in recs]), top.values)
    assert all(a.score >= b.score for a, b in zip(recs, recs[1:], strict=False))
    assert [r.title for r in recs] == [f"Item {r.item_id}" for r in recs]  # the tiny catalogue's titles


def test_recommend_for_a_known_user_reads_the_stored_history(
    artifact: tuple[NextItemLM, Path], tiny_prepared: PreparedDataset
) -> None:
    rec = Recommender.load(artifact[1])
    user = tiny_prepared.users["user"][3]
    assert rec.recommend(user=user, k=7) == rec.recommend(history=_raw_history(tiny_prepared, 3), k=7)
    with pytest.raises(ValueError, match="exactly one of history= or user="):
        rec.recommend(user=user, history=["1"])
    with pytest.raises(ValueError, match="k must be >= 1"):
        rec.recommend(user=user, k=0)


def test_exclude_seen_removes_the_history(artifact: tuple[NextItemLM, Path], tiny_prepared: PreparedDataset) -> None:
    rec = Recommender.load(artifact[1])
    history = _raw_history(tiny_prepared, 1)
    every = rec.recommend(history=history, k=rec.n_items, exclude_seen=False)
    assert {r.item_id for r in every} >= set(history)
    unseen = rec.recommend(history=history, k=rec.n_items)  # the default leaves the history out
    assert unseen == rec.recommend(history=history, k=rec.n_items, exclude_seen=True)
    assert not {r.item_id for r in unseen} & set(history)
    assert len(unseen) == rec.n_items - len(set(history))
    assert [r.item_id for r in unseen] == [r.item_id for r in every if r.item_id not in history]  # same order otherwise


def test_unknown_ids_raise_listing_them(artifact: tuple[NextItemLM, Path], tiny_prepared: PreparedDataset) -> None:
    rec = Recommender.load(artifact[1])
    known = tiny_prepared.raw_item_ids()[0]
    with pytest.raises(UnknownIdError) as items:
        rec.recommend(history=[known, "nope", "zzz"], strict=True)
    assert (items.value.kind, items.value.ids) == ("item", ["nope", "zzz"])
    assert str(items.value) == "unknown item id(s): nope, zzz"
    with pytest.raises(UnknownIdError) as users:
        rec.recommend(user="ghost", strict=True)
    assert (users.value.kind, users.value.ids) == ("user", ["ghost"])
    assert "ghost" in str(users.value)
    assert isinstance(users.value, KeyError)


@pytest.mark.parametrize("model_type", list(MAKERS))
def test_load_model_dispatches_on_model_type(model_type: str, tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    model = MAKERS[model_type](tiny_prepared)
    path = save_artifact(model, tiny_prepared, tmp_path / model_type)
    assert json.loads((path / "config.json").read_text())["model_type"] == model_type
    loaded = load_model(path)
    assert type(loaded) is type(model)
    histories = pad_left(tiny_prepared.sequences[:4], 8)
    assert torch.equal(loaded.score(histories), model.score(histories))

    recs = Recommender.load(path).recommend(history=_raw_history(tiny_prepared, 2), k=3)
    assert len(recs) == 3 and all(r.title == f"Item {r.item_id}" for r in recs)


def test_load_model_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt-rec"}))
    with pytest.raises(ValueError, match="unknown model_type 'gpt-rec'"):
        load_model(tmp_path)


def test_load_picks_the_device_like_the_command_line(artifact: tuple[NextItemLM, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from llmrec import recommend

    asked: list[str] = []

    def spy(device: str) -> torch.device:
        asked.append(device)
        return torch.device("cpu")

    monkeypatch.setattr(recommend, "resolve_device", spy)
    Recommender.load(artifact[1])
    assert asked == ["auto"]  # the default of `llmrec recommend/evaluate/serve --device` and `llmrec.train`
