"""The training loop's built-in callbacks: each owns one concern of a run, so `llmrec.training.loop.train_loop` is only
epochs -> batches -> step.

The loop calls every callback, in the order of its list, at five points: ``on_start`` (after the optimizer is
built, before the weights move to the device), ``on_step`` (after every optimiser step), ``on_validate`` (the
epoch's training logs are in; validation metrics may be added), ``on_epoch_end`` (the loop has recorded the epoch
in ``run.state``) and ``stop`` (the first reason given ends the run), then ``on_end``. The built-ins, in the
loop's order:

1. `RunFiles`: the run directory. ``--resume`` restores the checkpoint (`llmrec.training.checkpoint`) and the best
   weights and rewrites metrics.csv / steps.csv to match it; every epoch appends the logs, saves ``best/`` when
   the kept weights improved, and replaces the checkpoint. Only rank 0 writes.
2. `WeightAverage` (``train.ema_decay > 0``): an exponential moving average of the weights, updated every step;
   it is what is validated, selected and returned (``run.kept``).
3. `Selection`: validation, best weights, early stopping on ``train.patience``.
4. `EpochCallbacks`: the caller's `llmrec.training.loop.Callback` objects (experiment trackers, tests).
5. `EpochBar`: the progress bar inside an epoch (batches, rate, ETA, running loss), on a terminal or in a notebook.
6. `EpochLine`: the one progress line per epoch.
7. `TimeBudget` (``train.max_minutes``): stops after the epoch that exceeds it, on every rank together.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from llmrec.atomic import atomic_write
from llmrec.errors import artifact_file
from llmrec.models.base import Trainable
from llmrec.training import distributed
from llmrec.training.checkpoint import TrainState, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from llmrec.training.loop import Callback, TrainConfig

__all__ = [
    "EpochBar",
    "EpochCallbacks",
    "EpochLine",
    "LoopCallback",
    "Run",
    "RunFiles",
    "Selection",
    "Step",
    "TimeBudget",
    "WeightAverage",
]

Weights = dict[str, torch.Tensor]
# torch's factory of the EMA update (foreach lerp), untyped upstream: decay -> multi_avg_fn.
_ema: Callable[[float], Any] = torch.optim.swa_utils.get_ema_multi_avg_fn


@dataclass
class Run:
    """What the loop and its callbacks share during one call of `train_loop`."""

    model: Trainable
    config: TrainConfig
    opt: torch.optim.Optimizer
    ctx: distributed.DistContext
    dir: Path | None  # the run directory (None: nothing is written)
    resume: bool
    phase: str = ""  # "refit " for a refit run: its progress lines say so
    state: TrainState = field(default_factory=TrainState)
    ema: Trainable | None = None  # the averaged copy of the model (WeightAverage)
    epoch: int = 0  # the epoch in progress
    best: Weights | None = None  # the kept weights of the best epoch so far
    improved: bool = False  # this epoch's kept weights are the new best
    t0: float = 0.0  # perf_counter() at the run's start, less the seconds of resumed epochs
    n_batches: int = 0  # optimiser steps per epoch

    @property
    def kept(self) -> Trainable:
        """The weights that are validated, selected and returned: the average when there is one."""
        return self.model if self.ema is None else self.ema

    @property
    def writes(self) -> bool:
        return self.dir is not None and self.ctx.is_main


@dataclass(frozen=True)
class Step:
    """One optimisation step: its global number, epoch, the global batch's mean loss, learning rate and size."""

    step: int
    epoch: int
    loss: float
    lr: float
    n_sequences: int

    def row(self) -> dict[str, float]:
        """The step's steps.csv row."""
        return {"step": float(self.step), "epoch": float(self.epoch), "loss": self.loss, "lr": self.lr}


class LoopCallback:
    """A concern of the training loop; every hook does nothing unless overridden."""

    def on_start(self, run: Run) -> None:
        return None

    def on_step(self, run: Run, step: Step) -> None:
        return None

    def on_validate(self, run: Run, logs: dict[str, float]) -> None:
        return None

    def on_epoch_end(self, run: Run, logs: dict[str, float]) -> None:
        return None

    def stop(self, run: Run, logs: dict[str, float]) -> str | None:
        """A reason to end the run after this epoch ("early", "time"), or None."""
        return None

    def on_end(self, run: Run) -> None:
        return None


