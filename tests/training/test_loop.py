"""Training windows and batches on literal input; the loop's early stopping, best weights, checkpoints and --resume."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.data.sequences import bucketed_batches, length_groups, pad_left, random_batches, training_windows
from llmrec.models.next_item_lm import NextItemLM
from llmrec.training import TrainConfig, build_model, train_loop, validation_evaluator

TINY_MODEL = dict(max_seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.2, emb_dropout=0.2, n_negatives=16)
TIMING = ("train_seconds", "seconds")  # the only fields of a history row that differ between two equal runs


def _arrays(*seqs: list[int]) -> list[np.ndarray]:
    return [np.array(s, dtype=np.int64) for s in seqs]


def _lists(arrays: list[np.ndarray]) -> list[list[int]]:
    return [a.tolist() for a in arrays]


# ---- sequences ----------------------------------------------------------------------------------------------
def test_pad_left_keeps_the_most_recent_items() -> None:
    out = pad_left(_arrays([1, 2, 3, 4, 5], [6], []), 3)
    assert out.tolist() == [[3, 4, 5], [0, 0, 6], [0, 0, 0]]
    assert pad_left(_arrays([], []), 3).tolist() == [[0], [0]]


def test_training_windows_literal() -> None:
    seqs = _arrays([1, 2, 3, 4, 5, 6, 7, 8], [9, 10], [11])
    # cut from the end, 3 targets per window, consecutive windows share one item; [11] teaches nothing
    assert _lists(training_windows(seqs, 3)) == [[5, 6, 7, 8], [2, 3, 4, 5], [1, 2], [9, 10]]
    assert _lists(training_windows(seqs, 3, all_windows=False)) == [[5, 6, 7, 8], [9, 10]]
    assert _lists(training_windows(seqs, 10)) == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10]]


@pytest.mark.parametrize("max_seq_len", [1, 2, 3, 5])
def test_training_windows_every_event_but_the_first_is_a_target_once(max_seq_len: int) -> None:
    for n in range(13):
        seq = np.arange(100, 100 + n)
        windows = training_windows([seq], max_seq_len)
        targets = sorted(t for w in windows for t in w[1:].tolist())
        assert targets == seq[1:].tolist(), (n, _lists(windows))
        assert all(2 <= len(w) <= max_seq_len + 1 for w in windows)
        for newer, older in zip(windows, windows[1:], strict=False):
            assert older[-1] == newer[0]  # overlap by exactly one item


def test_bucketed_batches_literal() -> None:
    windows = _arrays([5, 6, 7, 8], [2, 3, 4, 5], [1, 2])
    (batch,) = bucketed_batches(windows, 3, torch.Generator().manual_seed(0))
    assert batch.targets is not None
    rows = sorted(zip(batch.item_ids.tolist(), batch.targets.tolist(), strict=True))
    assert rows == [([0, 0, 1], [0, 0, 2]), ([2, 3, 4], [3, 4, 5]), ([5, 6, 7], [6, 7, 8])]


def test_bucketed_batches_group_lengths_and_cover_every_window_once() -> None:
    # lengths 2 and 6 differ by more than the jitter (< 2): batches of 2 never mix them
    windows = _arrays([1, 2], [3, 4], [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
    for seed in range(5):
        batches = list(bucketed_batches(windows, 2, torch.Generator().manual_seed(seed)))
        assert sorted(tuple(b.item_ids.shape) for b in batches) == [(2, 1), (2, 5)]
        seen = sorted(t for b in batches for t in b.targets[b.targets > 0].tolist())  # type: ignore[union-attr]
        assert seen == [2, 2, 3, 4, 4, 5, 6, 8, 9, 10, 11, 12]
    again = [b.item_ids.tolist() for b in bucketed_batches(windows, 2, torch.Generator().manual_seed(3))]
    assert again == [b.item_ids.tolist() for b in bucketed_batches(windows, 2, torch.Generator().manual_seed(3))]


# ---- the loop ------------------------------------------------------------------------------------------------
def _setup(ds: PreparedDataset, **model: Any) -> tuple[NextItemLM, list[np.ndarray]]:
    m, _ = build_model(ds, {**TINY_MODEL, **model}, seed=0)
    return m, training_windows(ds.train_sequences(), m.config.max_seq_len)


def _config(**overrides: Any) -> TrainConfig:
    base: dict[str, Any] = dict(epochs=4, batch_size=8, lr=1e-2, warmup_steps=2, patience=10, progress=False)
    return TrainConfig(**{**base, **overrides})


def _state(model: NextItemLM) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _Snapshots:
    """Callback: the weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: NextItemLM) -> None:
        self.weights[epoch] = _state(model)


