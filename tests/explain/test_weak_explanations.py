"""An explanation whose strongest attribution is too weak names no item (MIN_STRENGTH, benchmarks/explain_threshold.py),
and `Recommender.item_info` takes a raw item id as well as the internal index."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.errors import UnknownIdError
from llmrec.explain.attribution import MIN_STRENGTH, is_weak, occlusion, score_spread, strength
from llmrec.explain.text import ItemInfo, Reason, TemplateGenerator
from llmrec.recommend import Recommender


@pytest.fixture
def rec(tiny_artifact: Path) -> Recommender:
    return Recommender.load(tiny_artifact, device="cpu")


def test_strength_is_the_attribution_in_units_of_the_score_spread() -> None:
    assert strength(0.011, 1.1) == pytest.approx(0.01)
    assert is_weak(0.011, 1.1) and not is_weak(2.0, 1.0)
    assert strength(1.0, 0.0) == 0.0 and is_weak(1.0, 0.0)
    assert MIN_STRENGTH > 0


def test_a_weak_reason_names_no_item() -> None:
    cause = ItemInfo("7", "Creepshow (1982)")
    text = TemplateGenerator().generate(Reason(ItemInfo("1", "Mary Poppins (1964)"), (cause,), "movies", weak=True))
    assert "Creepshow" not in text and "Mary Poppins (1964)" in text
    assert "No item in your history moves the model's score for it enough to be named" in text


def test_explain_names_an_item_only_above_the_threshold(rec: Recommender) -> None:
    user = next(iter(rec.histories))
    h = rec.histories[user]
    explanations = rec.explain(user=user, k=5)
    weights = occlusion(rec.model, h, [rec.item_index[e.recommendation.item_id] for e in explanations], rec.max_seq_len)
    spread = score_spread(rec.model, h, rec.max_seq_len)
    for e, w in zip(explanations, weights, strict=True):
        j = rec.item_index[e.recommendation.item_id]
        per_item: dict[int, float] = {}
        for i, a in zip(h.tolist(), w.tolist(), strict=True):
            if i != j:
                per_item[i] = per_item.get(i, 0.0) + a
        top = max(per_item.values())
        assert ("No item in your history" in e.text) == is_weak(top, spread), (top, spread, e.text)


def test_item_info_takes_raw_and_internal_ids(rec: Recommender) -> None:
    raw = rec.raw_ids[4]
    by_raw = rec.item_info(raw)
    assert by_raw == rec.item_info(rec.item_index[raw]) and by_raw.item_id == raw
    with pytest.raises(UnknownIdError, match="no-such-item"):
        rec.item_info("no-such-item")
    with pytest.raises(TypeError):
        rec.item_info(0)
