"""`llmrec tune` for any model that declares a search space: the default TV-Rec searches its own levers under its
recipe; every declared space fits its model's config; a model without a search space is refused by name."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.models.spec import SearchParam

runner = CliRunner()


def test_models_declare_their_search_space() -> None:
    from llmrec.tune import search_space, tunable_models

    assert set(search_space("tvrec")) == {"dropout", "n_basis", "max_seq_len", "lr", "epochs"}
    assert {"d_model", "lr"} <= set(search_space("next-item-lm"))
    assert {"alpha", "c"} <= set(search_space("bsarec"))
    assert {"tvrec", "bsarec", "next-item-lm", "sasrec"} <= set(tunable_models())
    assert not {"most-popular", "item-knn", "t5-semantic"} & set(tunable_models())
    with pytest.raises(ValueError, match=r"model 'most-popular' declares no search space for llmrec tune; tunable: .*tvrec"):
        search_space("most-popular")


@pytest.mark.parametrize("model", ["most-popular", "t5-semantic"])
def test_tune_refuses_a_model_without_a_search_space_in_one_line(model: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["tune", "--model", model, "--dataset", "x", "--out", str(tmp_path / "best.toml")])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: model '{model}' declares no search space"), r.output
    assert r.stderr.count("\n") == 1 and "tvrec" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "best.toml").exists()


def _tunable_names() -> list[str]:
    from llmrec.tune import tunable_models

    return tunable_models()


@pytest.mark.parametrize("model", _tunable_names())
def test_every_value_of_a_declared_space_passes_its_configs_checks(model: str) -> None:
    """Each end of every range and each choice, with the model's defaults, builds its config and its [train] config
    (their __post_init__ checks), so no trial of the declared space fails on a setting."""
    from llmrec.experiment import check_settings
    from llmrec.training.recipes import recipe
    from llmrec.tune import search_space

    spec = recipe(model).spec
    derive = spec.search_derived or (lambda _point: {})
    base = check_settings(model, {})
    for name, param in search_space(model).items():
        assert isinstance(param, SearchParam)
        for value in param.edges():
            if param.section == "model":
                run = check_settings(model, {"model": {name: value, **derive({name: value})}})
                assert run.settings is not None and getattr(run.settings.config, name) == value
            else:
                assert name in {f.name for f in dataclasses.fields(base.train)}
                assert getattr(dataclasses.replace(base.train, **{name: value}), name) == value


def test_a_search_parameter_is_checked_when_declared() -> None:
    for bad in (
        {"section": "data", "kind": "float", "low": 0.1, "high": 0.5},
        {"section": "model", "kind": "float", "low": 0.5, "high": 0.1},
        {"section": "train", "kind": "float", "low": 0.0, "high": 1.0, "log": True},
        {"section": "model", "kind": "categorical"},
        {"section": "model", "kind": "int", "low": 1.5, "high": 4},
        {"section": "model", "kind": "normal", "low": 0.0, "high": 1.0},
    ):
        with pytest.raises(ValueError, match="search"):
            SearchParam(**bad)  # type: ignore[arg-type]
    assert SearchParam("model", "int", 1, 4).edges() == (1, 4)
    assert SearchParam("model", "categorical", choices=(8, 32, 16)).largest() == 32


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
        base_model={"d_model": 16, "n_layers": 1, "d_ff": 32, "max_seq_len": 8},
        base_train=check_settings("tvrec", {"train": {"patience": 1}}, progress=False).train,
        space={**SEARCH_SPACE, "epochs": SearchParam("train", "categorical", choices=(1, 2))},
        fixed={"max_seq_len"},  # held at the base's 8, not searched
        n_trials=2,
        seed=3,
        out=out,
        on_trial=lines.append,
    )
    assert summary["model"] == "tvrec" and len(summary["trials"]) == 2 == len(lines)
    written = tomllib.loads(out.read_text())
    model, train = written["model"], written["train"]
    assert model["n_basis"] in SEARCH_SPACE["n_basis"].choices and 0.1 <= model["dropout"] <= 0.5
    assert model["max_seq_len"] == 8 and all("max_seq_len" not in t["params"] for t in summary["trials"])
    assert model["emb_dropout"] == model["dropout"]  # TV-Rec's one hidden dropout
    assert model["d_model"] == 16  # the base settings survive
    assert 2e-4 <= train["lr"] <= 2e-3 and train["epochs"] in (1, 2) and train["patience"] == 1
    assert (train["batch_size"], train["adam_beta2"]) == (256, 0.999)  # the model's recipe is the base, not the library's
    assert "llmrec train --model tvrec --config best.toml" in out.read_text()
    assert check_settings("tvrec", written).params["n_basis"] == model["n_basis"]  # train accepts it


def test_tune_refuses_a_space_that_does_not_fit_the_base_settings(tiny_prepared: PreparedDataset) -> None:
    """BSARec's cut-off c reaches 9, which a window of 8 items (5 frequencies) cannot hold: refused before any trial,
    naming the setting."""
    pytest.importorskip("optuna")
    from llmrec.tune import tune

    with pytest.raises(ValueError, match=r"bsarec search space with the base settings, at c=7: .*c: must be between 1 and 5"):
        tune(tiny_prepared, model="bsarec", base_model={"d_model": 16, "n_layers": 1, "max_seq_len": 8}, n_trials=1)


def test_a_fixed_setting_is_neither_searched_nor_derived(tiny_prepared: PreparedDataset) -> None:
    pytest.importorskip("optuna")
    from llmrec.tune import tune

    base = {"d_model": 16, "n_layers": 1, "d_ff": 32, "max_seq_len": 8, "emb_dropout": 0.05}
    space = {"dropout": SearchParam("model", "float", 0.1, 0.5), "n_basis": SearchParam("model", "int", 2, 4)}
    summary = tune(tiny_prepared, model="tvrec", base_model=base, space=space, fixed={"emb_dropout"}, n_trials=1)
    assert summary["best_params"]["model"]["emb_dropout"] == 0.05  # the user's, not the searched dropout
    assert summary["best_params"]["model"]["n_basis"] in (2, 3, 4)  # an int search
    with pytest.raises(ValueError, match=r"the base config fixes every setting tvrec searches \(dropout, n_basis\)"):
        tune(tiny_prepared, model="tvrec", base_model=base, space=space, fixed={"dropout", "n_basis"}, n_trials=1)
