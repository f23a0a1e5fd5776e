"""Will a training run fit in memory? An estimate made before anything is built, checked against the machine.

`estimate_training_memory` counts what a next-item LM (SASRec, BSARec) training run adds to the process;
`available_memory` reads what the machine can still give; `check_training_memory` refuses a run that would
not fit with a `MemoryLimitError` (``llmrec train`` prints it as one line and exits with code 2) unless forced
(``llmrec train --force``, ``llmrec.train(..., force=True)``). A run that is refused would otherwise be killed
by the kernel's out-of-memory killer after minutes of work, or swap the machine to a halt.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from llmrec.data.dataset import PreparedDataset
from llmrec.models.item_sequence import ItemSequenceConfig
from llmrec.training.loop import TrainConfig

__all__ = [
    "MemoryEstimate",
    "MemoryLimitError",
    "available_memory",
    "check_training_memory",
    "estimate_lm_run",
    "estimate_training_memory",
    "fmt_bytes",
]

FLOAT = 4  # bytes of a float32
EVAL_BATCH = 512  # users scored at once by the validation ranking (`llmrec.eval.ranking`)
# What the first training step adds whatever the sizes: autograd and allocator state, BLAS/oneDNN workspaces,
# the modules the loop imports (measured: ~115 MiB for a run with a 500-item catalogue on CPU).
RUNTIME = 128 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes a training run adds: on the training device (`model`), and in host memory (`data`)."""

    model: int
    data: int

    @property
    def total(self) -> int:
        return self.model + self.data


