"""`llmrec tune` never reads the test targets: it runs on a dataset whose test targets are poisoned."""

from __future__ import annotations

import tomllib
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from llmrec.data import PreparedDataset
from llmrec.models.spec import SearchParam

POISON_OFFSET = 1000  # an item id far outside the catalogue: any use of it (training, ranking, counting) fails


def _poisoned(ds: PreparedDataset) -> PreparedDataset:
    """A copy of `ds` whose test targets are item ids that do not exist."""
    test_pos = ds.users["test_pos"].to_numpy()
    sequences = [s.copy() for s in ds.sequences]
    for u, pos in enumerate(test_pos):
        if pos >= 0:
            sequences[u][pos] = ds.n_items + POISON_OFFSET
    return PreparedDataset(sequences=sequences, times=ds.times, users=ds.users, items=ds.items, manifest=dict(ds.manifest))


@pytest.fixture
def poisoned(tiny_prepared: PreparedDataset, monkeypatch: pytest.MonkeyPatch) -> PreparedDataset:
    ds = _poisoned(tiny_prepared)
    assert (ds.eval_examples("test").targets > ds.n_items).all()  # every test target is poisoned
    original = PreparedDataset.eval_examples

    def guarded(self: PreparedDataset, split: str):  # type: ignore[no-untyped-def]
        if split != "valid":
            raise AssertionError(f"read the {split} targets")
        return original(self, split)

    monkeypatch.setattr(PreparedDataset, "eval_examples", guarded)
    return ds


def test_the_poison_bites(tiny_prepared: PreparedDataset) -> None:
    """Control: reading the poisoned test targets does fail, so a tune that passes below never read them."""
    from llmrec.eval.evaluate import compute_ranks
    from llmrec.training import TrainConfig, fit, make_score_fn

    ds = _poisoned(tiny_prepared)
    model, _, _ = fit(ds, {"d_model": 16, "n_layers": 1, "d_ff": 32, "max_seq_len": 8}, TrainConfig(epochs=1, progress=False))
    ex = ds.eval_examples("test")
    with pytest.raises(ValueError, match="targets must be item ids"):
        compute_ranks(make_score_fn(model), ex.histories, ex.targets)
    # Training on them fails too: with the test position counted as training, the poison reaches the cold-item filter.
    leaky_users = ds.users.with_columns(
        n_train=pl.when(pl.col("test_pos") >= 0).then(pl.col("test_pos") + 1).otherwise(pl.col("n_train"))
    )
    leaky = PreparedDataset(sequences=ds.sequences, times=ds.times, users=leaky_users, items=ds.items, manifest=ds.manifest)
    with pytest.raises(IndexError):
        leaky.train_sequences()


def test_tune_runs_on_poisoned_test_targets_without_reading_them(
    poisoned: PreparedDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    import llmrec.tune
    from llmrec.training import TrainConfig

    space = {
        "d_model": SearchParam("model", "categorical", choices=(16,)),
        "lr": SearchParam("train", "float", 1e-3, 1e-2, log=True),
    }
    base = TrainConfig(epochs=1, progress=False)
    summary = llmrec.tune.tune(
        poisoned,
        model="next-item-lm",
        space=space,
        base_model={"n_layers": 1, "max_seq_len": 8},
        base_train=base,
        n_trials=2,
        out=tmp_path / "best.toml",
    )
    assert len(summary["trials"]) == 2 and 0.0 <= summary["best_value"] <= 1.0
    written = tomllib.loads((tmp_path / "best.toml").read_text())
    assert written["train"]["refit_on_valid"] is True  # trials skip the refit; the written config keeps the base's


def test_tune_command_on_poisoned_test_targets(
    poisoned: PreparedDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    import llmrec.tune
    from llmrec.cli import app

    space = {
        "d_model": SearchParam("model", "categorical", choices=(16,)),
        "lr": SearchParam("train", "float", 1e-3, 1e-2, log=True),
    }
    monkeypatch.setattr(llmrec.tune, "search_space", lambda model: space)
    data = poisoned.save(tmp_path / "data")
    args = ["tune", "--model", "next-item-lm", "--dataset", str(data), "--out", str(tmp_path / "best.toml"), "--trials", "1"]
    args += ["--set", "train.epochs=1", "--set", "model.n_layers=1", "--set", "model.max_seq_len=8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "best.toml").is_file()