class RunFiles(LoopCallback):
    """``<run>/checkpoint``, ``best/``, ``metrics.csv``, ``steps.csv`` and ``train_config.json`` (see the docstring)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_start(self, run: Run) -> None:
        d = run.dir
        if run.resume:
            assert d is not None  # train_loop() checked that the checkpoint exists
            run.state = load_checkpoint(d, run.model, run.opt, run.ema)
            if (d / "best" / "model.safetensors").exists():
                with artifact_file(d / "best" / "model.safetensors"):
                    run.best = load_file(str(d / "best" / "model.safetensors"))
                    if run.best.keys() != run.model.state_dict().keys():
                        raise KeyError("other tensor names than the model's")
        if d is not None and run.ctx.is_main:
            (d / "metrics.csv").unlink(missing_ok=True)  # a fresh run never appends to an earlier run's log
            if run.resume:  # rewritten from the checkpoint: drops a lost epoch's rows
                for row in run.state.history:
                    _append_rows(d / "metrics.csv", [row])
                _truncate_steps(d / "steps.csv", run.state.step)
            else:
                (d / "steps.csv").unlink(missing_ok=True)
        distributed.barrier()  # nobody starts while rank 0 still rewrites the logs
        if d is not None and run.ctx.is_main:  # only now: a --resume refused above leaves the run's files as they were
            atomic_write(d / "train_config.json", json.dumps(asdict(run.config), indent=2).encode())

    def on_step(self, run: Run, step: Step) -> None:
        self.steps.append(step.row())

    def on_epoch_end(self, run: Run, logs: dict[str, float]) -> None:
        if run.dir is not None and run.ctx.is_main:
            if run.improved:
                run.kept.save_pretrained(run.dir / "best")
            _append_rows(run.dir / "metrics.csv", [logs])
            _append_rows(run.dir / "steps.csv", self.steps)
            save_checkpoint(run.dir, run.model, run.opt, run.state, run.ema)
        self.steps = []
        distributed.barrier()  # the epoch's checkpoint is on disk before any rank moves on


class WeightAverage(LoopCallback):
    """An exponential moving average of the weights (torch.optim.swa_utils), updated after every step."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.source = model
        self.averaged = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=_ema(decay))

    @property
    def module(self) -> Trainable:
        """The averaged copy: the same class as the model (a deep copy of it)."""
        return cast(Trainable, self.averaged.module)

    def on_start(self, run: Run) -> None:
        if run.resume:
            self.averaged.n_averaged.fill_(run.state.step)
        if run.ctx.device.type != "cpu":
            self.averaged.to(run.ctx.device)

    def on_step(self, run: Run, step: Step) -> None:
        self.averaged.update_parameters(self.source)


class Selection(LoopCallback):
    """Validate the kept weights after every epoch, remember the best, stop after `patience` epochs without gain.

    Without `evaluate` there is nothing to select on: the latest weights are the result."""

    def __init__(self, evaluate: Callable[[Any], dict[str, float]] | None, metric: str, patience: int) -> None:
        self.evaluate, self.metric, self.patience = evaluate, metric, patience

    def on_start(self, run: Run) -> None:
        if run.best is None:
            run.best = {k: v.clone() for k, v in run.model.state_dict().items()}

    def on_validate(self, run: Run, logs: dict[str, float]) -> None:
        kept = run.kept
        if self.evaluate is not None:
            kept.eval()
            metrics = self.evaluate(kept)
            logs.update({f"valid_{k}": v for k, v in metrics.items()})
            current = metrics[self.metric]
        else:
            current = float(run.epoch)
        s = run.state
        run.improved = current > s.best_metric
        if run.improved:
            s.best_metric, s.best_epoch, s.bad_epochs = current, run.epoch, 0
            run.best = {k: v.detach().clone() for k, v in kept.state_dict().items()}
        else:
            s.bad_epochs += 1

    def stop(self, run: Run, logs: dict[str, float]) -> str | None:
        return "early" if run.state.bad_epochs >= self.patience else None

    def on_end(self, run: Run) -> None:
        assert run.best is not None  # set in on_start
        run.model.load_state_dict(run.best)


class EpochCallbacks(LoopCallback):
    """The caller's `Callback` objects, called after the epoch's checkpoint is written."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = callbacks

    def on_epoch_end(self, run: Run, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(run.epoch, logs, run.model)


class EpochBar(LoopCallback):
    """A tqdm bar over the epoch's batches (rank 0, train.progress; `llmrec.progress.bar_disabled`: on a terminal or
    in a notebook, never into a log file): steps done of `Run.n_batches`, the rate, the time left, the running loss
    and sequences per second. It is opened at the epoch's first step and closed before validation."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.losses: list[float] = []
        self.n_sequences = 0
        self.t0 = 0.0

    def on_step(self, run: Run, step: Step) -> None:
        if self.bar is None:
            from llmrec.progress import bar_disabled

            disabled = bar_disabled(run.config.progress and run.ctx.is_main)
            self.bar = tqdm(
                total=run.n_batches, desc=f"{run.phase}epoch {run.epoch}", unit="batch", disable=disabled, leave=False
            )
            self.losses, self.n_sequences = [], 0
            self.t0 = time.perf_counter()
        self.losses.append(step.loss)
        self.n_sequences += step.n_sequences
        rate = self.n_sequences / max(1e-9, time.perf_counter() - self.t0)
        self.bar.set_postfix(loss=f"{sum(self.losses[-50:]) / len(self.losses[-50:]):.4f}", seq_s=f"{rate:.0f}", refresh=False)
        self.bar.update(1)

    def on_validate(self, run: Run, logs: dict[str, float]) -> None:
        self.close()

    def on_end(self, run: Run) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLine(LoopCallback):
    """One line per epoch on the terminal (rank 0, train.progress): loss, the @10 validation metrics, seconds."""

    def on_epoch_end(self, run: Run, logs: dict[str, float]) -> None:
        if run.config.progress and run.ctx.is_main:
            shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k.startswith("valid_") and "@10" in k)
            tqdm.write(f"{run.phase}epoch {run.epoch:3d} loss {logs['train_loss']:.4f} {shown} ({logs['train_seconds']:.1f}s)")


class TimeBudget(LoopCallback):
    """Stop after the epoch that ends past `minutes` of training (resumed epochs count)."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes

    def stop(self, run: Run, logs: dict[str, float]) -> str | None:
        # each rank has its own clock: stop together when any rank ran out of time
        return "time" if distributed.any_rank(logs["seconds"] > 60 * self.minutes, run.ctx) else None


def _append_rows(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    is_new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if is_new:
            w.writeheader()
        w.writerows(rows)


def _truncate_steps(path: Path, last_step: int) -> None:
    """Keep the step log consistent with a resumed checkpoint: drop steps after `last_step` (a lost epoch)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["step"]) <= last_step]
    path.unlink()
    _append_rows(path, [{k: float(v) for k, v in r.items()} for r in rows])