class _KillAfter:
    """Callback: a Ctrl-C at the end of `epoch` (the checkpoint of that epoch is already written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: NextItemLM) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_train_stops_early_and_restores_the_best_weights(tiny_prepared: PreparedDataset) -> None:
    model, windows = _setup(tiny_prepared)
    script: Iterator[float] = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])  # best at epoch 2, then 2 epochs without gain

    def evaluate(m: NextItemLM) -> dict[str, float]:
        assert not m.training
        return {"ndcg@10": next(script)}

    snaps = _Snapshots()
    result = train_loop(model, windows, _config(epochs=6, patience=2), evaluate=evaluate, callbacks=[snaps])
    assert (result.stopped_early, result.epochs_run, result.best_epoch, result.best_metric) == (True, 4, 2, 0.3)
    assert [row["valid_ndcg@10"] for row in result.history] == [0.1, 0.3, 0.2, 0.25]
    assert sorted(snaps.weights) == [1, 2, 3, 4]
    assert not model.training
    final = model.state_dict()
    for k, v in snaps.weights[2].items():
        assert torch.equal(final[k], v), k
    assert not torch.equal(final["item_emb.weight"], snaps.weights[4]["item_emb.weight"])  # it did move on


def test_train_without_evaluate_keeps_the_last_epoch(tiny_prepared: PreparedDataset) -> None:
    model, windows = _setup(tiny_prepared)
    result = train_loop(model, windows, _config(epochs=3))
    assert (result.best_epoch, result.epochs_run, len(result.history)) == (3, 3, 3)


def test_train_stop_after_keeps_the_schedule_of_all_epochs(tiny_prepared: PreparedDataset) -> None:
    model_a, windows = _setup(tiny_prepared)
    full = train_loop(model_a, windows, _config(epochs=4))
    model_b, _ = _setup(tiny_prepared)
    cut = train_loop(model_b, windows, _config(epochs=4), stop_after=2)
    assert cut.epochs_run == 2
    assert [r["lr"] for r in cut.history] == [r["lr"] for r in full.history[:2]]
    assert [r["train_loss"] for r in cut.history] == [r["train_loss"] for r in full.history[:2]]


@pytest.mark.parametrize("examples", ["windows", "prefixes"])
def test_a_batch_in_length_groups_has_the_padded_batchs_loss_and_gradient(tiny_prepared: PreparedDataset, examples: str) -> None:
    """The weighted sum of the length groups' mean losses is the padded batch's mean loss, and so are the
    gradients (no dropout); the loop's "random" batching reports that loss for its one batch."""
    model, windows = _setup(tiny_prepared, dropout=0.0, emb_dropout=0.0, loss="ce")
    (batch,) = random_batches(windows, len(windows), torch.Generator().manual_seed(0), last_only=examples == "prefixes")
    model.train()
    model.zero_grad()
    full = model(batch).loss
    assert full is not None
    full.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    parts = length_groups(batch)
    assert len(parts) > 1
    total = sum(n for _, n in parts)
    summed = 0.0
    for part, n in parts:
        loss = model(part).loss
        assert loss is not None
        (loss * (n / total)).backward()
        summed += loss.item() * n / total
    assert summed == pytest.approx(full.item(), rel=1e-5)
    for name, p in model.named_parameters():
        if name in expected:
            assert p.grad is not None
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6)
    losses = []
    for batching in ("length", "random"):  # one batch holding every window, one epoch: the loss before the step
        m, _ = _setup(tiny_prepared, dropout=0.0, emb_dropout=0.0, loss="ce")
        config = _config(epochs=1, batch_size=len(windows) + 1, batching=batching, examples=examples)
        losses.append(train_loop(m, windows, config).history[0]["train_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_batching_and_adam_beta2_are_checked_by_name() -> None:
    with pytest.raises(ValueError, match="batching"):
        TrainConfig(batching="sorted")
    with pytest.raises(ValueError, match="adam_beta2"):
        TrainConfig(adam_beta2=1.0)


def test_train_rejects_no_windows(tiny_prepared: PreparedDataset) -> None:
    model, windows = _setup(tiny_prepared)
    with pytest.raises(ValueError, match="no training windows"):
        train_loop(model, [], _config())


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce"])
def test_resume_after_a_kill_equals_the_uninterrupted_run(tiny_prepared: PreparedDataset, loss: str, tmp_path: Path) -> None:
    """Dropout, negatives and batch order of epoch e are seeded by (seed, e); the optimizer state is checkpointed.

    So the resumed run must replay epochs 3-4 bit for bit: weights and metrics are compared exactly (rtol=atol=0),
    both the last epoch's weights and the best weights that `train_loop` returns in the model (epoch 2 here).
    """
    evaluate = validation_evaluator(tiny_prepared, ks=(10,))

    model_a, windows = _setup(tiny_prepared, loss=loss)
    snaps_a = _Snapshots()
    result_a = train_loop(model_a, windows, _config(), evaluate=evaluate, run_dir=tmp_path / "a", callbacks=[snaps_a])

    run = tmp_path / "b"
    model_b, _ = _setup(tiny_prepared, loss=loss)
    with pytest.raises(KeyboardInterrupt):
        train_loop(model_b, windows, _config(), evaluate=evaluate, run_dir=run, callbacks=[_KillAfter(2)])
    with open(run / "metrics.csv", "a") as f:  # a row of an epoch whose checkpoint was never written
        f.write("3," + ",".join(["0"] * 6) + "\n")

    fresh, _ = _setup(tiny_prepared, loss=loss)
    snaps_b = _Snapshots()
    result_b = train_loop(fresh, windows, _config(), evaluate=evaluate, run_dir=run, resume=True, callbacks=[snaps_b])

    assert sorted(snaps_b.weights) == [3, 4]
    torch.testing.assert_close(snaps_b.weights[4], snaps_a.weights[4], rtol=0, atol=0)
    torch.testing.assert_close(fresh.state_dict(), model_a.state_dict(), rtol=0, atol=0)
    assert (result_b.epochs_run, result_b.best_epoch, result_b.best_metric) == (4, result_a.best_epoch, result_a.best_metric)

    def untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in history]

    assert untimed(result_b.history) == untimed(result_a.history)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0, 3.0, 4.0]
    assert [float(r["valid_ndcg@10"]) for r in rows] == [row["valid_ndcg@10"] for row in result_a.history]

    # safetensors + JSON only, no pickle anywhere
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    assert {p.suffix for p in run.rglob("*") if p.is_file()} <= {".safetensors", ".json", ".csv"}
    assert not (run / "checkpoint.tmp").exists()


