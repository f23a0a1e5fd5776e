"""One training loop for every sequence model, with hooks instead of trainer subclasses.

`train_loop(model, windows, config, ...)` runs AdamW with warm-up + cosine decay and gradient clipping over
length-bucketed batches, evaluates on validation after each epoch (an `evaluate` callable returning metrics),
stops early on the validation metric, keeps the best weights, writes a checkpoint every epoch, and resumes
exactly from the last completed epoch: the batch order, dropout and negative sampling of epoch e are seeded by
(seed, e), so a resumed run replays the same epochs as an uninterrupted one.

`train_loop` itself is epochs -> batches -> step; everything else is a callback of `llmrec.training.callbacks`, called in
a fixed order (checkpoints and logs, weight averaging, selection and early stopping, the caller's callbacks, the
epoch line, the time budget), sharing a `Run` whose `TrainState` is what a checkpoint records.

Checkpoints are safetensors + JSON (no pickle): ``<run>/checkpoint/{model,optimizer}.safetensors, state.json``
and the best weights in ``<run>/best/``. Per-epoch metrics go to ``<run>/metrics.csv``, the loss of every
optimisation step to ``<run>/steps.csv``.

Under ``torchrun`` / ``accelerate launch`` the same loop trains with DistributedDataParallel (see
`llmrec.training.distributed`): each rank takes its rows of the same global batch, the loss is weighted so the
averaged gradient is the single-process gradient, and only rank 0 writes. The global batch order does not
depend on the number of processes, so a checkpoint resumes under any world size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

from llmrec.config import check_range
from llmrec.data.sequences import bucketed_batches, length_groups, random_batches
from llmrec.models.base import Trainable
from llmrec.training import distributed
from llmrec.training.callbacks import (
    EpochBar,
    EpochCallbacks,
    EpochLine,
    LoopCallback,
    Run,
    RunFiles,
    Selection,
    Step,
    TimeBudget,
    WeightAverage,
)
from llmrec.training.checkpoint import TrainState
from llmrec.types import PAD_ID, SeqBatch

__all__ = ["Callback", "TrainConfig", "TrainResult", "TrainState", "train_loop"]

M = TypeVar("M", bound=Trainable)  # the model type a run trains, evaluates and returns the weights of


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = 30  # cosine horizon and upper bound; early stopping usually ends sooner
    batch_size: int = 128  # sequences per batch (chosen on beauty's validation NDCG@10, docs/benchmarks.md)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # AdamW decay on weight matrices (not biases / norms)
    warmup_steps: int = 200  # linear warm-up (capped at 10% of all steps)
    schedule: str = "cosine"  # "cosine" decay to 10% over `epochs`, or "constant"
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    adam_beta2: float = 0.98  # AdamW's second-moment decay (the published SASRec-family code uses 0.999)
    # "length": batches of similar history length (little padding) | "random": uniformly drawn batches as in the
    # published code, computed in a few length groups (data.sequences.length_groups) on one process
    batching: str = "length"
    patience: int = 5  # epochs without improvement of `metric` before stopping
    metric: str = "ndcg@10"  # validation metric to maximise
    seed: int = 0  # seeds model init (by the caller), batch order, dropout and sampling
    max_minutes: float | None = None  # wall-clock budget; stops after the epoch that exceeds it
    num_threads: int = 0  # torch threads (0 = leave as is)
    progress: bool = True  # tqdm progress bar
    refit_on_valid: bool = True  # after selecting the epoch on valid, retrain on train + valid events for that many epochs
    ema_decay: float = 0.0  # > 0: validate, select and keep an exponential moving average of the weights (per step)
    examples: str = "windows"  # "windows": causal loss at every position | "prefixes": one example per target (last position)
    # validation ranks exclude the user's history items: the protocol the recommender serves (recommend excludes
    # seen items by default) and the published tables use; false selects on the unmasked ranking
    valid_exclude_seen: bool = True
    selected_epoch: int = 0  # > 0: no selection run; train this many epochs (on train + valid with refit_on_valid)
    # how the refit is trained (llmrec.training.refit): "scratch", a fresh model for the selected number of epochs of
    # the same schedule; "continue", the selection run's best model trained on for `refit_epochs` more epochs on
    # train + valid events, peak learning rate `refit_lr` x lr (warm-up, cosine decay), a fraction of the time
    refit: str = "scratch"
    refit_epochs: int = 3
    refit_lr: float = 0.2

    def __post_init__(self) -> None:
        """Ranges (`llmrec.config.check_range`, the error names the key): epochs, patience and selected_epoch up
        to 100,000, batch_size 1..1,048,576, lr finite and > 0, weight_decay and grad_clip >= 0, ema_decay and
        adam_beta2 in [0, 1), max_minutes >= 0 (or None; 0 stops after the first epoch), seed 0..2**32 - 1, num_threads 0..4096,
        refit_epochs 1..100,000, refit_lr finite and > 0."""
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be cosine|constant, got {self.schedule!r}")
        check_range("epochs", self.epochs, 1, 100_000)
        check_range("batch_size", self.batch_size, 1, 1 << 20)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("warmup_steps", self.warmup_steps, 0, 10**9)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_range("adam_beta2", self.adam_beta2, 0.0, 1.0, high_open=True)
        if self.batching not in ("length", "random"):
            raise ValueError(f"batching must be length|random, got {self.batching!r}")
        check_range("patience", self.patience, 1, 100_000)
        check_range("seed", self.seed, 0, 2**32 - 1)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, 0.0)  # 0: stop after the first epoch
        check_range("num_threads", self.num_threads, 0, 4096)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        check_range("selected_epoch", self.selected_epoch, 0, 100_000)
        if self.examples not in ("windows", "prefixes"):
            raise ValueError(f"examples must be windows|prefixes, got {self.examples!r}")
        if self.refit not in ("scratch", "continue"):
            raise ValueError(f"refit must be scratch|continue, got {self.refit!r}")
        check_range("refit_epochs", self.refit_epochs, 1, 100_000)
        check_range("refit_lr", self.refit_lr, 0.0, low_open=True)


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False


class Callback(Protocol):
    def on_epoch_end(self, epoch: int, logs: dict[str, float], model: Trainable) -> None: ...


def _lr_factor(step: int, total: int, c: TrainConfig) -> float:
    warmup = min(c.warmup_steps, max(1, total // 10))  # small data: never spend more than 10% of steps warming up
    if step < warmup:
        return (step + 1) / warmup
    if c.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _make_optimizer(model: Trainable, c: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    groups = [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel per parameter instead of ~8 passes (the item table's update was ~8% of a TV-Rec step)
    fused = all(p.dtype in (torch.float32, torch.float64) and p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(groups, lr=c.lr, betas=(0.9, c.adam_beta2), fused=fused)


def _local_rows(batch: SeqBatch, ctx: distributed.DistContext) -> tuple[SeqBatch, float]:
    """This rank's part of a global batch and the factor that makes its mean loss a share of the global mean.

    Rank r's loss is a mean over its n_r target positions; scaled by n_r * W / N, DDP's gradient average over
    the W ranks equals the gradient of the global mean over all N positions. A rank left without rows (a global
    batch smaller than W) trains on one borrowed row with weight 0, so every rank still joins the all-reduce.
    """
    if not ctx.enabled:
        return batch, 1.0
    assert batch.targets is not None
    rows = distributed.shard_rows(batch.item_ids.shape[0], ctx)
    local = SeqBatch(item_ids=batch.item_ids[rows], targets=batch.targets[rows])
    if local.item_ids.shape[0] == 0:
        return SeqBatch(item_ids=batch.item_ids[:1], targets=batch.targets[:1]), 0.0
    assert local.targets is not None
    n_global = int(torch.count_nonzero(batch.targets != PAD_ID))
    n_local = int(torch.count_nonzero(local.targets != PAD_ID))
    return local, n_local * ctx.world_size / max(1, n_global)


def train_loop(
    model: M,
    windows: Sequence[np.ndarray],
    config: TrainConfig,
    *,
    evaluate: Callable[[M], dict[str, float]] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    stop_after: int | None = None,
) -> TrainResult:
    """Train `model` on next-item windows (see data.sequences.training_windows); returns the best epoch's result.

    On return the model holds the best validation weights (the last weights when `evaluate` is None).
    `stop_after` ends training after that epoch while keeping the learning-rate schedule of `config.epochs`
    (used to refit for exactly the selected number of epochs).
    """
    module = _module(model)
    c = config
    if c.num_threads:
        torch.set_num_threads(c.num_threads)
    if not windows:
        raise ValueError("no training windows: every training sequence is shorter than 2 items")
    ctx = distributed.current()
    run_path = Path(run_dir) if run_dir is not None else None
    if resume and (run_path is None or not (run_path / "checkpoint" / "state.json").exists()):
        raise FileNotFoundError(f"--resume: no checkpoint in {run_path}")  # before anything is written
    if run_path is not None and ctx.is_main:
        run_path.mkdir(parents=True, exist_ok=True)
    run = Run(model=model, config=c, opt=_make_optimizer(model, c), ctx=ctx, dir=run_path, resume=resume)
    run.phase = "refit " if stop_after is not None and evaluate is None else ""  # progress lines of a refit say so
    hooks = _callbacks(run, module, evaluate, callbacks)
    for h in hooks:
        h.on_start(run)
    net = _place(module, run)
    n_batches = run.n_batches = math.ceil(len(windows) / c.batch_size)
    total_steps = n_batches * c.epochs
    run.t0 = time.perf_counter() - run.state.seconds
    stopped_early = False
    last_epoch = c.epochs if stop_after is None else min(c.epochs, stop_after)
    for epoch in range(run.state.epoch + 1, last_epoch + 1):
        run.epoch = epoch
        model.train()
        torch.manual_seed(c.seed * 1_000_003 + epoch)  # dropout and negatives of this epoch
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)  # batch order of this epoch
        t_epoch = time.perf_counter()
        losses: list[float] = []
        batches = (random_batches if c.batching == "random" else bucketed_batches)(
            windows, c.batch_size, gen, last_only=c.examples == "prefixes"
        )
        for batch in batches:  # the progress bar is a callback (EpochBar)
            lr = c.lr * _lr_factor(run.state.step, total_steps, c)
            loss = _step(net, batch, lr, run)
            run.state.step += 1
            losses.append(loss)
            step = Step(step=run.state.step, epoch=epoch, loss=loss, lr=lr, n_sequences=batch.item_ids.shape[0])
            for h in hooks:
                h.on_step(run, step)
        logs: dict[str, float] = {"epoch": float(epoch), "train_loss": float(np.mean(losses)), "lr": lr}
        logs["train_seconds"] = time.perf_counter() - t_epoch
        for h in hooks:
            h.on_validate(run, logs)
        logs["seconds"] = time.perf_counter() - run.t0
        run.state.history.append(logs)
        run.state.epoch, run.state.seconds = epoch, logs["seconds"]
        for h in hooks:
            h.on_epoch_end(run, logs)
        reason = next((r for h in hooks if (r := h.stop(run, logs)) is not None), None)
        if reason is not None:
            stopped_early = reason == "early"
            break
    for h in hooks:
        h.on_end(run)
    if ctx.device.type != "cpu":
        model.to("cpu")  # artifacts and inference are device-independent
    model.eval()
    s = run.state
    return TrainResult(
        best_epoch=s.best_epoch,
        best_metric=s.best_metric,
        epochs_run=s.epoch,
        history=list(s.history),
        seconds=s.seconds,
        stopped_early=stopped_early,
    )


def _callbacks(
    run: Run, module: torch.nn.Module, evaluate: Callable[[M], dict[str, float]] | None, callbacks: Sequence[Callback]
) -> list[LoopCallback]:
    """The run's callbacks in the order the loop calls them (`llmrec.training.callbacks`)."""
    c = run.config
    hooks: list[LoopCallback] = [RunFiles()]
    if c.ema_decay > 0:
        average = WeightAverage(module, c.ema_decay)
        run.ema = average.module
        hooks.append(average)
    hooks += [Selection(evaluate, c.metric, c.patience), EpochCallbacks(callbacks), EpochBar(), EpochLine()]
    if c.max_minutes is not None:
        hooks.append(TimeBudget(c.max_minutes))
    return hooks


