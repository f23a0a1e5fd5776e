"""From item sequences to tensors: left padding, next-item training examples, and batches (length-bucketed, or
drawn at random and computed in length groups)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from llmrec.types import PAD_ID, SeqBatch

__all__ = [
    "bucketed_batches",
    "length_groups",
    "pad_left",
    "prefix_examples",
    "prefix_windows",
    "random_batches",
    "training_windows",
]


def pad_left(histories: Sequence[np.ndarray], max_len: int) -> torch.Tensor:
    """Right-align the most recent `max_len` items of each history: [B, L] with L = longest kept length (>= 1)."""
    L = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.full((len(histories), L), PAD_ID, dtype=np.int64)
    for i, h in enumerate(histories):
        h = h[-L:]
        if len(h):
            out[i, L - len(h) :] = h
    return torch.from_numpy(out)


def _check_max_seq_len(max_seq_len: int) -> None:
    # the configs refuse it first (llmrec.config.check_range); this guards direct callers
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")


def training_windows(sequences: Sequence[np.ndarray], max_seq_len: int, *, all_windows: bool = True) -> list[np.ndarray]:
    """Training windows of at most max_seq_len + 1 items (input = w[:-1], target = w[1:]).

    The most recent window always; with `all_windows`, a sequence longer than the window is cut from its end
    into windows that overlap by one item, so every event is a target exactly once. Sequences shorter than
    2 items teach nothing and are dropped. max_seq_len < 1 is a ValueError (0 would never shorten `end`).
    """
    _check_max_seq_len(max_seq_len)
    out = []
    for s in sequences:
        end = len(s)
        while end >= 2:
            out.append(s[max(0, end - max_seq_len - 1) : end])
            if not all_windows:
                break
            end -= max_seq_len
    return out


def prefix_examples(sequences: Sequence[np.ndarray], max_seq_len: int) -> list[np.ndarray]:
    """Every prefix of every sequence as its own example: s[max(0, t - max_seq_len) : t + 1] for t >= 1.

    Used with ``bucketed_batches(..., last_only=True)``: the input is the (at most max_seq_len) items before
    item t and the only target is item t, at the last position — the training set-up of SASRec's public
    re-implementations in the BSARec / TV-Rec family (each target is one example, drawn with its own dropout
    mask, and an epoch has as many examples as targets). Views into the sequences, no copies.
    """
    _check_max_seq_len(max_seq_len)
    out = []
    for s in sequences:
        for t in range(1, len(s)):
            out.append(s[max(0, t - max_seq_len) : t + 1])
    return out


def bucketed_batches(
    windows: Sequence[np.ndarray], batch_size: int, generator: torch.Generator, *, last_only: bool = False
) -> Iterator[SeqBatch]:
    """Batches of similar length (little padding), in random order, reshuffled by `generator` each call.

    Sorting by length plus uniform jitter keeps batches homogeneous but not identical from epoch to epoch.
    last_only: only the last position of each window is a target (prefix examples); otherwise every position.
    """
    lengths = torch.tensor([len(w) for w in windows], dtype=torch.float64)
    jitter = torch.rand(len(windows), generator=generator, dtype=torch.float64) * 2.0
    order = torch.argsort(lengths + jitter).numpy()
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for ci in torch.randperm(len(chunks), generator=generator).tolist():
        yield _padded([windows[j] for j in chunks[ci]], last_only)


def _padded(rows: Sequence[np.ndarray], last_only: bool) -> SeqBatch:
    """Windows as one left-padded batch: inputs w[:-1], targets w[1:] (only w[-1] with last_only)."""
    L = max(len(r) for r in rows) - 1
    inputs = np.full((len(rows), L), PAD_ID, dtype=np.int64)
    targets = np.full((len(rows), L), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        n = len(r) - 1
        inputs[i, L - n :] = r[:-1]
        if last_only:
            targets[i, -1] = r[-1]
        else:
            targets[i, L - n :] = r[1:]
    return SeqBatch(item_ids=torch.from_numpy(inputs), targets=torch.from_numpy(targets))


def random_batches(
    windows: Sequence[np.ndarray], batch_size: int, generator: torch.Generator, *, last_only: bool = False
) -> Iterator[SeqBatch]:
    """Batches of windows drawn uniformly at random (a fresh permutation from `generator` each call), each
    left-padded to its longest window: the batches of the published SASRec-family code (TV-Rec, BSARec).

    Unlike `bucketed_batches` a batch mixes short and long histories. Padding every row to the longest costs
    up to max_seq_len / mean length more compute; `length_groups` computes one such batch as a few trimmed
    parts with the same mean loss. last_only: as in `bucketed_batches`.
    """
    order = torch.randperm(len(windows), generator=generator).tolist()
    for i in range(0, len(order), batch_size):
        yield _padded([windows[j] for j in order[i : i + batch_size]], last_only)


def length_groups(batch: SeqBatch, fractions: Sequence[float] = (0.5, 0.75, 0.9)) -> list[tuple[SeqBatch, int]]:
    """Split a left-padded training batch into parts of similar history length, each trimmed to its own longest
    input, with the number of targets in each part.

    Rows are sorted by input length and cut at `fractions` of the batch (the shortest half, the next quarter,
    ...). For a model whose outputs do not depend on the padding (the item-sequence models: left padding is
    masked), sum over parts of (targets in part / targets in batch) x (mean loss of part) is the batch's mean
    loss, so accumulating those gradients is one step on the whole batch at a fraction of its padded cost.
    Empty parts and rows without a target are dropped.
    """
    assert batch.targets is not None
    has_target = (batch.targets != PAD_ID).any(dim=1)
    lengths = (batch.item_ids != PAD_ID).sum(dim=1)
    rows = torch.nonzero(has_target).flatten()
    rows = rows[torch.argsort(lengths[rows], stable=True)]
    n = len(rows)
    cuts = sorted({0, n, *(min(n, max(0, round(f * n))) for f in fractions)})
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if b <= a:
            continue
        idx = rows[a:b]
        width = max(1, int(lengths[idx].max()))
        targets = batch.targets[idx, -width:]
        part = SeqBatch(item_ids=batch.item_ids[idx, -width:], targets=targets)
        parts.append((part, int(torch.count_nonzero(targets != PAD_ID))))
    return parts


def prefix_windows(sequences: list[np.ndarray], max_seq_len: int) -> list[np.ndarray]:
    """One training example per event after the first: the window w = s[max(0, t - max_seq_len) : t + 1].

    `llmrec.training.loop.train_loop` batches windows as (w[:-1], w[1:]) left-padded; the model reads w[:-1] and learns only the
    last target w[-1] (an encoder-decoder sees one history per target, unlike a causal LM).
    """
    return [s[max(0, t - max_seq_len) : t + 1] for s in sequences for t in range(1, len(s))]
