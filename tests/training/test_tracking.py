"""`llmrec train --track tensorboard|mlflow`: params, per-epoch metrics and the summary in a local store."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.training.tracking import flatten_params

TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.max_seq_len=8", "--set", "train.epochs=2"]


def _train(data: Path, out: Path, *args: str) -> tuple[list[dict[str, str]], dict[str, object]]:
    result = CliRunner().invoke(app, ["train", "--dataset", str(data), "--out", str(out), *TINY, *args])
    assert result.exit_code == 0, result.output
    with (out / "train" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((out / "training.json").read_text())


def test_flatten_params_dots_sections_and_keeps_scalars() -> None:
    flat = flatten_params(
        {"model_type": "sasrec", "train": {"lr": 0.001, "seed": 3}, "model": {"tie": True, "x": None, "s": (1, 2)}}
    )
    assert flat == {"model_type": "sasrec", "train.lr": 0.001, "train.seed": 3, "model.tie": True, "model.s": "[1, 2]"}


def test_train_tracks_to_tensorboard(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows, summary = _train(
        tiny_prepared.save(tmp_path / "data"), tmp_path / "lm", "--track", "tensorboard", "--track-uri", str(tmp_path / "tb")
    )
    events = EventAccumulator(str(tmp_path / "tb" / "lm"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    ndcg = events.Scalars("valid/ndcg@10")
    assert [e.step for e in ndcg] == [1, 2]
    assert [e.value for e in ndcg] == pytest.approx([float(r["valid_ndcg@10"]) for r in rows], rel=1e-6)
    assert [e.value for e in events.Scalars("train_loss")] == pytest.approx([float(r["train_loss"]) for r in rows], rel=1e-6)
    assert events.Scalars("final/best_valid")[0].value == pytest.approx(summary["best_valid"], rel=1e-6)
    params = events.Tensors("params/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| train.epochs | 2 |" in params and "| model.d_model | 16 |" in params
    assert '"best_epoch"' in events.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()


def test_train_tracks_to_mlflow(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    rows, summary = _train(
        tiny_prepared.save(tmp_path / "data"), tmp_path / "lm", "--track", "mlflow", "--track-uri", str(tmp_path / "ml")
    )
    from mlflow.tracking import MlflowClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SQLAlchemy notices inside MLflow's store
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("llmrec")
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        history = client.get_metric_history(run.info.run_id, "valid_ndcg_at_10")
    assert run.info.status == "FINISHED" and run.info.run_name == "lm"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.d_model"] == "16"
    assert run.data.params["dataset"] == tiny_prepared.name and run.data.params["train.lr"] == str(summary["train"]["lr"])  # type: ignore[index]
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([float(r["valid_ndcg@10"]) for r in rows])
    assert run.data.metrics["final.best_valid"] == pytest.approx(summary["best_valid"])
    logged = Path(run.info.artifact_uri.removeprefix("file://")) / "training.json"
    assert json.loads(logged.read_text())["best_epoch"] == summary["best_epoch"]


def test_train_rejects_an_unknown_tracker(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--dataset", str(tiny_prepared.save(tmp_path / "d")), "--out", str(tmp_path / "m"), "--track", "wandb"]
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: --track must be tensorboard or mlflow")
    assert not (tmp_path / "m").exists()
