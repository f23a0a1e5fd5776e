"""Does the model beat most-popular? The sanity check every evaluation and every training summary runs.

A model that ranks worse than "everyone gets the best-sellers" is not worth serving, however good its numbers
look on their own: a 3-epoch next-item LM on ml-100k scored test NDCG@10 0.0127 against most-popular's 0.0198.
`compare_with_most_popular` ranks the same examples (same users, same split, same seen-item protocol) with the
training popularity of each item, the `llmrec.models.baselines.MostPopular` scorer, fitted on the fly (it costs
one ranking pass, seconds), and compares the two per-user NDCG@10 arrays with `llmrec.eval.stats.paired_test`.
The model *beats* most-popular on a split when its mean is higher and the two-sided paired p-value is below
`ALPHA`; otherwise `popularity_warnings` says so in words.

The check lives in a report under ``report["most_popular"][split]`` (see `compare_with_most_popular`) with its
sentences under ``report["warnings"]``; training summaries hold the validation split's check under the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmrec.eval.metrics import ndcg_at_k

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.eval.scoring import ScoreFn

__all__ = [
    "ALPHA",
    "BelowPopularityWarning",
    "METRIC",
    "compare_with_most_popular",
    "most_popular_score_fn",
    "popularity_markdown",
    "popularity_warnings",
    "validation_check",
    "warn_below_popularity",
]

ALPHA = 0.05  # the model beats most-popular when it is better with a two-sided paired p-value below this
METRIC = "ndcg@10"
_K = 10


def most_popular_score_fn(popularity: npt.ArrayLike) -> ScoreFn:
    """The most-popular scorer of training counts [n_items + 1] (column 0 = padding) as a `ScoreFn`."""
    import torch

    from llmrec.eval.scoring import score_fn
    from llmrec.models.baselines import MostPopular

    counts = torch.as_tensor(np.asarray(popularity, dtype=np.float32))
    return score_fn(MostPopular(counts))


def compare_with_most_popular(
    model_ranks: Mapping[str, npt.NDArray[np.int64]],
    examples: Mapping[str, tuple[Sequence[npt.ArrayLike], npt.ArrayLike]],
    popularity: npt.ArrayLike,
    *,
    exclude_seen: bool,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per split: the model's and most-popular's NDCG@10 on the same examples, a paired test and a verdict.

    model_ranks: split -> the model's 1-based target ranks [N] (`EvalResult.ranks`); examples: split ->
    (histories, targets) in the same order; popularity: [n_items + 1] training counts. Returns split ->
    ``{"metric", "model", "most_popular", "diff", "ci": [lo, hi], "p_value", "n", "beats"}``.
    """
    from llmrec.eval.ranking import compute_ranks
    from llmrec.eval.stats import paired_test

    pop_fn = most_popular_score_fn(popularity)
    out: dict[str, dict[str, Any]] = {}
    for split, ours in model_ranks.items():
        histories, targets = examples[split]
        theirs = compute_ranks(pop_fn, histories, targets, exclude_seen=exclude_seen)
        t = paired_test(ndcg_at_k(ours, _K), ndcg_at_k(theirs, _K), n_boot=n_boot if n_boot > 0 else 200, seed=seed)
        out[split] = {
            "metric": METRIC,
            "model": t["mean_a"],
            "most_popular": t["mean_b"],
            "diff": t["mean_diff"],
            "ci": [t["ci_lo"], t["ci_hi"]],
            "p_value": t["p_value"],
            "n": int(t["n"]),
            "beats": bool(t["mean_diff"] > 0 and t["p_value"] < ALPHA),
        }
    return out


def popularity_warnings(check: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per split where the model does not beat most-popular with significance (no "warning:" prefix)."""
    lines = []
    for split, c in check.items():
        if c.get("beats", True):
            continue
        metric = str(c.get("metric", METRIC)).replace("ndcg", "NDCG")
        lines.append(
            f"the model does not beat most-popular on {split} {metric} ({c['model']:.4f} vs {c['most_popular']:.4f}, "
            f"p={c['p_value']:.3g}); train longer or check the data"
        )
    return lines


def popularity_markdown(check: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The check as a Markdown section (empty when there is none)."""
    if not check:
        return []
    lines = [
        "## Against most-popular",
        "",
        f"Same users, split and seen-item protocol; paired test on per-user NDCG@10 (beats: better with p < {ALPHA}).",
        "",
        "| split | model | most-popular | diff [95% CI] | p | beats |",
        "|---|---|---|---|---|---|",
    ]
    for split, c in check.items():
        lo, hi = c["ci"]
        lines.append(
            f"| {split} | {c['model']:.4f} | {c['most_popular']:.4f} | {c['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] "
            f"| {c['p_value']:.3g} | {'yes' if c['beats'] else 'no'} |"
        )
    return [*lines, ""]


def validation_check(
    model_fn: ScoreFn, dataset: PreparedDataset, *, exclude_seen: bool = True, n_boot: int = 1000
) -> dict[str, dict[str, Any]]:
    """`compare_with_most_popular` on the validation split for a trained model (`llmrec train`'s summary)."""
    from llmrec.eval.ranking import compute_ranks

    ex = dataset.eval_examples("valid")
    if len(ex.targets) == 0:
        return {}
    ranks = compute_ranks(model_fn, ex.histories, ex.targets, exclude_seen=exclude_seen)
    return compare_with_most_popular(
        {"valid": ranks},
        {"valid": (ex.histories, ex.targets)},
        dataset.item_popularity(),
        exclude_seen=exclude_seen,
        n_boot=n_boot,
    )


class BelowPopularityWarning(UserWarning):
    """`llmrec.evaluate` / `llmrec.train` from Python: the model does not beat most-popular with significance."""


def warn_below_popularity(lines: Sequence[str]) -> None:
    """Issue each `popularity_warnings` sentence as a `BelowPopularityWarning` (the Python door's way to say it)."""
    import warnings

    for line in lines:
        warnings.warn(line, BelowPopularityWarning, stacklevel=3)
