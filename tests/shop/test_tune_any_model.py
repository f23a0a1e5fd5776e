"""`llmrec tune` for any model that declares a search space: the default TV-Rec searches its own levers under its
recipe; a model without a search space is refused by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset

runner = CliRunner()


def test_models_declare_their_search_space() -> None:
    from llmrec.tune import search_space

    assert set(search_space("tvrec")) == {"dropout", "n_basis", "lr", "epochs"}
    assert {"d_model", "lr"} <= set(search_space("next-item-lm"))
    with pytest.raises(ValueError, match=r"model 'most-popular' declares no search space for llmrec tune; tunable: .*tvrec"):
        search_space("most-popular")
    r = runner.invoke(app, ["tune", "--model", "most-popular", "--dataset", "x", "--out", "best.toml"])
    assert r.exit_code == 2 and r.stderr.startswith("error: model 'most-popular' declares no search space")


def test_tune_tvrec_within_its_recipe(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from llmrec.experiment import check_settings
    from llmrec.models.tvrec import SEARCH_SPACE
    from llmrec.tune import tune

    out = tmp_path / "best.toml"
    lines: list[str] = []
    summary = tune(
        tiny_prepared,
        model="tvrec",
        base_model={"d_model": 16, "max_seq_len": 8, "n_layers": 1, "d_ff": 32},
        n_trials=2,
        seed=3,
        out=out,
        on_trial=lines.append,
    )
    assert summary["model"] == "tvrec" and len(summary["trials"]) == 2 == len(lines)
    written = tomllib.loads(out.read_text())
    model, train = written["model"], written["train"]
    assert model["n_basis"] in SEARCH_SPACE["n_basis"][2] and 0.1 <= model["dropout"] <= 0.5
    assert model["emb_dropout"] == model["dropout"]  # TV-Rec's one hidden dropout
    assert model["d_model"] == 16  # the base settings survive
    assert 2e-4 <= train["lr"] <= 2e-3 and train["epochs"] in (15, 30, 45)
    assert (train["batch_size"], train["adam_beta2"]) == (256, 0.999)  # the model's recipe is the base, not the library's
    assert "llmrec train --model tvrec --config best.toml" in out.read_text()
    assert check_settings("tvrec", written).params["n_basis"] == model["n_basis"]  # train accepts it