def _module(model: object) -> torch.nn.Module:
    """The model as the torch module it must be: the loop needs parameters, devices and DDP."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"train: {type(model).__name__} is not a torch module (see llmrec.models.base.Trainable)")
    return model


def _place(model: torch.nn.Module, run: Run) -> torch.nn.Module:
    """Move the model and the optimizer state to this process's device; wrap the model in DDP when distributed."""
    ctx = run.ctx
    if ctx.device.type != "cpu":
        model.to(ctx.device)
        fused = any(g.get("fused") for g in run.opt.param_groups)  # a fused step wants its step counts there too
        for s in run.opt.state.values():
            for k, v in s.items():
                if torch.is_tensor(v) and (v.ndim > 0 or fused):
                    s[k] = v.to(ctx.device)
    if not ctx.enabled:
        return model
    # Broadcasts rank 0's weights on construction, then averages gradients across ranks in backward.
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def _step(net: torch.nn.Module, batch: SeqBatch, lr: float, run: Run) -> float:
    """One optimisation step on this rank's rows of a global batch; returns the global batch's mean loss."""
    ctx, opt = run.ctx, run.opt
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    if run.config.batching == "random" and not ctx.enabled:
        loss = _grouped_backward(net, batch, ctx)
    else:
        local, weight = _local_rows(batch, ctx)
        out = net(local.to(ctx.device) if ctx.device.type != "cpu" else local)
        assert out.loss is not None
        (out.loss * weight if ctx.enabled else out.loss).backward()
        loss = out.loss.item() * weight
    if run.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    opt.step()
    if ctx.enabled:  # the global batch's mean loss (for one process simply this batch's loss)
        return distributed.all_reduce_sum([loss], ctx)[0] / ctx.world_size
    return loss


def _grouped_backward(net: torch.nn.Module, batch: SeqBatch, ctx: distributed.DistContext) -> float:
    """Gradients of a mixed-length batch computed in length groups (`length_groups`): each group's mean loss
    weighted by its share of the batch's targets, accumulated; returns the batch's mean loss."""
    parts = length_groups(batch)
    total = sum(n for _, n in parts)
    loss = 0.0
    for part, n in parts:
        out = net(part.to(ctx.device) if ctx.device.type != "cpu" else part)
        assert out.loss is not None
        (out.loss * (n / total)).backward()
        loss += out.loss.item() * n / total
    return loss
