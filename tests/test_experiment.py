"""`llmrec.experiment.train_model`: any model by name into an artifact that records its training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.data import PreparedDataset

TINY_LM = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


@pytest.mark.parametrize(
    ("model", "sections", "message"),
    [
        ("gpt-rec", {}, "unknown model 'gpt-rec'; one of next-item-lm"),
        ("most-popular", {"optimizer": {}}, "unknown config section"),
        ("most-popular", {"model": {"k": 1}}, "most-popular takes no"),
        ("item-knn", {"model": {"neighbors": 5}}, "model.neighbors"),
        ("next-item-lm", {"model": {"n_items": 5}}, "model.n_items is derived from the data"),
    ],
)
def test_bad_model_or_config_is_refused_before_anything_is_written(
    tiny_prepared: PreparedDataset, tmp_path: Path, model: str, sections: dict, message: str
) -> None:
    from llmrec.experiment import check_settings

    with pytest.raises(ValueError, match=message):
        check_settings(model, sections, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_baseline_artifact_records_its_training_and_data(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.experiment import check_settings, train_model
    from llmrec.models import load_model

    summary = train_model(
        tiny_prepared, tmp_path / "data", check_settings("item-knn", {"model": {"neighbours": 5}}), tmp_path / "knn"
    )
    assert summary["model"] == "item-knn" and summary["params"] == {"neighbours": 5}
    assert json.loads((tmp_path / "knn" / "training.json").read_text())["params"] == {"neighbours": 5}
    assert json.loads((tmp_path / "knn" / "dataset.json").read_text())["prepared_path"] == str(tmp_path / "data")
    assert load_model(tmp_path / "knn").n_items == tiny_prepared.n_items


def test_sasrec_preset_trains_an_lm_with_its_paper_loss_and_keeps_the_run(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.experiment import check_settings, train_model
    from llmrec.models import load_model

    out = tmp_path / "sasrec"
    sections = {"model": {**TINY_LM, "n_heads": 1}, "train": {"epochs": 2, "batch_size": 8}}
    summary = train_model(tiny_prepared, tmp_path / "data", check_settings("sasrec", sections, progress=False), out)
    assert summary["params"]["loss"] == "bce" and 1 <= summary["best_epoch"] <= 2
    assert load_model(out).config.loss == "bce"
    assert (out / "train" / "metrics.csv").is_file() and (out / "train" / "refit").is_dir()
    assert not (tmp_path / ".sasrec.train").exists()  # the run folder moved into the artifact


def test_experiment_still_exports_what_moved_to_train_and_eval() -> None:
    import llmrec.eval.leave_one_out
    import llmrec.experiment
    import llmrec.training.semantic

    assert llmrec.experiment.fit_t5_semantic is llmrec.training.semantic.fit_t5_semantic
    assert llmrec.experiment.collaborative_item_embeddings is llmrec.training.semantic.collaborative_item_embeddings
    assert llmrec.experiment.evaluate_model is llmrec.eval.leave_one_out.evaluate_model
