"""The labelled query sets of benchmarks/intent_beauty.py (test and validation): the keyword rule on literal titles,
every query labelling at least 10 of Beauty's titles (when the data set is at hand) so precision@10 can reach 1, the
validation queries apart from the test ones; and the helpers with which --select chooses the blend."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("intent_beauty", REPO / "benchmarks" / "intent_beauty.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _titles() -> list[str | None]:
    mirror = Path(os.environ.get("LLMREC_DATA_MIRROR", REPO.parent / "shared" / "datasets"))
    path = mirror / "beauty" / "Beauty_items.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    with open(path, newline="", encoding="utf-8") as f:
        return [row["title"] for row in csv.DictReader(f)]


def test_rule_needs_every_group_whole_words_and_no_excluded_term() -> None:
    label = _bench().label
    titles = [
        "OPI Nail Lacquer, Big Apple Red",  # 1: lacquer + red
        "Red Hot Chili Body Wash",  # 2: red, no polish word
        "Nail-Polish Remover (Redwood scent)",  # 3: "redwood" is not the word "red"
        "Curly Hair Curling Iron",  # 4: excluded by "iron"
        "Curl Defining Cream",  # 5
        None,  # 6: an item without a title is never relevant
    ]
    red_polish = {"all": [["nail lacquer", "polish"], ["red"]]}
    assert label(titles, red_polish) == {1}
    curls = {"all": [["curl*"]], "none": ["iron"]}
    assert label(titles, curls) == {5}
    assert label(titles, {"all": [["nail polish"]]}) == {3}  # punctuation reads as a space


def test_every_query_labels_at_least_ten_beauty_titles() -> None:
    spec = json.loads((REPO / "benchmarks" / "intent_beauty_queries.json").read_text())
    assert 20 <= len(spec["queries"]) <= 40 and spec["about"] and spec["rule"]
    assert len({q["query"] for q in spec["queries"]}) == len(spec["queries"])
    label, titles = _bench().label, _titles()
    counts = {q["query"]: len(label(titles, q)) for q in spec["queries"]}
    assert min(counts.values()) >= 10, counts


def test_validation_queries_are_apart_from_the_test_queries() -> None:
    bench = _bench()
    valid = json.loads(bench.VALID_QUERIES.read_text())["queries"]
    test = json.loads(bench.QUERIES.read_text())["queries"]
    assert 20 <= len(valid) <= 40
    assert not {q["query"].lower() for q in valid} & {q["query"].lower() for q in test}
    titles = _titles()
    valid_sets = {q["query"]: bench.label(titles, q) for q in valid}
    assert min(map(len, valid_sets.values())) >= 10, {q: len(s) for q, s in valid_sets.items()}
    # other products: no validation query's relevant items are mostly a test query's
    test_sets = [bench.label(titles, q) for q in test]
    shared = {q: max(len(s & t) / len(s) for t in test_sets) for q, s in valid_sets.items()}
    assert max(shared.values()) < 0.5, shared


# ---- --select: the blend's normalisations and the choice rules ---------------------------------------------------
def test_normalised_minmax_and_rank_by_hand() -> None:
    import torch

    bench = _bench()
    x = torch.tensor([[float("-inf"), 10.0, 1.0, 2.0, float("-inf")]])  # column 0 is padding, 4 excluded
    minmax = bench._normalised(x, "minmax")[0]
    rank = bench._normalised(x, "rank")[0]
    assert minmax[1:4].tolist() == pytest.approx([1.0, 0.0, 1 / 9])
    assert rank[1:4].tolist() == pytest.approx([1.0, 0.0, 0.5])  # the share of the other finite entries below
    for out in (minmax, rank):
        assert out[0].item() == float("-inf") and out[4].item() == float("-inf")
    mixed = bench._mix(bench._normalised(x, "rank"), bench._normalised(-x, "rank"), 0.25)[0]
    assert mixed[1:4].tolist() == pytest.approx([0.75, 0.25, 0.5]) and mixed[4].item() == float("-inf")
    with pytest.raises(ValueError, match="normalisation"):
        bench._normalised(x, "softmax")


def test_chosen_weight_is_the_smallest_reaching_the_target() -> None:
    bench = _bench()
    assert bench.TARGET == 0.8 and bench.CLOSE == 0.01
    points = (("0.00", 0.1), ("0.50", 0.79), ("0.60", 0.803), ("0.90", 0.81), ("1.00", 0.818))
    curve = {w: {"precision@10": p} for w, p in points}
    assert bench._chosen_weight(curve) == 0.6  # the first to reach 0.8
    assert bench._near_best_weight(curve) == 0.9  # within 0.01 of 0.818
    below = {w: {"precision@10": p - 0.1} for w, p in points}  # none reaches 0.8: the near-best rule
    assert bench._chosen_weight(below) == bench._near_best_weight(below) == 0.9


def test_decide_keeps_z_unless_another_normalisation_is_better() -> None:
    decide = _bench()._decide
    z = {"precision@10": 0.80, "unique_lists": 0.60}
    more_personal = {"precision@10": 0.797, "unique_lists": 0.70}
    more_precise = {"precision@10": 0.82, "unique_lists": 0.59}
    worse = {"precision@10": 0.78, "unique_lists": 0.95}
    assert decide({"z": z, "rank": worse}) == {"normalisation": "z", "beats_z": []}
    assert decide({"z": z, "minmax": more_personal, "rank": worse})["normalisation"] == "minmax"
    assert decide({"z": z, "minmax": more_personal, "rank": more_precise}) == {
        "normalisation": "rank",
        "beats_z": ["minmax", "rank"],
    }
