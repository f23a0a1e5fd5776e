"""The labelled query set of benchmarks/intent_beauty.py: the keyword rule on literal titles, and every query
labelling at least 10 of Beauty's titles (when the data set is at hand), so precision@10 can reach 1."""

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
    mirror = Path(os.environ.get("LLMREC_DATA_MIRROR", REPO.parent / "shared" / "datasets"))
    path = mirror / "beauty" / "Beauty_items.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    with open(path, newline="", encoding="utf-8") as f:
        titles = [row["title"] for row in csv.DictReader(f)]
    label = _bench().label
    counts = {q["query"]: len(label(titles, q)) for q in spec["queries"]}
    assert min(counts.values()) >= 10, counts
