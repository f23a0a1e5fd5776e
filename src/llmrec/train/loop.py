"""One training loop for every sequence model, with hooks instead of trainer subclasses.

`train(model, windows, config, ...)` runs AdamW with warm-up + cosine decay and gradient clipping over
length-bucketed batches, evaluates on validation after each epoch (an `evaluate` callable returning metrics),
stops early on the validation metric, keeps the best weights, writes a checkpoint every epoch, and resumes
exactly from the last completed epoch: the batch order, dropout and negative sampling of epoch e are seeded by
(seed, e), so a resumed run replays the same epochs as an uninterrupted one.

Checkpoints are safetensors + JSON (no pickle): ``<run>/checkpoint/{model,optimizer}.safetensors, state.json``
and the best weights in ``<run>/best/``. Per-epoch metrics go to ``<run>/metrics.csv``, the loss of every
optimisation step to ``<run>/steps.csv``.

Under ``torchrun`` / ``accelerate launch`` the same loop trains with DistributedDataParallel (see
`llmrec.train.distributed`): each rank takes its rows of the same global batch, the loss is weighted so the
averaged gradient is the single-process gradient, and only rank 0 writes. The global batch order does not
depend on the number of processes, so a checkpoint resumes under any world size.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from llmrec.atomic import atomic_directory, atomic_write
from llmrec.config import check_range
from llmrec.data.sequences import bucketed_batches
from llmrec.errors import artifact_file, read_json
from llmrec.models.base import Trainable
from llmrec.train import distributed
from llmrec.types import PAD_ID, SeqBatch

__all__ = ["Callback", "TrainConfig", "TrainResult", "train"]

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

    def __post_init__(self) -> None:
        """Ranges (`llmrec.config.check_range`, the error names the key): epochs, patience and selected_epoch up
        to 100,000, batch_size 1..1,048,576, lr finite and > 0, weight_decay and grad_clip >= 0, ema_decay in
        [0, 1), max_minutes >= 0 (or None; 0 stops after the first epoch), seed 0..2**32 - 1, num_threads 0..4096."""
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be cosine|constant, got {self.schedule!r}")
        check_range("epochs", self.epochs, 1, 100_000)
        check_range("batch_size", self.batch_size, 1, 1 << 20)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("warmup_steps", self.warmup_steps, 0, 10**9)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_range("patience", self.patience, 1, 100_000)
        check_range("seed", self.seed, 0, 2**32 - 1)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, 0.0)  # 0: stop after the first epoch
        check_range("num_threads", self.num_threads, 0, 4096)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        check_range("selected_epoch", self.selected_epoch, 0, 100_000)
        if self.examples not in ("windows", "prefixes"):
            raise ValueError(f"examples must be windows|prefixes, got {self.examples!r}")


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
    return torch.optim.AdamW(groups, lr=c.lr, betas=(0.9, 0.98))


def _save_checkpoint(
    run_dir: Path, model: Trainable, opt: torch.optim.Optimizer, state: dict[str, Any], ema: Trainable | None = None
) -> None:
    """Atomically replace <run>/checkpoint with model + optimizer tensors (safetensors) and state (JSON)."""
    with atomic_directory(run_dir / "checkpoint") as tmp:
        model.save_pretrained(tmp)
        if ema is not None:
            save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
        sd = opt.state_dict()
        tensors = {f"{i}.{k}": v.contiguous() for i, s in sd["state"].items() for k, v in s.items() if torch.is_tensor(v)}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {**state, "param_groups": sd["param_groups"]}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))


def _load_checkpoint(run_dir: Path, model: Trainable, opt: torch.optim.Optimizer, ema: Trainable | None = None) -> dict[str, Any]:
    """Restore model, EMA and optimizer from <run>/checkpoint. A damaged file raises ArtifactError naming it; a
    checkpoint of another model shape or catalogue raises ValueError saying which setting differs."""
    ck = run_dir / "checkpoint"
    _check_same_model(read_json(ck / "config.json"), model)
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
    return state


def _check_same_model(saved: dict[str, Any], model: Trainable) -> None:
    """--resume continues the same model: refuse a checkpoint whose settings differ from the config's."""
    want = model.config.to_dict()
    for key, value in saved.items():
        if key in want and want[key] != value and not (isinstance(value, list) and tuple(value) == want[key]):
            if key == "n_items":
                raise ValueError(
                    f"--resume: checkpoint was trained on a dataset of {value} items, this one has {want[key]} (another dataset?)"
                )
            raise ValueError(f"--resume: checkpoint was trained with {key} {value}, config asks {want[key]}")


