"""`llmrec.tune`: the study's best trial is what it reports and writes, as a config `llmrec train` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import PreparedDataset
from llmrec.models.spec import SearchParam

SPACE = {
    "d_model": SearchParam("model", "categorical", choices=(16,)),
    "dropout": SearchParam("model", "float", 0.0, 0.2),
    "lr": SearchParam("train", "float", 1e-3, 1e-2, log=True),
}


def test_best_trial_is_reported_and_written_as_a_train_config(
    tiny_prepared: PreparedDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    import llmrec.tune
    from llmrec.config import build, load_toml
    from llmrec.experiment import check_settings
    from llmrec.training import TrainConfig

    base = TrainConfig(epochs=1, batch_size=8, progress=False)
    out = tmp_path / "best.toml"
    summary = llmrec.tune.tune(
        tiny_prepared,
        model="next-item-lm",
        space=SPACE,
        base_model={"n_layers": 1, "max_seq_len": 8},
        base_train=base,
        n_trials=3,
        seed=1,
        out=out,
    )
    complete = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert len(summary["trials"]) == 3 and complete
    best = max(complete, key=lambda t: t["value"])
    assert summary["best_value"] == best["value"]
    written = load_toml(out)
    assert written == summary["best_params"]
    assert written["model"]["dropout"] == best["params"]["dropout"] and written["train"]["lr"] == best["params"]["lr"]
    assert written["model"]["n_layers"] == 1 and written["model"]["d_ff"] == 4 * 16  # base keys kept, width derived
    check_settings("next-item-lm", {"model": written["model"]})  # a valid [model] section
    assert build(TrainConfig, written["train"], section="train").epochs == 1  # a valid [train] section