class MemoryLimitError(ValueError):
    """The estimated peak memory of a run exceeds what is available (a user error: exit code 2)."""


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate_training_memory(
    config: ItemSequenceConfig, train: TrainConfig, *, n_examples: int, n_tokens: int, device: str = "cpu"
) -> MemoryEstimate:
    """Peak bytes one training run of `config` adds to the process, counted from the settings alone (float32).

    It counts: the parameters four times (weights, gradients, AdamW's two moments) plus two copies (the best
    weights, and the moving average when ``train.ema_decay > 0``); the activations autograd keeps for one
    batch of ``batch_size x max_seq_len`` positions (per block and position about 12 x d_model + 3 x d_ff
    floats, plus on CPU the [B, H, L, L] attention weights, their dropout mask and gradient, which fused GPU
    kernels do not keep); the output layer's logits for loss="ce" (``min(B x L, ce_chunk_size) x (n_items + 1)``
    floats four times: logits, log-softmax, gradient and a copy) or its [N, n_negatives + 1] logits for
    "sampled"; the validation ranking's [512, n_items + 1] scores; `RUNTIME`, what the first step adds whatever
    the sizes; and in host memory the training examples (`n_examples` views over `n_tokens` item ids). Not
    counted: the interpreter, torch and the dataset tables, already in memory when the check runs. Sized for
    batches of full-length windows; batches of shorter histories need less. Against measured runs on CPU
    (peak RSS minus RSS before training) it came within 10% for 500 to 20,000 items.
    """
    c, D, V = config, config.d_model, config.n_items + 1
    per_block = 4 * D * D + 4 * D + 2 * D * c.d_ff + c.d_ff + D + 4 * D  # qkv, proj, MLP, two LayerNorms
    params = V * D + c.n_layers * per_block + 2 * D
    params += c.max_seq_len * D if c.pos_encoding == "learned" else 0
    params += 0 if c.tie_weights else V * D
    params += (c.n_attributes + 1) * D if c.n_attributes else 0
    params += c.text_dim * D
    buffers = V * (c.max_item_attributes * 2 + c.text_dim + 1)  # attribute ids (int64), text embeddings, log-q
    copies = 6 + (1 if train.ema_decay > 0 else 0)
    B, L = train.batch_size, c.max_seq_len
    positions = B * L
    acts = positions * c.n_layers * (12 * D + 3 * c.d_ff) + 4 * positions * D  # blocks + input embeddings
    if device == "cpu":
        acts += 3 * B * c.n_heads * L * L * c.n_layers  # attention weights, dropout mask, their gradient
    if c.loss == "ce":
        out_layer = 4 * min(positions, c.ce_chunk_size) * V
    elif c.loss == "sampled":
        out_layer = 4 * positions * (c.n_negatives + 1)
    else:
        out_layer = 4 * positions * 2
    evaluation = 3 * min(EVAL_BATCH, max(1, n_examples)) * V
    model = FLOAT * (params * copies + buffers + acts + max(out_layer, evaluation)) + RUNTIME
    data = n_examples * 112 + n_tokens * 8  # a numpy view object per example, int64 ids
    return MemoryEstimate(model=int(model), data=int(data))


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What a cgroup v2 memory limit (a container's) still allows, when one is set."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of host memory a new allocation can still get without swapping: psutil's ``available`` when psutil
    is installed, else /proc/meminfo's MemAvailable, else free pages x page size; the smaller of that and a
    container's cgroup limit. None when none of these can be read (the check is then skipped)."""
    found: int | None = None
    try:
        psutil = importlib.import_module("psutil")  # optional, and without type stubs
        found = int(psutil.virtual_memory().available)
    except ImportError:
        found = _meminfo_available()
        if found is None:
            try:
                found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                found = None
    cgroup = _cgroup_available()
    if cgroup is not None:
        found = cgroup if found is None else min(found, cgroup)
    return found


def _device_available(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch

    free, _ = torch.cuda.mem_get_info()
    return int(free)


def check_training_memory(estimate: MemoryEstimate, *, device: str = "cpu", force: bool = False) -> None:
    """Raise `MemoryLimitError` (estimate and available amount in one line) when the run would not fit.

    On CPU the whole estimate is compared with `available_memory()`; on CUDA the model part with the GPU's free
    memory and the data part with the host's. force: skip the check (the estimate is an upper bound).
    """
    if force:
        return
    checks = [(estimate.total, available_memory(), "memory")]
    if device == "cuda":
        checks = [(estimate.model, _device_available(device), "GPU memory"), (estimate.data, available_memory(), "memory")]
    for need, have, what in checks:
        if have is not None and need > have:
            raise MemoryLimitError(
                f"this run needs about {fmt_bytes(need)} of {what} (estimated peak) but {fmt_bytes(have)} is available; "
                "lower train.batch_size, model.max_seq_len or model.d_model (or model.ce_chunk_size), "
                "or pass --force to train anyway"
            )


def estimate_lm_run(dataset: PreparedDataset, params: dict[str, Any], train: TrainConfig, *, device: str) -> MemoryEstimate:
    """`estimate_training_memory` for an item-sequence model recipe's ``[model]`` parameters on `dataset`: the sizes that
    come from the data (items, attribute vocabulary, text width 384 of the default encoder) and the number of
    training examples of ``train.examples`` over the training sequences."""
    known = {f.name for f in fields(ItemSequenceConfig)}
    p = {k: v for k, v in params.items() if k in known}
    if params.get("use_attributes", True) and "categories" in dataset.items.columns:
        cats = dataset.items["categories"]
        n_attr = int(cats.explode().drop_nulls().n_unique())
        if n_attr:
            width = min(8, max(1, int(cats.list.len().fill_null(0).to_numpy().max())))
            p.update(n_attributes=n_attr, max_item_attributes=width)
    text = params.get("item_text", False)
    if text == "auto":  # as training resolves it (`llmrec.training.fit.resolve_item_text`), without its imports
        from llmrec.training.fit import TEXT_AUTO_SHARE, titled_share

        text = titled_share(dataset.items) >= TEXT_AUTO_SHARE
    if text:
        p["text_dim"] = 384
    config = ItemSequenceConfig(n_items=dataset.n_items, **p)
    lengths = [len(s) for s in dataset.train_sequences()]
    L = config.max_seq_len
    if train.examples == "prefixes":
        n_examples = sum(max(0, n - 1) for n in lengths)
    else:
        n_examples = sum(-(-(n - 1) // L) for n in lengths if n >= 2)
    return estimate_training_memory(config, train, n_examples=n_examples, n_tokens=sum(lengths), device=device)
