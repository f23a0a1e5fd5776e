"""Data-parallel training across processes (PyTorch DistributedDataParallel), set up from the launcher's environment.

``llmrec train`` runs unchanged under ``torchrun --nproc-per-node N`` or ``accelerate launch --num_processes N``:
both export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, and `init_from_env` joins the process
group from them (gloo on CPU, nccl when each process has a CUDA device). A single process is the same code path
with world size 1 and no process group.

How the loop uses it (see `llmrec.training.loop`):

- every rank draws the same *global* batch from the same seeded generator and keeps rows ``rank::world_size``
  (`shard_rows`), so the batch order, and hence a checkpoint, does not depend on the world size: a run can be
  resumed with a different number of processes;
- each rank's mean loss is rescaled by ``n_local * world_size / n_global`` (positions with a target), so after
  DDP averages the gradients the update equals the single-process update on the whole global batch;
- validation users are split across ranks and their ranks gathered (`gather_in_order`), so every rank computes
  the same metrics and takes the same early-stopping decision;
- only rank 0 writes checkpoints, metrics and the artifact (`DistContext.is_main`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "current",
    "gather_in_order",
    "init_from_env",
    "shard_rows",
    "shutdown",
]

T = TypeVar("T")
_active: DistContext | None = None  # set by init_from_env (e.g. a single process on a CUDA device)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part (a process group is active)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group described by the launcher's environment; a no-op for a single process.

    device: "auto" (CUDA device LOCAL_RANK when CUDA is available, else CPU), "cpu" or "cuda".
    The backend follows the device: nccl for CUDA, gloo for CPU.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto|cpu|cuda, got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (use --device cpu, or auto)")  # a user error: exit 2
    dev = torch.device("cuda", local % max(1, torch.cuda.device_count())) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        if not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world - 1}")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://", rank=rank, world_size=world)
    global _active
    _active = DistContext(rank=rank, world_size=world, local_rank=local, device=dev) if world > 1 else DistContext(device=dev)
    return _active


def current() -> DistContext:
    """The active context: the process group's rank and size when one is initialised, else a single process
    (on the device `init_from_env` chose, CPU by default)."""
    if _active is not None and (_active.enabled == (dist.is_available() and dist.is_initialized())):
        return _active
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        backend = dist.get_backend()
        local = _env_int("LOCAL_RANK", rank)
        dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)
    return DistContext()


def shutdown() -> None:
    """Leave the process group (if any) and forget the device choice."""
    global _active
    _active = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def shard_rows(n: int, ctx: DistContext) -> slice:
    """The rows of an n-row global batch that this rank trains on (strided, so lengths stay mixed)."""
    return slice(ctx.rank, n, ctx.world_size)


def all_reduce_sum(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Element-wise sum over ranks (float64 on the backend's device); the input itself for one process."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when it is True on at least one (keeps time-budget stops in lockstep)."""
    if not ctx.enabled:
        return flag
    return all_reduce_sum([1.0 if flag else 0.0], ctx)[0] > 0


def gather_in_order(local: list[T], n: int, ctx: DistContext) -> list[T]:
    """Reassemble a list whose rank-r part holds the elements ``r::world_size`` of an n-element list."""
    if not ctx.enabled:
        return local
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, local)
    out: list[Any] = [None] * n
    for r, part in enumerate(parts):
        out[r :: ctx.world_size] = part
    return out
