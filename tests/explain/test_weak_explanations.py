"""An explanation names a history item only when it passes the test for a reason: with occlusion (the default),
`occlusion_reasons` (the recommended item reacts to the item's deletion more than the catalogue does); with the
gradient, the global threshold MIN_STRENGTH. Checked on constructed models where one history item clearly drives the
recommendation, where nothing in the history does, and where the history moves every score at random. Also:
`Recommender.item_info` takes a raw item id as well as the internal index."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.errors import UnknownIdError
from llmrec.explain.attribution import (
    LONG_WINDOW,
    MIN_STRENGTH,
    REASON_GROUPS,
    REASON_LEVEL,
    REASON_LEVEL_LONG,
    gradient_x_input,
    is_weak,
    occlusion,
    occlusion_reasons,
    reason_groups,
    reason_level,
    score_spread,
    strength,
)
from llmrec.explain.text import ItemInfo, Reason, TemplateGenerator
from llmrec.recommend import Recommender

NO_REASON = "No item in your history"


class _BagOfItems(torch.nn.Module):
    """score(h)[j] = bias[j] + Σ_{a in h's window} links[a, j] (+ `noise` x a pseudo-random vector drawn from the
    history's ids, so any deletion moves every score by an amount unrelated to the items)."""

    def __init__(self, links: torch.Tensor, bias: torch.Tensor, max_seq_len: int, noise: float = 0.0) -> None:
        super().__init__()
        self.links = torch.nn.Parameter(links, requires_grad=False)  # [V+1, V+1], row 0 (padding) = 0
        self.bias = torch.nn.Parameter(bias, requires_grad=False)  # [V+1]
        self.max_seq_len, self.n_items, self.noise = max_seq_len, links.shape[0] - 1, noise

    @torch.no_grad()
    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        s = self.bias + self.links[item_ids].sum(1)  # [B, V+1]
        for b, row in enumerate(item_ids):
            seed = int.from_bytes(hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest(), "little") >> 1
            s[b] += self.noise * torch.randn(s.shape[1], generator=torch.Generator().manual_seed(seed))
        s[:, 0] = float("-inf")
        return s


def _model(rec: Recommender, seed: int, noise: float = 0.0) -> _BagOfItems:
    g = torch.Generator().manual_seed(seed)
    V = rec.n_items
    links = 0.01 * torch.randn(V + 1, V + 1, generator=g)
    links[0] = 0.0
    return _BagOfItems(links, torch.randn(V + 1, generator=g), rec.max_seq_len, noise)


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


def test_gradient_explanations_name_an_item_only_above_the_threshold(rec: Recommender) -> None:
    user = next(iter(rec.histories))
    h = rec.histories[user]
    explanations = rec.explain(user=user, k=5, method="gradient")
    targets = [rec.item_index[e.recommendation.item_id] for e in explanations]
    weights = gradient_x_input(rec.model, h, targets, rec.max_seq_len)
    spread = score_spread(rec.model, h, rec.max_seq_len)
    for e, w, j in zip(explanations, weights, targets, strict=True):
        per_item: dict[int, float] = {}
        for i, a in zip(h.tolist(), w.tolist(), strict=True):
            if i != j:
                per_item[i] = per_item.get(i, 0.0) + a
        top = max(per_item.values())
        assert (NO_REASON in e.text) == is_weak(top, spread), (top, spread, e.text)


def test_occlusion_explanations_name_only_items_that_pass_the_reason_test(rec: Recommender) -> None:
    for user in list(rec.histories)[:5]:
        h = rec.histories[user]
        explanations = rec.explain(user=user, k=5)
        targets = [rec.item_index[e.recommendation.item_id] for e in explanations]
        weights, reasons = occlusion_reasons(rec.model, h, targets, rec.max_seq_len)
        assert weights == pytest.approx(occlusion(rec.model, h, targets, rec.max_seq_len), abs=1e-5)
        for e, r in zip(explanations, reasons, strict=True):
            passed = {rec.raw_ids[i - 1] for i in h[r].tolist()}
            assert set(e.cited) <= passed
            assert (NO_REASON in e.text) == (not passed), (passed, e.text)


def test_the_item_that_drives_the_recommendation_is_named(rec: Recommender) -> None:
    user = next(iter(rec.histories))
    h = rec.histories[user]
    cause = int(h[-2])
    target = int(np.setdiff1d(np.arange(1, rec.n_items + 1), h)[0])
    rec.model = _model(rec, seed=1)
    with torch.no_grad():
        rec.model.links[cause, target] = 5.0  # having `cause` in the history lifts `target` above everything
    weights, reasons = occlusion_reasons(rec.model, h, [target], rec.max_seq_len)
    assert reasons[0].tolist() == (h == cause).tolist()  # the cause, and only it, is a reason
    assert weights[0][h == cause] == pytest.approx(5.0, abs=0.1)
    first = rec.explain(user=user, k=5)[0]
    assert first.recommendation.item_id == rec.raw_ids[target - 1]
    assert first.cited == (rec.raw_ids[cause - 1],)
    assert f"Item {rec.raw_ids[cause - 1]}" in first.text and NO_REASON not in first.text


def test_the_table_shows_every_item_the_text_cites(rec: Recommender) -> None:
    user = next(iter(rec.histories))
    h = rec.histories[user]
    causes = [int(h[-2]), int(h[-3])]
    target = int(np.setdiff1d(np.arange(1, rec.n_items + 1), h)[0])
    rec.model = _model(rec, seed=1)
    with torch.no_grad():
        rec.model.links[causes, target] = torch.tensor([5.0, 4.0])  # both items lift `target`, the first more
    first = rec.explain(user=user, k=5, n_contributions=1)[0]
    assert first.cited == tuple(rec.raw_ids[i - 1] for i in causes)
    assert [c.item_id for c in first.contributions] == list(first.cited)  # the one largest weight, then the other cited


def test_a_history_that_drives_nothing_names_nothing(rec: Recommender) -> None:
    model = _model(rec, seed=2)
    with torch.no_grad():
        model.links.zero_()  # the scores do not depend on the history at all
    rec.model = model
    for user in list(rec.histories)[:5]:
        for e in rec.explain(user=user, k=5):
            assert e.cited == () and NO_REASON in e.text


def test_a_history_that_moves_scores_at_random_rarely_names_an_item(rec: Recommender) -> None:
    # Each deletion moves every score by noise unrelated to the items, about as much as the scores spread (a global
    # threshold in units of the spread would name about half of these); the bias (spread 1) mostly chooses the items.
    rec.model = _model(rec, seed=3, noise=0.5)
    with torch.no_grad():
        rec.model.links.zero_()
    named = [bool(e.cited) for user in rec.histories for e in rec.explain(user=user, k=5)]
    assert len(named) >= 50
    assert np.mean(named) <= 3 * REASON_LEVEL  # about REASON_LEVEL by construction; far below a trained model's share


def test_item_info_takes_raw_and_internal_ids(rec: Recommender) -> None:
    raw = rec.raw_ids[4]
    by_raw = rec.item_info(raw)
    assert by_raw == rec.item_info(rec.item_index[raw]) and by_raw.item_id == raw
    with pytest.raises(UnknownIdError, match="no-such-item"):
        rec.item_info("no-such-item")
    with pytest.raises(TypeError):
        rec.item_info(0)


def test_a_higher_level_names_at_least_as_much_and_an_empty_history_nothing(rec: Recommender) -> None:
    rec.model = _model(rec, seed=4, noise=0.5)
    h = rec.histories[next(iter(rec.histories))]
    targets = np.arange(1, rec.n_items + 1)
    for sizes in ((), (2,), None):
        _, strict = occlusion_reasons(rec.model, h, targets, rec.max_seq_len, level=0.05, group_sizes=sizes)
        _, loose = occlusion_reasons(rec.model, h, targets, rec.max_seq_len, level=0.5, group_sizes=sizes)
        # every target explained at the strict level is explained at the loose one (by the same or a single item)
        assert (loose.any(1) | ~strict.any(1)).all() and loose.any(1).sum() > strict.any(1).sum()
    weights, reasons = occlusion_reasons(rec.model, np.zeros(0, dtype=np.int64), [1, 2], rec.max_seq_len)
    assert weights.shape == reasons.shape == (2, 0)


def test_reason_groups_are_the_newest_items_and_long_windows_get_the_long_level() -> None:
    assert reason_groups(8, (2, 3, 5, 8)) == [range(6, 8), range(5, 8), range(3, 8)]  # never the whole window
    assert reason_groups(3, (1, 2, 3)) == [range(1, 3)] and reason_groups(2, (2, 3)) == []
    assert reason_groups(50) == [range(50 - k, 50) for k in REASON_GROUPS] and min(REASON_GROUPS) >= 2
    assert reason_level(LONG_WINDOW) == REASON_LEVEL and reason_level(LONG_WINDOW + 1) == REASON_LEVEL_LONG


def _group_model(V: int, history: np.ndarray, target: int, link: float, seed: int = 5) -> _BagOfItems:
    """Every history item moves every score by N(0, 0.01) (row 0 is padding); the newest 3 history items each lift
    `target` by `link`, the others not at all."""
    g = torch.Generator().manual_seed(seed)
    links = 0.01 * torch.randn(V + 1, V + 1, generator=g)
    links[0] = 0.0
    links[torch.from_numpy(history), target] = 0.0
    links[torch.from_numpy(history[-3:]), target] = link
    return _BagOfItems(links, torch.zeros(V + 1), max_seq_len=8)


def test_a_recommendation_driven_by_a_group_is_explained_by_that_group() -> None:
    # 8 items (the whole window: no older item slides in), 2,000 catalogue items. Deleting one of the 3 newest lowers
    # the target by 1.6 catalogue standard deviations: no single item passes the max-T threshold (about 2.3 at level
    # 0.1 over the 8 singles and the newest 2, 3 and 5). Deleting the newest 3 together lowers it by 3 x 0.016
    # against a catalogue spread of sqrt(3) x 0.01: z = 2.8, the largest of the groups (newest 2: 2.3, newest 5: 2.1).
    V, target = 2000, 1999
    history = np.array([11, 12, 13, 14, 15, 16, 17, 18], dtype=np.int64)
    model = _group_model(V, history, target, link=0.016)
    weights, singles_only = occlusion_reasons(model, history, [target], 8, group_sizes=())
    assert not singles_only.any()
    assert weights[0] == pytest.approx([0, 0, 0, 0, 0, 0.016, 0.016, 0.016], abs=1e-6)
    _, by_group = occlusion_reasons(model, history, [target], 8, group_sizes=(2, 3, 5))
    assert by_group[0].tolist() == [False] * 5 + [True] * 3
    # a strong single item is still named alone, before any group
    strong = _group_model(V, history, target, link=0.016)
    with torch.no_grad():
        strong.links[history[-1], target] = 0.1
    _, reasons = occlusion_reasons(strong, history, [target], 8, group_sizes=(2, 3, 5))
    assert reasons[0].tolist() == [False] * 7 + [True]


def test_groups_of_items_the_recommendation_does_not_depend_on_are_named_at_the_level() -> None:
    V = 2000
    history = np.array([11, 12, 13, 14, 15, 16, 17, 18], dtype=np.int64)
    model = _group_model(V, history, 1999, link=0.0)  # no structure: each deletion moves the scores at random
    targets = np.arange(100, 600)  # 500 catalogue items taken as if recommended
    _, reasons = occlusion_reasons(model, history, targets, 8, group_sizes=(2, 3, 5))
    assert reasons.any(1).mean() == pytest.approx(REASON_LEVEL, abs=0.05)  # the level holds over singles and groups
