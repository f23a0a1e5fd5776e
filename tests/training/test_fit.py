"""`llmrec.training.fit` and `llmrec.training.refit`: selection on validation, then the refit for the selected epochs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from llmrec.data import PreparedDataset

TINY_LM = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


def _cfg(**kw: object):  # type: ignore[no-untyped-def]
    from llmrec.training import TrainConfig

    return TrainConfig(**{"epochs": 4, "batch_size": 8, "progress": False, "patience": 10, **kw})  # type: ignore[arg-type]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_refit_equals_training_the_selected_epochs_directly(tiny_prepared: PreparedDataset) -> None:
    """The refit model is exactly what `selected_epoch = best_epoch` trains: same seed, schedule and data."""
    from llmrec.training import fit

    refit, result, _ = fit(tiny_prepared, TINY_LM, _cfg())
    assert 1 <= result.best_epoch <= 4 and result.epochs_run == 4
    assert "valid_ndcg@10" in result.history[0]
    direct, only_run, _ = fit(tiny_prepared, TINY_LM, _cfg(), selected_epoch=result.best_epoch)
    assert only_run.epochs_run == result.best_epoch
    assert all("valid_ndcg@10" not in row for row in only_run.history)  # no validation: nothing is selected
    assert _same_weights(refit, direct)


def test_without_refit_the_selection_run_keeps_its_best_weights(tiny_prepared: PreparedDataset) -> None:
    from llmrec.training import fit
    from llmrec.training.fit import validation_evaluator

    model, result, _ = fit(tiny_prepared, TINY_LM, _cfg(refit_on_valid=False))
    assert validation_evaluator(tiny_prepared)(model)["ndcg@10"] == pytest.approx(result.best_metric)
    refit, _, _ = fit(tiny_prepared, TINY_LM, _cfg())
    assert not _same_weights(model, refit)  # the refit trained on train + valid events


def test_selected_epoch_outside_the_schedule_is_refused(tiny_prepared: PreparedDataset) -> None:
    from llmrec.training import fit

    for bad in (0, 5):
        with pytest.raises(ValueError, match=r"selected_epoch: .* outside the schedule's 1\.\.4 epochs"):
            fit(tiny_prepared, TINY_LM, _cfg(), selected_epoch=bad)


def test_select_then_refit_builds_from_train_then_train_plus_valid(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.data.sequences import training_windows
    from llmrec.training import build_model
    from llmrec.training.fit import validation_evaluator
    from llmrec.training.refit import select_then_refit

    seen: list[int] = []

    def build(sequences):  # type: ignore[no-untyped-def]
        seen.append(sum(len(s) for s in sequences))
        model, _ = build_model(tiny_prepared, TINY_LM, seed=0)
        return model, training_windows(sequences, 8)

    cfg = _cfg(epochs=2)
    _, result = select_then_refit(
        build, tiny_prepared, cfg, evaluate=validation_evaluator(tiny_prepared), run_dir=tmp_path / "run"
    )
    n_train = sum(len(s) for s in tiny_prepared.train_sequences())
    n_valid = len(tiny_prepared.eval_examples("valid").targets)
    assert seen == [n_train, n_train + n_valid]
    assert (tmp_path / "run" / "checkpoint").is_dir() and (tmp_path / "run" / "refit" / "checkpoint").is_dir()
    seen.clear()
    select_then_refit(build, tiny_prepared, replace(cfg, refit_on_valid=False), evaluate=validation_evaluator(tiny_prepared))
    assert seen == [n_train]


def test_continue_refit_starts_from_the_selected_weights(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    """refit = "continue": the selection run's best weights, trained `refit_epochs` more epochs on train + valid at
    refit_lr x lr; with selected_epoch, the same model without validation (train-only epochs, then the tail)."""
    from llmrec.training import fit
    from llmrec.training.loop import train_loop

    cfg = _cfg(refit="continue", refit_epochs=2, refit_lr=0.5)
    cont, result, _ = fit(tiny_prepared, TINY_LM, cfg)
    assert result.epochs_run == 4 and "valid_ndcg@10" in result.history[0]  # the selection run's result is reported
    selected, _, _ = fit(tiny_prepared, TINY_LM, _cfg(refit_on_valid=False))  # the selection run alone
    assert not _same_weights(cont, selected)
    # by hand: the selected weights in a model built on train + valid, two epochs of a 2-epoch schedule at lr / 2
    from llmrec.data.sequences import training_windows
    from llmrec.training import build_model

    by_hand, _ = build_model(tiny_prepared, TINY_LM, seed=0)
    by_hand.load_state_dict(selected.state_dict())
    tail = replace(cfg, epochs=2, lr=cfg.lr * 0.5)
    windows = training_windows(tiny_prepared.train_sequences(through="valid"), by_hand.config.max_seq_len)
    train_loop(by_hand, windows, tail)
    assert _same_weights(cont, by_hand)
    # selected_epoch = best epoch: the same model, no validation run
    direct, only_run, _ = fit(tiny_prepared, TINY_LM, cfg, selected_epoch=result.best_epoch)
    assert all("valid_ndcg@10" not in row for row in only_run.history)
    assert _same_weights(cont, direct)
    # the tail's state goes to <run_dir>/refit
    from llmrec.training.fit import validation_evaluator
    from llmrec.training.refit import select_then_refit

    def build(sequences):  # type: ignore[no-untyped-def]
        model, _ = build_model(tiny_prepared, TINY_LM, seed=0)
        return model, training_windows(sequences, 8)

    select_then_refit(build, tiny_prepared, cfg, evaluate=validation_evaluator(tiny_prepared), run_dir=tmp_path / "run")
    state = (tmp_path / "run" / "refit" / "checkpoint" / "state.json").read_text()
    assert '"epoch": 2' in state


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("refit", "warm", "refit must be scratch|continue"), ("refit_epochs", 0, "refit_epochs"), ("refit_lr", 0.0, "refit_lr")],
)
def test_refit_settings_are_checked(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _cfg(**{key: value})


def test_examples_prefixes_and_valid_exclude_seen_still_train(tiny_prepared: PreparedDataset) -> None:
    from llmrec.training import fit

    _, windows, _ = fit(tiny_prepared, TINY_LM, _cfg(epochs=1, examples="windows", refit_on_valid=False))
    _, prefixes, _ = fit(
        tiny_prepared, TINY_LM, _cfg(epochs=1, examples="prefixes", valid_exclude_seen=True, refit_on_valid=False)
    )
    assert windows.best_epoch == prefixes.best_epoch == 1
    assert windows.history[0]["train_loss"] != prefixes.history[0]["train_loss"]


def test_validation_evaluator_ranks_by_the_asked_seen_item_protocol(tiny_prepared: PreparedDataset) -> None:
    """valid_exclude_seen selects on the protocol the recommender serves: history items masked, as in compute_ranks."""
    from llmrec.eval.evaluate import compute_ranks
    from llmrec.eval.metrics import summarize
    from llmrec.training import build_model, make_score_fn, validation_evaluator

    model, _ = build_model(tiny_prepared, TINY_LM)
    model.eval()
    ex = tiny_prepared.eval_examples("valid")
    for exclude in (False, True):
        want = summarize(compute_ranks(make_score_fn(model), ex.histories, ex.targets, exclude_seen=exclude), (10, 20))
        got = validation_evaluator(tiny_prepared, exclude_seen=exclude)(model)
        assert got == {k: want[k] for k in got}
    masked = validation_evaluator(tiny_prepared, exclude_seen=True)(model)
    unmasked = validation_evaluator(tiny_prepared, exclude_seen=False)(model)
    assert masked != unmasked  # an untrained model ranks history items too: masking them moves the targets up


def test_fit_trains_any_model_type_the_generic_loop_trains(tiny_prepared: PreparedDataset) -> None:
    """`fit` asks the registry's spec for the config and the build, so TV-Rec trains through it like the LM."""
    from llmrec.models.tvrec import TVRec
    from llmrec.training import fit

    model, result, _ = fit(tiny_prepared, {"max_seq_len": 8, "d_model": 16}, _cfg(epochs=2, examples="prefixes"), model="tvrec")
    assert isinstance(model, TVRec) and result.epochs_run == 2
    with pytest.raises(ValueError, match="has its own fit"):
        fit(tiny_prepared, {}, _cfg(), model="most-popular")


def test_only_the_popularity_baseline_declares_itself_so() -> None:
    """Evaluation skips the most-popular comparison for the model that declares it is that ranking, not by name."""
    from llmrec.models import MODELS, model_spec

    declared = [name for name in MODELS if model_spec(name).popularity_baseline]
    assert declared == ["most-popular"]
