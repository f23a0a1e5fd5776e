"""Progress a shop can see: a bar with rate and ETA inside each epoch on a terminal (none in a log, none with
progress off), one line per epoch, one line per `tune` trial."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from llmrec.data import PreparedDataset
from llmrec.data.sequences import training_windows
from llmrec.models.spec import SearchParam
from llmrec.training import TrainConfig, build_model, callbacks, train_loop

TINY_MODEL = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


class _EveryStep(callbacks.tqdm):  # type: ignore[misc, name-defined]
    """Redrawn at every step: a tiny epoch takes milliseconds, less than tqdm's 0.1 s between redraws."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "mininterval": 0, "miniters": 1})


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _train(ds: PreparedDataset, stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch, *, progress: bool) -> str:
    model, _ = build_model(ds, TINY_MODEL, seed=0)
    windows = training_windows(ds.train_sequences(), 8)
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(callbacks, "tqdm", _EveryStep)
    train_loop(model, windows, TrainConfig(epochs=2, batch_size=4, progress=progress))
    return stderr.getvalue()


def test_a_bar_with_rate_and_eta_inside_each_epoch_on_a_terminal(
    tiny_prepared: PreparedDataset, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = _train(tiny_prepared, _Terminal(), monkeypatch, progress=True)
    n_batches = -(-len(training_windows(tiny_prepared.train_sequences(), 8)) // 4)
    for epoch in (1, 2):
        assert f"epoch {epoch}:" in shown and f"/{n_batches} [" in shown  # steps done of the epoch's total
    assert "batch/s" in shown and "<" in shown and "loss=" in shown  # rate, time left, running loss
    assert "epoch   2 loss" in capsys.readouterr().out  # the line per epoch stays


def test_no_bar_into_a_log_or_when_quiet(tiny_prepared: PreparedDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _train(tiny_prepared, io.StringIO(), monkeypatch, progress=True) == ""  # stderr is a file, not a terminal
    assert _train(tiny_prepared, _Terminal(), monkeypatch, progress=False) == ""


def test_tune_reports_each_trial_as_it_ends(tiny_prepared: PreparedDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    import llmrec.tune

    space = {
        "d_model": SearchParam("model", "categorical", choices=(16,)),
        "lr": SearchParam("train", "float", 1e-3, 1e-2, log=True),
    }
    lines: list[str] = []
    base = TrainConfig(epochs=1, batch_size=8, progress=False)
    summary: dict[str, Any] = llmrec.tune.tune(
        tiny_prepared,
        model="next-item-lm",
        space=space,
        base_model={"n_layers": 1, "max_seq_len": 8},
        base_train=base,
        n_trials=2,
        on_trial=lines.append,
    )
    assert [line.split(" ")[1] for line in lines] == ["1/2", "2/2"]
    for line, trial in zip(lines, summary["trials"], strict=True):
        assert f"valid ndcg@10 {trial['value']:.4f}" in line and "lr=" in line and "best" in line
