"""The scoring pieces of benchmarks/cold_users_text.py: text-kNN, per-user normalisation, the blend, the memo."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cold_users_text", REPO / "benchmarks" / "cold_users_text.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _emb() -> torch.Tensor:
    """[5, 2] unit vectors of 4 items (row 0: padding): item 1 and 2 close, item 3 orthogonal, item 4 opposite to 1."""
    v = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    return v


def _h(*items: int) -> np.ndarray:
    return np.array(items, dtype=np.int64)


def test_text_knn_mean_max_and_recency() -> None:
    b = _bench()
    emb = _emb()
    cos = emb @ emb.T  # [5, 5]
    hs = [_h(1, 3), _h(3), _h(4, 1)]  # two lengths in one batch: rows must stay in order
    mean = b.text_knn_scores(emb, hs, "mean", 1.0)
    assert torch.allclose(mean[0, 1:], (cos[1, 1:] + cos[3, 1:]) / 2)
    assert torch.allclose(mean[1, 1:], cos[3, 1:])
    assert torch.allclose(mean[2, 1:], (cos[4, 1:] + cos[1, 1:]) / 2)
    last = b.text_knn_scores(emb, hs, "mean", 0.0)  # decay 0: only the most recent item counts
    assert torch.allclose(last[0, 1:], cos[3, 1:]) and torch.allclose(last[2, 1:], cos[1, 1:])
    half = b.text_knn_scores(emb, [_h(1, 3)], "mean", 0.5)  # weights 0.5, 1 -> 1/3, 2/3
    assert torch.allclose(half[0, 1:], cos[1, 1:] / 3 + 2 * cos[3, 1:] / 3)
    mx = b.text_knn_scores(emb, hs, "max", 1.0)
    assert torch.allclose(mx[2, 1:], torch.maximum(cos[4, 1:], cos[1, 1:]))
    for s in (mean, last, half, mx):
        assert torch.isneginf(s[:, 0]).all()
    with pytest.raises(ValueError, match="agg"):
        b.text_knn_scores(emb, hs, "median", 1.0)


def test_normalise_keeps_masked_entries_and_standardises_the_rest() -> None:
    b = _bench()
    s = torch.tensor([[float("-inf"), 1.0, 2.0, 3.0, 6.0], [float("-inf"), 5.0, float("-inf"), 0.0, 1.0]])
    z = b.normalise(s, "z")
    assert torch.isneginf(z[0, 0]) and torch.isneginf(z[1, 0]) and torch.isneginf(z[1, 2])
    for row in z:
        finite = row[torch.isfinite(row)]
        assert abs(float(finite.mean())) < 1e-6 and abs(float(finite.std(unbiased=False)) - 1) < 1e-5
    lp = b.normalise(s, "log-softmax")
    assert torch.allclose(lp.exp().sum(1), torch.ones(2))
    assert torch.equal(lp.argsort(1, descending=True)[:, :2], s.argsort(1, descending=True)[:, :2])
    with pytest.raises(ValueError, match="normalisation"):
        b.normalise(s, "rank")


def test_blend_weight_zero_is_the_base_and_a_large_weight_follows_the_text() -> None:
    b = _bench()
    emb = _emb()
    base_scores = torch.tensor([[float("-inf"), 0.0, 0.0, 5.0, 0.0]])  # the base prefers item 3

    def base(hs: list[np.ndarray]) -> torch.Tensor:
        return base_scores.expand(len(hs), -1).clone()

    def text(hs: list[np.ndarray]) -> torch.Tensor:
        return b.text_knn_scores(emb, hs, "mean", 1.0)

    hs = [_h(1)]  # text prefers item 1 (itself), then item 2
    zero = b.blend(base, "z", [(text, 0.0)])(hs)
    assert not torch.isnan(zero).any() and torch.equal(zero, b.normalise(base_scores, "z"))
    heavy = b.blend(base, "log-softmax", [(text, 100.0)])(hs)
    assert int(heavy[0, 1:].argmax()) + 1 == 1 and torch.isneginf(heavy[0, 0])
    # two terms: the weighted sum of the z-scored others, on top of the normalised base
    both = b.blend(base, "z", [(text, 0.5), (base, 2.0)])(hs)
    t, z = b.text_term(text(hs)), b.normalise(base_scores, "z")
    assert torch.allclose(both[0, 1:], z[0, 1:] + 0.5 * t[0, 1:] + 2.0 * z[0, 1:])
    assert float(t[0, 0]) == 0.0  # a masked entry of a term adds 0, not NaN


def test_memo_scores_each_distinct_history_once() -> None:
    b = _bench()
    calls: list[int] = []

    def fn(hs: list[np.ndarray]) -> torch.Tensor:
        calls.append(len(hs))
        return torch.stack([torch.full((3,), float(h.sum())) for h in hs])

    memo = b.Memo(fn)
    first = memo([_h(1), _h(2, 3), _h(1)])
    again = memo([_h(2, 3), _h(4)])
    assert calls == [2, 1]  # [1] and [2, 3] once (the repeat of [1] in the first batch too), then only [4]
    assert first[:, 0].tolist() == [1.0, 5.0, 1.0] and again[:, 0].tolist() == [5.0, 4.0]
    memo.clear()
    memo([_h(1)])
    assert calls == [2, 1, 1]
