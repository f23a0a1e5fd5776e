"""Attributions against plain references: occlusion vs re-scoring each shortened history, gradient × input vs
finite differences, and the deletion test on a model whose attributions are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.data.sequences import pad_left
from llmrec.explain.attribution import (
    attribute,
    deletion_test,
    gradient_x_input,
    occlusion,
    target_scores,
)
from llmrec.models.baselines import ItemKNN
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig

N_ITEMS = 30


@pytest.fixture
def lm() -> NextItemLM:
    torch.manual_seed(0)
    return NextItemLM(NextItemLMConfig(n_items=N_ITEMS, max_seq_len=6, d_model=16, n_layers=1, n_heads=2, d_ff=32)).eval()


def _brute_force(model: NextItemLM | ItemKNN, history: np.ndarray, targets: list[int], max_seq_len: int) -> np.ndarray:
    """[K, T]: score(history) − score(history without item t), one model call per t."""
    base = model.score(pad_left([history], max_seq_len))[0, targets]
    rows = [base - model.score(pad_left([np.delete(history, t)], max_seq_len))[0, targets] for t in range(len(history))]
    return torch.stack(rows, 1).numpy()


@pytest.mark.parametrize("length", [4, 9])  # inside the window of 6, and longer than it (old items slide in)
def test_occlusion_equals_rescoring_each_shortened_history(lm: NextItemLM, length: int) -> None:
    history = np.array([3, 7, 1, 12, 5, 9, 22, 4, 17][:length])
    targets = [2, 11, 29]
    a = occlusion(lm, history, targets, lm.config.max_seq_len)
    assert a.shape == (3, length)
    np.testing.assert_allclose(a, _brute_force(lm, history, targets, lm.config.max_seq_len), atol=1e-5)
    if length > 6:
        assert (a[:, : length - 6] == 0).all()  # unread items change nothing


def test_occlusion_is_one_forward_pass(lm: NextItemLM, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    encode = lm.encode
    monkeypatch.setattr(lm, "encode", lambda ids: calls.append(tuple(ids.shape)) or encode(ids))
    occlusion(lm, np.arange(1, 6), [7, 8], lm.config.max_seq_len)
    assert calls == [(6, 5)]  # the full history and its 5 deletions, together


def test_occlusion_works_for_any_scorer() -> None:
    sim = torch.tensor([[1, 2, 0.5], [1, 3, 0.25], [2, 3, 1.0], [4, 3, 2.0]])  # (i, j, sim(i, j))
    S = torch.sparse_coo_tensor(sim[:, :2].long().T, sim[:, 2], (5, 5), check_invariants=True)
    knn = ItemKNN(S, decay=1.0, max_seq_len=10)
    history = np.array([1, 2, 4])
    a = occlusion(knn, history, [3, 2], 10)
    np.testing.assert_allclose(a, [[0.25, 1.0, 2.0], [0.5, 0.0, 0.0]])  # with decay 1 the score is additive
    np.testing.assert_allclose(a, _brute_force(knn, history, [3, 2], 10))


def test_gradient_x_input_matches_finite_differences(lm: NextItemLM) -> None:
    model = lm.double()
    history = np.array([5, 2, 8, 13, 21, 1, 3, 30])  # longer than the window of 6
    targets = [4, 19]
    g = gradient_x_input(model, history, targets, 6)
    assert g.shape == (2, 8) and (g[:, :2] == 0).all()

    def score_with_scaled_input(t: int, eps: float) -> torch.Tensor:
        """Target scores with the first block's input at position t multiplied by (1 + eps)."""

        def scale(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            x = args[0].clone()
            x[:, t] *= 1 + eps
            return (x, *args[1:])

        handle = model.blocks[0].register_forward_pre_hook(scale)
        try:
            return target_scores(model, pad_left([history], 6), torch.tensor(targets))[0]
        finally:
            handle.remove()

    eps = 1e-5
    fd = torch.stack([(score_with_scaled_input(t, eps) - score_with_scaled_input(t, -eps)) / (2 * eps) for t in range(6)], 1)
    np.testing.assert_allclose(g[:, 2:], fd.numpy(), rtol=1e-4, atol=1e-7)  # d s / d ε = ⟨∇_x s, x⟩


def test_attribute_dispatches_and_refuses_unknown_methods(lm: NextItemLM) -> None:
    h = np.array([1, 2, 3])
    np.testing.assert_array_equal(attribute(lm, h, [4], 6, "occlusion"), occlusion(lm, h, [4], 6))
    np.testing.assert_array_equal(attribute(lm, h, [4], 6, "gradient"), gradient_x_input(lm, h, [4], 6))
    with pytest.raises(ValueError, match="unknown attribution method 'rollout'"):
        attribute(lm, h, [4], 6, "rollout")
    knn = ItemKNN(torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (5, 5), check_invariants=True))
    with pytest.raises(TypeError, match="use occlusion"):
        attribute(knn, h, [4], 6, "gradient")
    assert occlusion(lm, np.array([], dtype=np.int64), [4], 6).shape == (1, 0)


