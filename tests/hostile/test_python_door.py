"""The Python door: `Recommender` and `llmrec.api` refuse wrong types with a message that says what to pass,
instead of running silently wrong (``history="1113"`` read as items 1, 1, 1, 3) or failing deep inside; an
empty history gets the same answer in Python and on the command line (the popularity fallback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import llmrec.api
from llmrec.data import PreparedDataset
from llmrec.models.baselines import ItemKNN
from llmrec.recommend import Recommender
from llmrec.training import build_model, save_artifact

TINY_MODEL = dict(max_seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)


@pytest.fixture
def rec(tiny_prepared: PreparedDataset, tmp_path: Path) -> Recommender:
    model = build_model(tiny_prepared, TINY_MODEL, seed=0)[0].eval()
    return Recommender.load(save_artifact(model, tiny_prepared, tmp_path / "model"), device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"history": "1113"}, "history must be a list of item ids, e.g. ['1113'], not the string '1113'"),
        ({"history": b"11"}, "history must be a list of item ids"),
        ({"history": {"1", "2"}}, "history must be a list of item ids (oldest first), not set"),
        ({"history": ["1", 2.0]}, "history[1]: an item id is a str or an int, not float 2.0"),
        ({"history": ["1"], "k": 2.5}, "k must be an int >= 1, not float 2.5"),
        ({"history": ["1"], "k": 3.0}, "k must be an int >= 1, not float 3.0 (e.g. k=3)"),
        ({"history": ["1"], "k": True}, "k must be an int >= 1, not bool True"),
        ({"history": ["1"], "k": "5"}, "k must be an int >= 1, not str '5'"),
        ({"history": ["1"], "diversity": "0.5"}, "diversity must be a number in [0, 1]"),
        ({"history": ["1"], "query": 3}, "query must be a str"),
        ({"user": ["u01"]}, "user is one raw user id"),
    ],
)
def test_wrong_types_are_type_errors_that_say_what_to_pass(rec: Recommender, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        rec.recommend(**kwargs)
    assert message in str(caught.value)
    with pytest.raises(TypeError):  # explain goes through the same door
        rec.explain(**kwargs)


def test_bad_values_are_value_errors(rec: Recommender) -> None:
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        rec.recommend(history=["1"], k=0)
    with pytest.raises(ValueError, match=r"diversity must be in \[0, 1\]"):
        rec.recommend(history=["1"], diversity=1.5)


def test_int_ids_tuples_and_arrays_are_histories(rec: Recommender) -> None:
    expected = rec.recommend(history=["1", "5"], k=3)
    assert rec.recommend(history=[1, 5], k=3) == expected
    assert rec.recommend(history=("1", "5"), k=np.int64(3)) == expected
    assert rec.recommend(history=np.array(["1", "5"]), k=3) == expected


def test_recommend_batch_refuses_raw_strings_with_the_fix(rec: Recommender) -> None:
    with pytest.raises(TypeError, match=r"histories\[0\] is str '12'.*encode_history"):
        rec.recommend_batch(["12", "34"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="histories must be a list of histories"):
        rec.recommend_batch("12")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="internal item ids are ints"):
        rec.recommend_batch([np.array(["12"])])
    with pytest.raises(TypeError, match="k must be an int"):
        rec.recommend_batch([rec.encode_history(["1"])], 2.5)  # type: ignore[arg-type]
    lists = rec.recommend_batch([[1, 2], rec.encode_history(["1", "2"])], 3)  # plain lists of internal ids too
    assert lists[0] == lists[1]


@pytest.mark.parametrize("bad", [99999, -1])
def test_recommend_batch_refuses_ids_outside_the_catalogue(rec: Recommender, bad: int) -> None:
    """Issue 28: recommend_batch([[99999]]) raised a bare IndexError."""
    with pytest.raises(
        ValueError, match=rf"histories\[1\]: internal item id {bad} is outside 1\.\.{rec.n_items}.*encode_history"
    ):
        rec.recommend_batch([[1], [2, bad]])
    assert rec.recommend_batch([[rec.n_items]], 2)  # the last item is in range


def test_empty_history_ranks_by_popularity(rec: Recommender) -> None:
    recs = rec.recommend(history=[], k=5)
    assert [r.rank for r in recs] == [1, 2, 3, 4, 5]
    counts = np.bincount(np.concatenate(list(rec.histories.values())), minlength=rec.n_items + 1)
    assert [r.score for r in recs] == sorted((float(c) for c in counts[1:]), reverse=True)[:5]
    assert all(counts[rec.item_index[r.item_id]] == r.score for r in recs)
    # in a batch beside a real history, and in explain (nothing to attribute to)
    # (items tied in popularity may come in another order for another k: compare scores)
    batch = rec.recommend_batch([rec.encode_history(["1"]), rec.encode_history([])], 5)
    assert [r.score for r in batch[1]] == [r.score for r in recs]
    explained = rec.explain(history=[], k=2)
    assert [e.recommendation.score for e in explained] == [r.score for r in recs[:2]]
    assert all(e.contributions == [] for e in explained)


def test_empty_history_on_the_command_line_matches_python(rec: Recommender) -> None:
    assert rec.path is not None
    cmd = [sys.executable, "-m", "llmrec.cli", "recommend", "--model", str(rec.path), "--history", "", "-k", "5"]
    done = subprocess.run([*cmd, "--json", "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [r["score"] for r in json.loads(done.stdout)] == [r.score for r in rec.recommend(history=[], k=5)]


def test_an_artifact_without_popularity_keeps_the_model_scores(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    knn = ItemKNN.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items, max_seq_len=8)
    rec = Recommender.load(save_artifact(knn, tiny_prepared, tmp_path / "knn"), device="cpu")
    rec.histories = {}
    assert len(rec.recommend(history=[], k=3)) == 3


def test_api_functions_refuse_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="dataset must be a path"):
        llmrec.api.train(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="out must be a path"):
        llmrec.api.train("ml-100k", out=["runs"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be a training name"):
        llmrec.api.train("ml-100k", out=tmp_path / "m", model=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model \\(a Recommender or an artifact folder\\) must be a path"):
        llmrec.api.evaluate(3)  # type: ignore[arg-type]
