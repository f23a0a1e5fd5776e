"""Cold-start users: the evaluation runner (the protocol is described in `llmrec.meta.tasks` and docs/cold-start.md).

Nothing here imports `llmrec.meta`: meta-learning uses this runner, and an artifact's adapter is model code
(`llmrec.models.adapter`).

Users held out of training reveal the first n items of their sequence, the **support**, and the model ranks the
item(s) that follow, the **query**, against all items, n ∈ {1, 2, 3, 5}, every n on the same users. Seen items
(the support) are excluded by default. The model is seen only through a ``ScoreFn``
(`llmrec.eval.scoring.score_fn(model)`, with ``adapter=`` for a meta-trained per-user adapter).

`evaluate_cold_start_artifact` runs this on a model artifact's ``cold_test`` users (``llmrec evaluate --protocol
cold-start``), zero-shot and, for a meta-trained artifact, adapted; `write_cold_start` writes its report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from llmrec.eval.evaluate import bootstrap_ci, compute_ranks
from llmrec.eval.metrics import ndcg_at_k, recall_at_k
from llmrec.eval.scoring import ScoreFn, score_fn

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset

__all__ = [
    "SUPPORT_SIZES",
    "ColdStartExamples",
    "ColdStartResult",
    "cold_start_examples",
    "cold_start_table",
    "evaluate_cold_start",
    "evaluate_cold_start_artifact",
    "write_cold_start",
]

SUPPORT_SIZES: tuple[int, ...] = (1, 2, 3, 5)

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ColdStartExamples:
    """Support/query pairs for one support size n: histories[i] = first n items, queries[i] = the next q."""

    n_support: int
    rows: IntArray  # [N] index of each example's user in the sequences given
    histories: list[IntArray]  # N supports of n items, oldest first
    queries: IntArray  # [N, Q] the items that follow the support

    def __len__(self) -> int:
        return len(self.histories)


def cold_start_examples(
    sequences: Sequence[IntArray], n_support: int, *, n_query: int = 1, min_length: int | None = None
) -> ColdStartExamples:
    """The first `n_support` items of each sequence as support and the next `n_query` as queries.

    Sequences shorter than `min_length` (default n_support + n_query) are skipped; pass the same min_length
    for every n to measure all n on the same users.
    """
    if n_support < 1 or n_query < 1:
        raise ValueError(f"n_support and n_query must be >= 1, got {n_support} and {n_query}")
    need = n_support + n_query if min_length is None else min_length
    if need < n_support + n_query:
        raise ValueError(f"min_length={need} is shorter than n_support + n_query = {n_support + n_query}")
    rows = np.array([i for i, s in enumerate(sequences) if len(s) >= need], dtype=np.int64)
    histories = [np.asarray(sequences[i][:n_support], dtype=np.int64) for i in rows]
    queries = np.array([sequences[i][n_support : n_support + n_query] for i in rows], dtype=np.int64).reshape(len(rows), n_query)
    return ColdStartExamples(n_support=n_support, rows=rows, histories=histories, queries=queries)


@dataclass
class ColdStartResult:
    """Cold-start metrics of one method: for each support size n, means and 95% bootstrap CIs over users.

    metrics[n]["ndcg@10"] = mean; ci[n]["ndcg@10"] = (lo, hi); per_user[n]["ndcg@10"] = [N] values (same user
    order for every method given the same sequences, so two methods can be compared with a paired test).
    """

    support_sizes: tuple[int, ...]
    n_users: int
    exclude_seen: bool
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    ci: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    per_user: dict[int, dict[str, npt.NDArray[np.float64]]] = field(default_factory=dict)
    ranks: dict[int, IntArray] = field(default_factory=dict)  # [N, Q] rank of each query item

    def to_dict(self) -> dict[str, object]:
        return {
            "support_sizes": list(self.support_sizes),
            "n_users": self.n_users,
            "exclude_seen": self.exclude_seen,
            "metrics": {str(n): m for n, m in self.metrics.items()},
            "ci": {str(n): {k: list(v) for k, v in c.items()} for n, c in self.ci.items()},
        }


def evaluate_cold_start(
    score_fn: ScoreFn,
    sequences: Sequence[IntArray],
    *,
    support_sizes: Sequence[int] = SUPPORT_SIZES,
    n_query: int = 1,
    ks: Sequence[int] = (5, 10, 20),
    exclude_seen: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> ColdStartResult:
    """Rank each query item against all items given only the support, for every support size n.

    score_fn: histories -> [B, V+1] scores (the `ScoreFn` of llmrec.eval; an adapting method runs its inner
    loop inside it). Users: those with at least max(support_sizes) + n_query items. n_boot=0 skips the CIs.
    """
    sizes = tuple(sorted(int(n) for n in support_sizes))
    if not sizes:
        raise ValueError("support_sizes must not be empty")
    min_length = sizes[-1] + n_query
    result = ColdStartResult(support_sizes=sizes, n_users=0, exclude_seen=exclude_seen)
    for n in sizes:
        ex = cold_start_examples(sequences, n, n_query=n_query, min_length=min_length)
        if not len(ex):
            raise ValueError(f"no sequence has the {min_length} items that support size {n} with {n_query} queries needs")
        # Each query item is one ranking example with the support as its history (repeated Q times).
        histories = [h for h in ex.histories for _ in range(n_query)]
        ranks = compute_ranks(score_fn, histories, ex.queries.reshape(-1), exclude_seen=exclude_seen, batch_size=batch_size)
        ranks = ranks.reshape(len(ex), n_query)  # [N, Q]
        result.ranks[n] = ranks
        per_user: dict[str, npt.NDArray[np.float64]] = {}
        for k in ks:
            per_user[f"ndcg@{k}"] = ndcg_at_k(ranks.reshape(-1), k).reshape(ranks.shape).mean(1)
            per_user[f"recall@{k}"] = recall_at_k(ranks.reshape(-1), k).reshape(ranks.shape).mean(1)
        result.per_user[n] = per_user
        result.metrics[n] = {name: float(v.mean()) for name, v in per_user.items()}
        if n_boot:
            result.ci[n] = {name: bootstrap_ci(v, n_boot=n_boot, seed=seed)[1:] for name, v in per_user.items()}
        result.n_users = len(ex)
    return result


def evaluate_cold_start_artifact(
    model_dir: Path, dataset: PreparedDataset, *, exclude_seen: bool = True, n_boot: int = 1000, device: str = "auto"
) -> dict[str, ColdStartResult]:
    """The cold_test users of `dataset` on the artifact `model_dir`: {"zero-shot": ...} plus "adapted" when the
    artifact has a meta-trained adapter. device: "auto" | "cpu" | "cuda"; "auto" is the CPU for an artifact with
    an adapter (its inner loop runs there)."""
    from llmrec.artifact import open_artifact
    from llmrec.eval.scoring import resolve_device

    _, sequences = dataset.cold_users("cold_test")
    if not sequences:
        raise ValueError("the dataset has no cold_test users: prepare it with --split cold-user")
    art = open_artifact(model_dir)
    if device == "auto" and art.has_adapter:
        device = "cpu"  # the adapter's inner loop runs on the CPU
    model = art.model(resolve_device(device))  # "cuda" without CUDA is a ValueError before anything is loaded
    score_fns: dict[str, ScoreFn] = {"zero-shot": score_fn(model)}
    adapter = art.adapter()
    if adapter is not None:
        score_fns["adapted"] = score_fn(model, adapter=adapter)
    return {name: evaluate_cold_start(fn, sequences, exclude_seen=exclude_seen, n_boot=n_boot) for name, fn in score_fns.items()}


def cold_start_table(results: dict[str, ColdStartResult], metrics: tuple[str, ...] = ("ndcg@10", "recall@10")) -> str:
    """Markdown: one row per method, one column per (metric, n) as ``mean [lo, hi]``."""
    first = next(iter(results.values()))
    sizes = first.support_sizes
    head = ["method"] + [f"{m} n={n}" for m in metrics for n in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = []
        for m in metrics:
            for n in sizes:
                lo, hi = r.ci.get(n, {}).get(m, (float("nan"), float("nan")))
                cells.append(f"{r.metrics[n][m]:.4f} [{lo:.4f}, {hi:.4f}]")
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def write_cold_start(results: dict[str, ColdStartResult], out: Path, model_dir: Path) -> list[Path]:
    """Write the cold-start report: `out` (JSON) and a Markdown table beside it (.md), each atomically."""
    from llmrec.atomic import atomic_write

    report = {"protocol": "cold-start", "model": str(model_dir), **{name: r.to_dict() for name, r in results.items()}}
    atomic_write(out, json.dumps(report, indent=2).encode())
    atomic_write(out.with_suffix(".md"), (cold_start_table(results) + "\n").encode())
    return [out]
