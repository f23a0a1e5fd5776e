"""`llmrec.models.MODELS`: one registry line per model type, lazy for heavy models, and the model contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.data import PreparedDataset

TINY_LM = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


def test_registry_lists_every_model_type_and_each_class_says_its_name() -> None:
    from llmrec.models import MODELS, model_class

    assert sorted(MODELS) == ["bsarec", "item-knn", "most-popular", "next-item-lm", "t5-semantic"]
    for name in MODELS:
        assert model_class(name).model_type == name
    with pytest.raises(ValueError, match="unknown model_type 'gpt-rec'; known: next-item-lm"):
        model_class("gpt-rec")


def test_importing_the_registry_does_not_import_transformers() -> None:
    code = "import sys, llmrec.models, llmrec.recommend; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_models_satisfy_the_contract_and_say_their_capabilities(tiny_prepared: PreparedDataset) -> None:
    from llmrec.models import ItemEmbeddingModel, RecModel, Trainable
    from llmrec.models.baselines import ItemKNN, MostPopular
    from llmrec.train import build_model

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

    monkeypatch.setitem(llmrec.models.MODELS, "most-popular", lambda: Renamed)
    assert type(llmrec.models.load_model(path)) is Renamed
    # a type the registry does not know is an artifact error naming config.json
    (path / "config.json").write_text(json.dumps({"model_type": ["x"]}))
    with pytest.raises(ValueError, match=r"config\.json: unknown model_type \['x'\]"):
        llmrec.models.load_model(path)
