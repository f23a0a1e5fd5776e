"""The seen-item rule of a model: exclude the user's history from its recommendations, or keep it.

One decision per model, made at training time on the validation split and recorded in the artifact
(``training.json`` key ``seen_items``); `llmrec recommend`, `Recommender`, batch recommendations, the service and
the headline of `llmrec evaluate` use it unless told otherwise (``--include-seen`` / ``--exclude-seen``,
``exclude_seen=``).

The rule: the validation targets are ranked once and measured both ways. History items are kept (``include``) only
when that ranks clearly better: its NDCG@10 beats excluding them by more than ``MARGIN`` (2 %) relative *and* a paired
sign-flip test over the users gives p < ``ALPHA`` (0.05). Otherwise they are excluded, the usual choice: in most
data a repeat of the history is rarely the next item, and a list of already-bought items looks broken. Data where
people come back to the same items (restaurants, groceries, music) can earn ``include``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmrec.eval.metrics import ndcg_at_k
from llmrec.eval.ranking import rank_and_topk
from llmrec.eval.stats import paired_test

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from llmrec.data.dataset import PreparedDataset
    from llmrec.eval.scoring import ScoreFn

__all__ = ["ALPHA", "MARGIN", "choose_seen_rule", "seen_rule_of_artifact", "served_exclude_seen"]

MARGIN = 0.02  # include-seen must beat exclude-seen's valid NDCG@10 by more than this, relative
ALPHA = 0.05  # ... and with a paired sign-flip p-value below this


def choose_seen_rule(score_fn: ScoreFn, dataset: PreparedDataset, *, n_boot: int = 200) -> dict[str, Any] | None:
    """The record `training.json` keeps under ``seen_items``: ``rule`` ("exclude" | "include"), both validation
    NDCG@10s, the relative gain of including, the paired p-value, the margin and the users; None when the dataset
    has no validation example (nothing to decide on: the default, exclude, applies)."""
    ex = dataset.eval_examples("valid")
    if not len(ex.targets):
        return None
    ranks, _ = rank_and_topk(score_fn, ex.histories, ex.targets, protocols=(True, False), batch_size=512, progress=False, k=None)
    excluded, included = ndcg_at_k(ranks[True], 10), ndcg_at_k(ranks[False], 10)  # per user [N]
    test = paired_test(included, excluded, n_boot=n_boot, n_permutations=2000)
    ex_mean, in_mean = float(excluded.mean()), float(included.mean())
    gain = (in_mean - ex_mean) / ex_mean if ex_mean > 0 else (float("inf") if in_mean > 0 else 0.0)
    include = gain > MARGIN and test["p_value"] < ALPHA
    return {
        "rule": "include" if include else "exclude",
        "chosen_on": "valid",
        "valid_ndcg@10": {"exclude_seen": round(ex_mean, 6), "include_seen": round(in_mean, 6)},
        "relative_gain_of_include": None if gain == float("inf") else round(gain, 4),
        "p_value": test["p_value"],
        "margin": MARGIN,
        "alpha": ALPHA,
        "n_users": len(ex.targets),
    }


def seen_rule_of_artifact(
    out: Path, dataset: PreparedDataset, summary: dict[str, Any], device: str | torch.device
) -> dict[str, Any]:
    """`choose_seen_rule` for the artifact just trained in `out` (a model refit on train + valid events has no
    held-out validation item: its selection run's best weights, ``train/best``, decide): the summary key
    ``seen_items``, or nothing when there is nothing held out to decide on."""
    from llmrec.artifact import Artifact, has_model
    from llmrec.eval.scoring import score_fn

    weights = out / "train" / "best" if summary.get("train", {}).get("refit_on_valid") else out
    if not has_model(weights):
        return {}
    record = choose_seen_rule(score_fn(Artifact(weights).model(device)), dataset)
    return {} if record is None else {"seen_items": record}


def served_exclude_seen(training: dict[str, Any] | None) -> bool:
    """Whether a model with this training record (training.json, None when absent) leaves history items out by
    default: its recorded rule, else True (artifacts from before the rule was recorded)."""
    record = (training or {}).get("seen_items")
    return not (isinstance(record, dict) and record.get("rule") == "include")
