"""`llmrec.models.MODELS`: one registry line per model type, lazy for heavy models, and the model contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.data import PreparedDataset

TINY_LM = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


def test_registry_lists_every_model_type_and_each_spec_says_its_name() -> None:
    from llmrec.models import MODELS, PRESETS, model_class, model_spec

    for name in MODELS:
        spec = model_spec(name)
        assert spec.model_type == name and model_class(name).model_type == name
    # PRESETS (listed without torch, for --help) names exactly the presets the specs declare
    assert PRESETS == {p: t for t in MODELS for p in model_spec(t).presets}
    with pytest.raises(ValueError, match="unknown model_type 'gpt-rec'; known: next-item-lm"):
        model_class("gpt-rec")


def test_specs_declare_examples_and_capabilities() -> None:
    from llmrec.models import model_spec

    full = ("Trainable", "ItemEmbeddingModel", "Adaptable", "ColdItemMappable", "GradientAttributable", "OnnxExportable")
    assert model_spec("next-item-lm").capabilities() == full
    assert model_spec("bsarec").capabilities() == full
    assert model_spec("bsarec").examples == ("prefixes",)
    assert model_spec("most-popular").capabilities() == ()
    assert model_spec("t5-semantic").capabilities() == ("Trainable",)


def test_a_specs_training_recipe_lies_between_the_library_defaults_and_the_users_train_section() -> None:
    from dataclasses import fields

    from llmrec.experiment import check_settings
    from llmrec.models import MODELS, model_spec
    from llmrec.training.loop import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    for name in MODELS:  # every declared key is a [train] field with a valid value
        recipe = dict(model_spec(name).train_defaults)
        assert set(recipe) <= names, name
        TrainConfig(**recipe)
    tv = check_settings("tvrec", {}).train
    assert (tv.batch_size, tv.lr, tv.adam_beta2, tv.grad_clip, tv.patience) == (256, 5e-4, 0.999, 0.0, 8)
    assert tv.refit_on_valid == TrainConfig().refit_on_valid  # what it does not declare stays the library's
    mine = check_settings("tvrec", {"train": {"adam_beta2": 0.98, "lr": 1e-3}}).train  # the user's keys win
    assert (mine.adam_beta2, mine.lr, mine.batch_size) == (0.98, 1e-3, 256)
    lm, default = check_settings("next-item-lm", {}).train, TrainConfig()
    assert (lm.batch_size, lm.lr, lm.adam_beta2, lm.grad_clip) == (default.batch_size, default.lr, 0.98, 1.0)


def test_recipes_are_the_registry_names_and_the_help_lists_them() -> None:
    from typer.testing import CliRunner

    from llmrec.cli import app
    from llmrec.models import MODELS, model_spec
    from llmrec.training.recipes import RECIPES

    names = [n for t in MODELS for n in (t, *model_spec(t).presets)]
    assert list(RECIPES) == names
    out = "".join(CliRunner().invoke(app, ["train", "--help"]).stdout.split())
    assert [n for n in names if n not in out] == []
    assert RECIPES["sasrec"].presets["loss"] == "bce" and RECIPES["sasrec"].spec is model_spec("next-item-lm")


def test_importing_the_registry_and_the_cli_does_not_import_torch() -> None:
    code = "import sys, llmrec.models, llmrec.cli.model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_the_registry_does_not_import_transformers() -> None:
    code = "import sys, llmrec.models, llmrec.recommend; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_models_satisfy_the_contract_and_say_their_capabilities(tiny_prepared: PreparedDataset) -> None:
    from llmrec.models import ItemEmbeddingModel, RecModel, Trainable
    from llmrec.models.baselines import ItemKNN, MostPopular
    from llmrec.training import build_model

    lm, _ = build_model(tiny_prepared, TINY_LM)
    pop = MostPopular.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items)
    knn = ItemKNN.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items)
    for model in (lm, pop, knn):
        assert isinstance(model, RecModel)
        assert model.n_items == tiny_prepared.n_items
    assert lm.max_seq_len == 8
    assert isinstance(lm, ItemEmbeddingModel) and isinstance(lm, Trainable)
    for model in (pop, knn):
        assert not isinstance(model, ItemEmbeddingModel) and not isinstance(model, Trainable)


def test_load_model_goes_through_the_registry(
    tiny_prepared: PreparedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmrec.models
    from llmrec.artifact import save_artifact
    from llmrec.models.baselines import MostPopular

    path = save_artifact(MostPopular.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items), tiny_prepared, tmp_path / "pop")

    class Renamed(MostPopular):
        pass

    from dataclasses import replace

    spec = replace(llmrec.models.model_spec("most-popular"), model_class=Renamed)
    monkeypatch.setitem(llmrec.models.MODELS, "most-popular", lambda: spec)
    assert type(llmrec.models.load_model(path)) is Renamed
    # a type the registry does not know is an artifact error naming config.json
    (path / "config.json").write_text(json.dumps({"model_type": ["x"]}))
    with pytest.raises(ValueError, match=r"config\.json: unknown model_type \['x'\]"):
        llmrec.models.load_model(path)