def _append_csv(path: Path, row: dict[str, float]) -> None:
    _append_rows(path, [row])


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


def train(
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
    if not isinstance(model, torch.nn.Module):  # the loop needs parameters, devices and DDP
        raise TypeError(f"train: {type(model).__name__} is not a torch module (see llmrec.models.base.Trainable)")
    c = config
    if c.num_threads:
        torch.set_num_threads(c.num_threads)
    if not windows:
        raise ValueError("no training windows: every training sequence is shorter than 2 items")
    ctx = distributed.current()
    main = ctx.is_main  # only rank 0 writes files and prints
    run = Path(run_dir) if run_dir is not None else None
    if resume and (run is None or not (run / "checkpoint" / "state.json").exists()):
        raise FileNotFoundError(f"--resume: no checkpoint in {run}")  # before anything is written
    if run is not None and main:
        run.mkdir(parents=True, exist_ok=True)
    opt = _make_optimizer(model, c)
    # Weight averaging (torch.optim.swa_utils): `ema` holds the averaged copy that is validated and kept.
    averaged = None
    if c.ema_decay > 0:
        averaged = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(c.ema_decay)
        )
    ema: M | None = None if averaged is None else averaged.module
    n_batches = math.ceil(len(windows) / c.batch_size)
    total_steps = n_batches * c.epochs
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_metric": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    if resume:
        assert run is not None  # checked above
        state = _load_checkpoint(run, model, opt, ema)
        if averaged is not None:
            averaged.n_averaged.fill_(int(state["step"]))
        if main:
            (run / "metrics.csv").unlink(missing_ok=True)  # rewritten from the checkpoint: drops a lost epoch's rows
            for row in state["history"]:
                _append_csv(run / "metrics.csv", row)
            _truncate_steps(run / "steps.csv", int(state["step"]))
    elif run is not None and main:
        (run / "metrics.csv").unlink(missing_ok=True)  # a fresh run never appends to an earlier run's log
        (run / "steps.csv").unlink(missing_ok=True)
    distributed.barrier()  # nobody starts while rank 0 still rewrites the logs
    best_weights = {k: v.clone() for k, v in model.state_dict().items()}
    if resume and run is not None and (run / "best" / "model.safetensors").exists():
        with artifact_file(run / "best" / "model.safetensors"):
            best_weights = load_file(str(run / "best" / "model.safetensors"))
            if best_weights.keys() != model.state_dict().keys():
                raise KeyError("other tensor names than the model's")
    if run is not None and main:  # only now: a --resume refused above leaves the run's files as they were
        atomic_write(run / "train_config.json", json.dumps(asdict(c), indent=2).encode())
    if ctx.device.type != "cpu":
        model.to(ctx.device)
        if averaged is not None:
            averaged.to(ctx.device)
        for s_ in opt.state.values():
            for k_, v_ in s_.items():
                if torch.is_tensor(v_) and v_.ndim > 0:
                    s_[k_] = v_.to(ctx.device)
    net: torch.nn.Module = model
    if ctx.enabled:
        # Broadcasts rank 0's weights on construction, then averages gradients across ranks in backward.
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    t0 = time.perf_counter() - float(state.get("seconds", 0.0))
    stopped_early = False
    last_epoch = c.epochs if stop_after is None else min(c.epochs, stop_after)
    phase = "refit " if stop_after is not None and evaluate is None else ""  # progress lines of a refit say so
    for epoch in range(int(state["epoch"]) + 1, last_epoch + 1):
        model.train()
        torch.manual_seed(c.seed * 1_000_003 + epoch)  # dropout and negatives of this epoch
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)  # batch order of this epoch
        t_epoch = time.perf_counter()
        losses: list[float] = []
        bar = tqdm(
            bucketed_batches(windows, c.batch_size, gen, last_only=c.examples == "prefixes"),
            total=n_batches,
            desc=f"{phase}epoch {epoch}",
            unit="batch",
            disable=None if (c.progress and main) else True,  # None: off when stderr is not a terminal
            leave=False,
        )
        n_seq = 0
        step_rows: list[dict[str, float]] = []
        for batch in bar:
            factor = _lr_factor(int(state["step"]), total_steps, c)
            for g in opt.param_groups:
                g["lr"] = c.lr * factor
            local, weight = _local_rows(batch, ctx)
            out = net(local.to(ctx.device) if ctx.device.type != "cpu" else local)
            assert out.loss is not None
            opt.zero_grad(set_to_none=True)
            (out.loss * weight if ctx.enabled else out.loss).backward()
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            state["step"] = int(state["step"]) + 1
            # the global batch's mean loss (for one process simply this batch's loss)
            loss = (
                distributed.all_reduce_sum([out.loss.item() * weight], ctx)[0] / ctx.world_size
                if ctx.enabled
                else out.loss.item()
            )
            losses.append(loss)
            step_rows.append({"step": float(state["step"]), "epoch": float(epoch), "loss": loss, "lr": c.lr * factor})
            n_seq += batch.item_ids.shape[0]
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", seq_s=f"{n_seq / (time.perf_counter() - t_epoch):.0f}")
        bar.close()
        logs: dict[str, float] = {"epoch": float(epoch), "train_loss": float(np.mean(losses)), "lr": c.lr * factor}
        logs["train_seconds"] = time.perf_counter() - t_epoch
        kept = model if ema is None else ema  # the weights that are validated, selected and returned
        if evaluate is not None:
            kept.eval()
            metrics = evaluate(kept)
            logs.update({f"valid_{k}": v for k, v in metrics.items()})
            current = metrics[c.metric]
        else:
            current = float(epoch)  # nothing to select on: the latest weights are the result
        if current > float(state["best_metric"]):
            state.update(best_metric=current, best_epoch=epoch, bad_epochs=0)
            best_weights = {k: v.detach().clone() for k, v in kept.state_dict().items()}
            if run is not None and main:
                kept.save_pretrained(run / "best")
        else:
            state["bad_epochs"] = int(state["bad_epochs"]) + 1
        logs["seconds"] = time.perf_counter() - t0
        state["history"].append(logs)
        state["epoch"] = epoch
        state["seconds"] = logs["seconds"]
        if run is not None and main:
            _append_csv(run / "metrics.csv", logs)
            _append_rows(run / "steps.csv", step_rows)
            _save_checkpoint(run, model, opt, state, ema)
        distributed.barrier()  # the epoch's checkpoint is on disk before any rank moves on
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs, model)
        if c.progress and main:
            shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k.startswith("valid_") and "@10" in k)
            tqdm.write(f"{phase}epoch {epoch:3d} loss {logs['train_loss']:.4f} {shown} ({logs['train_seconds']:.1f}s)")
        if int(state["bad_epochs"]) >= c.patience:
            stopped_early = True
            break
        # each rank has its own clock: stop together when any rank ran out of time
        if c.max_minutes is not None and distributed.any_rank(logs["seconds"] > 60 * c.max_minutes, ctx):
            break
    model.load_state_dict(best_weights)
    if ctx.device.type != "cpu":
        model.to("cpu")  # artifacts and inference are device-independent
    model.eval()
    return TrainResult(
        best_epoch=int(state["best_epoch"]),
        best_metric=float(state["best_metric"]),
        epochs_run=int(state["epoch"]),
        history=list(state["history"]),
        seconds=float(state.get("seconds", 0.0)),
        stopped_early=stopped_early,
    )