def test_resume_without_a_checkpoint_fails(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    model, windows = _setup(tiny_prepared)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_loop(model, windows, _config(), run_dir=tmp_path / "empty", resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_loop(model, windows, _config(), resume=True)


def test_train_sequences_through_valid_adds_valid_target_never_test(tiny_prepared: PreparedDataset) -> None:
    base = tiny_prepared.train_sequences()
    refit = tiny_prepared.train_sequences(through="valid")
    valid, test = tiny_prepared.eval_examples("valid"), tiny_prepared.eval_examples("test")
    assert [len(s) for s in refit] == [len(s) + 1 for s in base]
    for seq, v_target, t_hist in zip(refit, valid.targets, test.histories, strict=True):
        assert seq[-1] == v_target
        assert np.array_equal(seq, t_hist)  # exactly the test history: the test target is never in training


def test_fit_refit_on_valid_retrains_for_the_selected_epochs(tiny_prepared: PreparedDataset) -> None:
    from llmrec.training.fit import fit

    cfg = _config(epochs=3, refit_on_valid=False)
    plain, res_plain, _ = fit(tiny_prepared, TINY_MODEL, cfg)
    refit, res_refit, _ = fit(tiny_prepared, TINY_MODEL, _config(epochs=3, refit_on_valid=True))
    assert res_refit.best_epoch == res_plain.best_epoch and res_refit.best_metric == res_plain.best_metric
    assert not torch.equal(plain.item_emb.weight, refit.item_emb.weight)


def test_ema_keeps_the_moving_average_of_the_weights(tiny_prepared: PreparedDataset) -> None:
    """With ema_decay = d the returned weights are w_1 then w ← d·w + (1 − d)·θ_t after every step t."""
    decay = 0.7
    model_a, windows = _setup(tiny_prepared)
    trajectory: list[dict[str, torch.Tensor]] = []
    train_loop(model_a, windows, _config(epochs=2))  # plain run: the last weights
    plain = _state(model_a)

    model_b, _ = _setup(tiny_prepared)
    orig_step = torch.optim.AdamW.step

    def recording_step(self: torch.optim.AdamW, *args: Any, **kwargs: Any) -> Any:
        out = orig_step(self, *args, **kwargs)
        trajectory.append(_state(model_b))
        return out

    torch.optim.AdamW.step = recording_step  # type: ignore[method-assign]
    try:
        train_loop(model_b, windows, _config(epochs=2, ema_decay=decay))
    finally:
        torch.optim.AdamW.step = orig_step  # type: ignore[method-assign]
    # the raw trajectory is the plain run's (EMA only reads the weights)
    torch.testing.assert_close(trajectory[-1], plain, rtol=0, atol=0)
    want = {k: v.clone() for k, v in trajectory[0].items()}
    for theta in trajectory[1:]:
        for k, v in want.items():
            if v.is_floating_point():
                v.mul_(decay).add_(theta[k], alpha=1 - decay)
    got = _state(model_b)
    for k, v in want.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert not torch.equal(got["item_emb.weight"], plain["item_emb.weight"])


def test_resume_with_ema_equals_the_uninterrupted_run(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    evaluate = validation_evaluator(tiny_prepared, ks=(10,))
    model_a, windows = _setup(tiny_prepared)
    result_a = train_loop(model_a, windows, _config(ema_decay=0.9), evaluate=evaluate, run_dir=tmp_path / "a")
    model_b, _ = _setup(tiny_prepared)
    with pytest.raises(KeyboardInterrupt):
        train_loop(model_b, windows, _config(ema_decay=0.9), evaluate=evaluate, run_dir=tmp_path / "b", callbacks=[_KillAfter(2)])
    assert (tmp_path / "b" / "checkpoint" / "ema.safetensors").exists()
    fresh, _ = _setup(tiny_prepared)
    result_b = train_loop(fresh, windows, _config(ema_decay=0.9), evaluate=evaluate, run_dir=tmp_path / "b", resume=True)
    torch.testing.assert_close(fresh.state_dict(), model_a.state_dict(), rtol=0, atol=0)
    assert (result_b.best_epoch, result_b.best_metric) == (result_a.best_epoch, result_a.best_metric)
    # a checkpoint written without EMA cannot silently resume an EMA run
    plain, _ = _setup(tiny_prepared)
    train_loop(plain, windows, _config(epochs=1), run_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="no ema.safetensors"):
        train_loop(plain, windows, _config(ema_decay=0.9), run_dir=tmp_path / "c", resume=True)
    with pytest.raises(ValueError, match="ema_decay"):
        _config(ema_decay=1.0)
