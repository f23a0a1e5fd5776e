"""The training checkpoint folder, ``<run>/checkpoint``: the one module that writes and reads it.

``model.safetensors`` + ``config.json`` (the model's own `save_pretrained`), ``optimizer.safetensors`` (AdamW's
tensors, keyed ``<param index>.<name>``), ``ema.safetensors`` when the run averages weights, and ``state.json``:
the `TrainState` of the last completed epoch plus the optimizer's param groups. Safetensors + JSON, no pickle.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from llmrec.atomic import atomic_directory
from llmrec.errors import artifact_file, read_json
from llmrec.models.base import Trainable

__all__ = ["TrainState", "check_same_model", "load_checkpoint", "save_checkpoint"]


@dataclass
class TrainState:
    """Where a run stands after its last completed epoch; what `--resume` continues from."""

    epoch: int = 0  # last completed epoch
    step: int = 0  # optimisation steps taken (drives the learning-rate schedule and the EMA count)
    best_metric: float = -math.inf  # the selection metric of the kept weights
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement (early stopping)
    history: list[dict[str, float]] = field(default_factory=list)  # one metrics.csv row per epoch
    seconds: float = 0.0  # wall-clock seconds of all epochs so far (resumed runs count on from here)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(
            epoch=int(d["epoch"]),
            step=int(d["step"]),
            best_metric=float(d["best_metric"]),
            best_epoch=int(d["best_epoch"]),
            bad_epochs=int(d["bad_epochs"]),
            history=list(d["history"]),
            seconds=float(d.get("seconds", 0.0)),
        )


def save_checkpoint(
    run_dir: Path, model: Trainable, opt: torch.optim.Optimizer, state: TrainState, ema: Trainable | None = None
) -> None:
    """Atomically replace <run>/checkpoint with model + optimizer tensors (safetensors) and state (JSON)."""
    with atomic_directory(run_dir / "checkpoint") as tmp:
        model.save_pretrained(tmp)
        if ema is not None:
            save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
        sd = opt.state_dict()
        tensors = {f"{i}.{k}": v.contiguous() for i, s in sd["state"].items() for k, v in s.items() if torch.is_tensor(v)}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**asdict(state), "param_groups": sd["param_groups"]}, indent=1))


def load_checkpoint(run_dir: Path, model: Trainable, opt: torch.optim.Optimizer, ema: Trainable | None = None) -> TrainState:
    """Restore model, EMA and optimizer from <run>/checkpoint. A damaged file raises ArtifactError naming it; a
    checkpoint of another model shape or catalogue raises ValueError saying which setting differs."""
    ck = run_dir / "checkpoint"
    check_same_model(read_json(ck / "config.json"), model)
    with artifact_file(ck / "model.safetensors"):
        model.load_state_dict(load_file(str(ck / "model.safetensors")))
    if ema is not None:
        if not (ck / "ema.safetensors").exists():
            raise FileNotFoundError(f"{ck}: train.ema_decay > 0 but the checkpoint has no ema.safetensors (trained without EMA?)")
        with artifact_file(ck / "ema.safetensors"):
            ema.load_state_dict(load_file(str(ck / "ema.safetensors")))
    state: dict[str, Any] = read_json(ck / "state.json")
    with artifact_file(ck / "optimizer.safetensors"):
        tensors = load_file(str(ck / "optimizer.safetensors"))
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, v in tensors.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = v
        with artifact_file(ck / "state.json"):
            param_groups = state.pop("param_groups")
        opt.load_state_dict({"state": opt_state, "param_groups": param_groups})
    with artifact_file(ck / "state.json"):
        for key in ("epoch", "step", "best_metric", "best_epoch", "bad_epochs", "history"):
            if key not in state:
                raise KeyError(f"no {key!r}")
        return TrainState.from_dict(state)


def check_same_model(saved: dict[str, Any], model: Trainable) -> None:
    """--resume continues the same model: refuse a checkpoint whose settings differ from the config's."""
    want = model.config.to_dict()
    kind, saved_kind = getattr(model, "model_type", None), saved.get("model_type")
    if saved_kind is not None and kind is not None and saved_kind != kind:
        others = [
            f"{key} {value} (asks {want[key]})"
            for key, value in saved.items()
            if key in want and want[key] != value and not (isinstance(value, list) and tuple(value) == want[key])
        ]
        also = f"; settings that differ too: {', '.join(others)}" if others else ""
        raise ValueError(f"--resume: checkpoint was trained with model_type {saved_kind}, --model asks {kind}{also}")
    for key, value in saved.items():
        if key in want and want[key] != value and not (isinstance(value, list) and tuple(value) == want[key]):
            if key == "n_items":
                raise ValueError(
                    f"--resume: checkpoint was trained on a dataset of {value} items, this one has {want[key]} (another dataset?)"
                )
            raise ValueError(f"--resume: checkpoint was trained with {key} {value}, config asks {want[key]}")
