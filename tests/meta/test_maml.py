"""The per-user adapter: only the adapter moves, adaptation is deterministic, meta-training roundtrips via disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.data.sequences import pad_left
from llmrec.meta.maml import MetaConfig, meta_train
from llmrec.models import NextItemLM
from llmrec.models.adapter import (
    AdapterConfig,
    UserAdapter,
    adapt,
    adapted_scores,
    make_adapted_score_fn,
    support_nll,
    support_of,
)

QUICK_META = MetaConfig(meta_steps=6, eval_every=3, meta_batch_size=8, outer_lr=0.05)


def _histories(ds: PreparedDataset, n: int = 4) -> torch.Tensor:
    return pad_left([s[:n] for s in ds.train_sequences()[:5]], 8)  # [5, 4]


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("support_loss", ["bag", "next"])
def test_inner_loop_changes_only_the_adapter(tiny_cold: PreparedDataset, tiny_lm: NextItemLM, support_loss: str) -> None:
    adapter = UserAdapter(AdapterConfig(d_model=16, inner_steps=3, support_loss=support_loss))
    base, start = _snapshot(tiny_lm), _snapshot(adapter)
    ids = _histories(tiny_cold)
    user = adapt(tiny_lm, adapter, ids)  # [B, D]
    assert user.shape == (5, 16) and not user.requires_grad
    assert (user != 0).any(dim=1).all()  # every user moved away from u0 = 0 ...
    assert _same(_snapshot(tiny_lm), base) and _same(_snapshot(adapter), start)  # ... and nothing else did
    assert all(p.grad is None for p in [*tiny_lm.parameters(), *adapter.parameters()])

    meta_train(tiny_lm, adapter, tiny_cold.train_sequences(), QUICK_META)
    assert _same(_snapshot(tiny_lm), base)  # meta-training moves u0 and log(alpha), never the LM
    assert all(p.grad is None for p in tiny_lm.parameters())
    assert not torch.equal(adapter.user.detach(), start["user"])
    assert adapter.log_inner_lr.item() != start["log_inner_lr"].item()


def test_inner_loop_fits_the_support(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    adapter = UserAdapter(AdapterConfig(d_model=16, inner_steps=5, inner_lr=0.5))
    support = support_of(tiny_lm, _histories(tiny_cold), adapter.config)
    before = support_nll(support.states, support.table, support.targets)
    user = adapt(tiny_lm, adapter, _histories(tiny_cold))
    after = support_nll(support.states + user[:, None, :], support.table, support.targets)
    assert after < before


def test_no_steps_from_zero_is_the_base_model(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    ids = _histories(tiny_cold)
    adapter = UserAdapter(AdapterConfig(d_model=16))
    torch.testing.assert_close(adapted_scores(tiny_lm, adapter, ids, steps=0), tiny_lm.score(ids), rtol=0, atol=0)
    assert not torch.equal(adapted_scores(tiny_lm, adapter, ids), tiny_lm.score(ids))


def test_histories_longer_than_max_history_are_scored_by_the_base(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    adapter = UserAdapter(AdapterConfig(d_model=16, max_history=3))
    torch.nn.init.normal_(adapter.user)  # a meta-learned start would move short histories even before any step
    ids = pad_left([s[:n] for s, n in zip(tiny_cold.train_sequences()[:4], (2, 3, 4, 6), strict=True)], 8)
    user = adapt(tiny_lm, adapter, ids)
    assert (user[:2] != 0).all() and (user[2:] == 0).all()
    scores, base = adapted_scores(tiny_lm, adapter, ids), tiny_lm.score(ids)
    assert torch.equal(scores[2:], base[2:]) and not torch.equal(scores[:2], base[:2])
    with pytest.raises(ValueError, match="max_history=3 is shorter than the largest support size 5"):
        meta_train(tiny_lm, adapter, tiny_cold.train_sequences(), QUICK_META)


def test_next_item_support_with_one_item_stays_at_the_start(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    # With support_loss="next" a single item has no transition to fit: the user vector stays u0.
    adapter = UserAdapter(AdapterConfig(d_model=16, support_loss="next"))
    torch.nn.init.normal_(adapter.user)
    user = adapt(tiny_lm, adapter, _histories(tiny_cold, n=1))
    assert torch.equal(user, adapter.user.detach().expand(5, -1))


def test_adaptation_is_deterministic_for_a_seed(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    seqs = tiny_cold.train_sequences()

    def run(seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        adapter = UserAdapter(AdapterConfig(d_model=16, inner_steps=3))
        meta_train(tiny_lm, adapter, seqs, MetaConfig(**{**QUICK_META.__dict__, "seed": seed}))
        return _snapshot(adapter), adapted_scores(tiny_lm, adapter, _histories(tiny_cold))

    state_a, scores_a = run(7)
    state_b, scores_b = run(7)
    assert _same(state_a, state_b) and torch.equal(scores_a, scores_b)
    state_c, _ = run(8)
    assert not _same(state_a, state_c)  # another seed draws other episodes


def test_meta_trained_adapter_saved_and_loaded_gives_identical_scores(
    tiny_cold: PreparedDataset, tiny_lm: NextItemLM, tmp_path: Path
) -> None:
    adapter = UserAdapter(AdapterConfig(d_model=16, inner_steps=4, support_loss="next"))
    meta_train(tiny_lm, adapter, tiny_cold.train_sequences(), QUICK_META)
    tiny_lm.save_pretrained(tmp_path)
    adapter.save_pretrained(tmp_path)
    model2, adapter2 = NextItemLM.from_pretrained(tmp_path), UserAdapter.from_pretrained(tmp_path)
    assert adapter2.config == adapter.config
    ids = _histories(tiny_cold)
    assert torch.equal(adapted_scores(model2, adapter2, ids), adapted_scores(tiny_lm, adapter, ids))


def test_adapted_score_fn_chunks_give_the_same_scores(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    adapter = UserAdapter(AdapterConfig(d_model=16))
    histories = [s[:3] for s in tiny_cold.train_sequences()[:7]]
    whole = make_adapted_score_fn(tiny_lm, adapter, chunk=64)(histories)
    pieces = make_adapted_score_fn(tiny_lm, adapter, chunk=2)(histories)
    torch.testing.assert_close(whole, pieces)
    assert whole.shape == (7, tiny_cold.n_items + 1) and torch.isneginf(whole[:, 0]).all()


def test_meta_train_keeps_the_best_evaluated_state(tiny_cold: PreparedDataset, tiny_lm: NextItemLM) -> None:
    adapter = UserAdapter(AdapterConfig(d_model=16))
    scores = iter([0.3, 0.5, 0.1, 0.2])
    seen: list[torch.Tensor] = []

    def evaluate(a: UserAdapter) -> float:
        seen.append(a.user.detach().clone())
        return next(scores)

    res = meta_train(tiny_lm, adapter, tiny_cold.train_sequences(), MetaConfig(meta_steps=12, eval_every=3, patience=2))
    assert res.best_step == 12 and len(res.history) == 4  # without evaluate: the last state, by query loss
    adapter = UserAdapter(AdapterConfig(d_model=16))
    res = meta_train(
        tiny_lm, adapter, tiny_cold.train_sequences(), MetaConfig(meta_steps=12, eval_every=3, patience=2), evaluate=evaluate
    )
    assert (res.best_step, res.best_metric, res.steps_run) == (6, 0.5, 12)
    assert torch.equal(adapter.user.detach(), seen[1])


def test_adapter_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="support_loss"):
        AdapterConfig(d_model=16, support_loss="nope")
    with pytest.raises(ValueError, match="inner_lr > 0"):
        AdapterConfig(d_model=16, inner_lr=0.0)
    with pytest.raises(ValueError, match="unknown AdapterConfig keys: colour"):
        AdapterConfig.from_dict({"d_model": 16, "colour": 1})
    assert np.isclose(UserAdapter(AdapterConfig(d_model=4, inner_lr=0.25)).inner_lr, 0.25)


@pytest.mark.parametrize("preconditioner", ["diagonal", "matrix"])
def test_learned_preconditioner_starts_as_the_scalar_step_and_is_meta_learned(
    tiny_cold: PreparedDataset, tiny_lm: NextItemLM, tmp_path: Path, preconditioner: str
) -> None:
    ids = _histories(tiny_cold)
    scalar = UserAdapter(AdapterConfig(d_model=16, inner_steps=3))
    pre = UserAdapter(AdapterConfig(d_model=16, inner_steps=3, preconditioner=preconditioner))
    torch.testing.assert_close(adapt(tiny_lm, pre, ids), adapt(tiny_lm, scalar, ids))  # ones / identity = scalar
    base, start = _snapshot(tiny_lm), pre.precond.detach().clone()
    meta_train(tiny_lm, pre, tiny_cold.train_sequences(), QUICK_META)
    assert _same(_snapshot(tiny_lm), base)
    assert not torch.equal(pre.precond.detach(), start)  # the step's shape is learned, not only its size
    moved = adapt(tiny_lm, pre, ids)
    assert moved.shape == (5, 16) and not torch.allclose(moved, adapt(tiny_lm, scalar, ids))
    tiny_lm.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    loaded = UserAdapter.from_pretrained(tmp_path)
    assert loaded.config.preconditioner == preconditioner
    assert torch.equal(adapted_scores(tiny_lm, loaded, ids), adapted_scores(tiny_lm, pre, ids))
    with pytest.raises(ValueError, match="preconditioner"):
        AdapterConfig(d_model=16, preconditioner="full")