def test_deletion_test_on_an_additive_model() -> None:
    # ItemKNN with decay 1: score(j) = Σ_t sim(h_t, j), so occlusion is exact and the top-2 deletion is optimal
    n, history = 12, np.arange(1, 13)
    weights = torch.linspace(0.1, 1.2, n)  # sim(t, 13) = 0.1 t: distinct, largest for the most recent item
    S = torch.sparse_coo_tensor(
        torch.stack([torch.arange(1, n + 1), torch.full((n,), 13)]), weights, (14, 14), check_invariants=True
    )
    knn = ItemKNN(S, decay=1.0, max_seq_len=20)
    result = deletion_test(knn, [history, history], 20, targets=[13, 13], curve_steps=3, n_random=10, seed=0)
    assert result.n_cases == 2 and result.n_remove == 2
    assert result.mean_drop_attributed == pytest.approx(1.2 + 1.1)
    np.testing.assert_allclose(result.curve_attributed, [0.0, 1.2, 2.3, 3.3], rtol=1e-6)
    assert len(result.curve_random) == 4 and result.curve_random[0] == 0.0
    assert result.mean_drop_random < result.mean_drop_attributed
    assert result.win_rate == 1.0  # no random pair of 10 × 2 draws hit the top pair (seeded)
    assert result.identical_rate == 0.0 and result.win_rate_distinct == 1.0
    assert result.to_dict()["method"] == "occlusion"


def test_deletion_test_counts_random_draws_identical_to_the_attributed_pair() -> None:
    # 3 items, 2 deleted: a random pair is the attributed pair a third of the time; that is a tie, never a win
    S = torch.sparse_coo_tensor(
        torch.tensor([[1, 2, 3], [4, 4, 4]]), torch.tensor([0.1, 0.2, 0.3]), (5, 5), check_invariants=True
    )
    knn = ItemKNN(S, decay=1.0, max_seq_len=20)
    result = deletion_test(knn, [np.array([1, 2, 3])] * 10, 20, targets=[4] * 10, curve_steps=2, n_random=6, seed=0)
    assert 0.0 < result.identical_rate < 1.0
    assert result.win_rate == pytest.approx(1.0 - result.identical_rate)  # every other draw loses to the optimal pair
    assert result.win_rate_distinct == 1.0
    assert result.to_dict()["identical_rate"] == result.identical_rate


def test_deletion_test_defaults_to_the_top_unseen_item(lm: NextItemLM) -> None:
    rng = np.random.default_rng(0)
    histories = [rng.choice(np.arange(1, N_ITEMS + 1), 8, replace=False) for _ in range(6)]
    result = deletion_test(lm, histories, 6, curve_steps=3, n_random=2)
    assert result.n_cases == 6 and 0.0 <= result.win_rate <= 1.0
    assert len(result.curve_attributed) == 4
    gradient = deletion_test(lm, histories, 6, curve_steps=3, n_random=2, method="gradient")
    assert gradient.method == "gradient" and gradient.mean_drop_random == pytest.approx(result.mean_drop_random)
    with pytest.raises(ValueError, match="no history has more than curve_steps=10"):
        deletion_test(lm, histories, 6)
    with pytest.raises(ValueError, match="n_remove"):
        deletion_test(lm, histories, 6, n_remove=0)
