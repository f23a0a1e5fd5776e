"""Experiment tracking: a training run's parameters, per-epoch metrics and final summary in TensorBoard or MLflow.

A tracker is a training-loop `Callback` (its `on_epoch_end` logs the epoch's metrics) with two more calls around
the run: `start(params)` before training and `finish(summary)` after it (or `finish(None)` when training failed).
`llmrec train --track tensorboard|mlflow` wires one in; from Python, pass it as a callback and call the two
yourself. Both libraries are optional (the ``track`` extra) and imported only when a tracker is made.

- TensorBoard: event files under `uri` (a folder), one sub-folder per run; params and the summary as text,
  metrics as scalars (step = epoch). View with ``tensorboard --logdir URI``.
- MLflow: a run in experiment `experiment` of the tracking store `uri` (a folder, which becomes a local store
  ``<folder>/mlflow.db`` + ``<folder>/artifacts``, or any MLflow URI such as ``sqlite:///...`` or a server URL;
  default ``$MLFLOW_TRACKING_URI``, else ``./mlruns``); params as params, metrics per epoch, the final summary as
  metrics plus the artifact ``training.json``. MLflow metric names may not contain "@": ``ndcg@10`` is logged as
  ``ndcg_at_10``.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = ["TRACKERS", "MLflowTracker", "TensorBoardTracker", "Tracker", "flatten_params", "make_tracker"]

TRACKERS = ("tensorboard", "mlflow")


class Tracker(Protocol):
    def start(self, params: Mapping[str, Any]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> None: ...
    def finish(self, summary: Mapping[str, Any] | None) -> None: ...


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 0.001}; lists and other values become their JSON text."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, str | int | float | bool):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value, default=str)
    return out


def _final_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    keys = ("best_valid", "best_epoch", "epochs_run", "seconds")
    return {
        k: float(summary[k]) for k in keys if isinstance(summary.get(k), int | float) and not isinstance(summary.get(k), bool)
    }


def _missing(extra_package: str, error: ImportError) -> ImportError:
    return ImportError(f"--track needs {extra_package}: pip install 'llmrec[track]' ({error})")


class TensorBoardTracker:
    """Writes TensorBoard event files to `<log_dir>/<run_name>`."""

    def __init__(self, log_dir: str | Path, run_name: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch's writer needs the tensorboard package
            raise _missing("tensorboard", e) from None
        self.log_dir = Path(log_dir) / run_name
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def start(self, params: Mapping[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(flatten_params(params).items()))
        self.writer.add_text("params", f"| parameter | value |\n|---|---|\n{rows}", global_step=0)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> None:
        for key, value in logs.items():
            self.writer.add_scalar(key.replace("valid_", "valid/", 1), float(value), global_step=epoch)
        self.writer.flush()

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        if summary is not None:
            for key, value in _final_metrics(summary).items():
                self.writer.add_scalar(f"final/{key}", value, global_step=0)
            self.writer.add_text("summary", "```json\n" + json.dumps(summary, indent=2, default=str) + "\n```", global_step=0)
        self.writer.close()


def _mlflow_key(key: str) -> str:
    """A metric or param name MLflow accepts (letters, digits, _ - . space / only)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key.replace("@", "_at_"))


class MLflowTracker:
    """Logs one MLflow run through `MlflowClient` (no global active run, so nothing leaks between runs)."""

    def __init__(self, uri: str | Path | None, experiment: str, run_name: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise _missing("mlflow-skinny", e) from None
        uri = uri if uri is not None else os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns")
        artifacts = None
        if isinstance(uri, Path) or ":" not in str(uri):
            # A folder: a local store, SQLite plus an artifact folder (MLflow 3 retired the plain-file store).
            folder = Path(uri).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            uri, artifacts = f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()
        self.uri = str(uri)
        with warnings.catch_warnings():
            # MLflow's SQL store trips SQLAlchemy 2.1 deprecation notices on import: theirs to fix, not the user's.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)  # creates the store's tables now, inside the filter
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        self.run_id: str = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self._logged: set[str] = set()

    def start(self, params: Mapping[str, Any]) -> None:
        self._log_params(flatten_params(params))

    def _log_params(self, flat: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        new = [Param(_mlflow_key(k), str(v)[:6000]) for k, v in flat.items() if _mlflow_key(k) not in self._logged]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=new[i : i + 100])
        self._logged.update(p.key for p in new)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(k), float(v), now, epoch) for k, v in logs.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        if summary is None:
            self.client.set_terminated(self.run_id, status="FAILED")
            return
        for key, value in _final_metrics(summary).items():
            self.client.log_metric(self.run_id, f"final.{key}", value)
        effective = {"model": summary.get("params", {}), "train": summary.get("train", {})}  # as run, defaults included
        self._log_params(flatten_params(effective))
        self.client.log_text(self.run_id, json.dumps(summary, indent=2, default=str), "training.json")
        self.client.set_terminated(self.run_id, status="FINISHED")


def make_tracker(kind: str, *, uri: str | Path | None, run_name: str, experiment: str = "llmrec") -> Tracker:
    """A tracker by name: "tensorboard" (uri: the log folder, default ./tensorboard) or "mlflow" (uri: the store)."""
    if kind == "tensorboard":
        return TensorBoardTracker(uri if uri is not None else Path("tensorboard"), run_name)
    if kind == "mlflow":
        return MLflowTracker(uri, experiment, run_name)
    raise ValueError(f"--track must be one of {', '.join(TRACKERS)}, got {kind!r}")
