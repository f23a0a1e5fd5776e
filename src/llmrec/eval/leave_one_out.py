"""Leave-one-out evaluation of a model artifact (full ranking, both seen-item protocols, optional sampled metrics
and a paired test against a baseline artifact), and writing its report.

The model is seen only through `llmrec.eval.scoring.score_fn`, as in training's validation and the cold-start
runner (`llmrec.eval.cold_start`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.artifact import Artifact, open_artifact
from llmrec.eval.evaluate import EvalResult, compute_ranks, evaluate_split_both, paired_test, sampled_metrics, sampled_ranks
from llmrec.eval.examples import example_users
from llmrec.eval.metrics import ndcg_at_k, recall_at_k
from llmrec.eval.popularity import compare_with_most_popular, popularity_warnings
from llmrec.eval.report import build_report, write_report
from llmrec.eval.scoring import ScoreFn, score_fn
from llmrec.eval.seen_rule import served_exclude_seen
from llmrec.models import model_spec

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset

__all__ = ["dataset_name", "evaluate_model", "write_evaluation"]


def evaluate_model(
    model_dir: Path,
    dataset: PreparedDataset,
    *,
    splits: tuple[str, ...] = ("valid", "test"),
    exclude_seen: bool | None = None,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    n_boot: int = 1000,
    sampled_negatives: int = 0,
    baseline_dir: Path | None = None,
    progress: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Full-ranking evaluation of a model artifact on the prepared dataset's splits; returns the report dict.

    device: where the model (and the baseline) score: "auto" (CUDA when available) | "cpu" | "cuda"; histories
    move to the model's device and scores come back to the CPU (`llmrec.eval.scoring.score_fn`).

    Every split is ranked once and measured under both seen-item protocols: ``report[split]`` holds the one
    asked for (`exclude_seen`; None, the default: the one the model serves, `llmrec.eval.seen_rule`, recorded in
    ``protocol.served_exclude_seen`` with the training-time choice in ``protocol.seen_rule``),
    ``report[split + "_exclude_seen"]`` / ``[split + "_include_seen"]`` both, and
    ``report["protocol"]`` says whether the validation item was a training target (``refit_on_valid``, read
    from the artifact's training.json; None when the artifact has none). With `baseline_dir`, a second model
    is ranked on the same users and the report's ``extra.paired`` holds a paired test (bootstrap CI of the
    difference, sign-flip permutation p-value) for NDCG@10 and Recall@10.

    Every split is also ranked by most-popular (training counts, fitted on the fly) under the same protocol:
    ``report["most_popular"][split]`` holds both NDCG@10s and a paired test, and ``report["warnings"]`` a sentence
    for each split where the model does not beat it with significance (`llmrec.eval.popularity`).
    """
    art = open_artifact(model_dir)
    model_fn = _score_fn(art, device)
    training = art.training or {}
    served = served_exclude_seen(training)
    exclude_seen = served if exclude_seen is None else exclude_seen

    pop = dataset.item_popularity()
    results: dict[str, EvalResult] = {}
    other: dict[str, EvalResult] = {}
    sampled: dict[str, dict[str, float]] = {}
    examples: dict[str, Any] = {}
    for split in splits:
        ex = dataset.eval_examples(split)
        examples[split] = (ex.histories, ex.targets)
        both = evaluate_split_both(
            model_fn,
            ex.histories,
            ex.targets,
            ks=ks,
            target_popularity=pop[ex.targets],
            n_boot=n_boot,
            progress=progress,
        )
        results[split] = both.pop("exclude_seen" if exclude_seen else "include_seen")
        other[split] = both.popitem()[1]
        if sampled_negatives:
            r = sampled_ranks(model_fn, ex.histories, ex.targets, n_negatives=sampled_negatives, popularity=None)
            sampled[split] = sampled_metrics(r, n_negatives=sampled_negatives, ks=ks)
    extra: dict[str, Any] | None = None
    if baseline_dir is not None:
        base_fn = _score_fn(open_artifact(baseline_dir), device)
        extra = {"paired": {"baseline": str(baseline_dir)}}
        for split in splits:
            ex = dataset.eval_examples(split)
            base = compute_ranks(base_fn, ex.histories, ex.targets, exclude_seen=exclude_seen)
            ours = results[split].ranks
            extra["paired"][split] = {
                "ndcg@10": paired_test(ndcg_at_k(ours, 10), ndcg_at_k(base, 10)),
                "recall@10": paired_test(recall_at_k(ours, 10), recall_at_k(base, 10)),
            }
    # Models trained without a [train] section (most-popular, item-knn) are fit on training events only.
    refit = art.refit_on_valid
    protocol = {
        # A refit model was retrained on train + valid events after selection: the validation item was a training
        # target and its valid numbers are not held out; the held-out metric of the selection run is `selection_valid`.
        "refit_on_valid": refit,
        "valid_held_out": None if refit is None else not refit,
        **({"selection_valid": {training["train"].get("metric", "ndcg@10"): training.get("best_valid")}} if refit else {}),
        "split": dataset.manifest.get("split", {}).get("protocol", "loo"),
        "exclude_seen": exclude_seen,
        "served_exclude_seen": served,
        **({"seen_rule": training["seen_items"]} if "seen_items" in training else {}),
        "ranking": "full",
        "ks": list(ks),
    }
    model_name = training.get("model", art.model_type)  # names presets such as "sasrec"
    check: dict[str, Any] = {}
    if art.model_type is None or not model_spec(art.model_type).popularity_baseline:  # never against itself
        ranks = {split: results[split].ranks for split in splits}
        check = compare_with_most_popular(ranks, examples, pop, exclude_seen=exclude_seen, n_boot=n_boot)
    report = build_report(
        results,
        model_name=str(model_name),
        dataset=dataset_name(dataset, model_dir),
        protocol=protocol,
        sampled=sampled or None,
        extra=extra,
        other_protocol=other,
    )
    report["most_popular"] = check
    if "test" in splits:  # a few users by name, to judge the ranking by eye (`llmrec.eval.examples`)
        report["examples"] = example_users(model_fn, dataset, exclude_seen=exclude_seen)
    # A refit model trained on the validation items: its valid row is not held out, so it warns on test only.
    report["warnings"] = popularity_warnings({s: c for s, c in check.items() if not (refit and s == "valid")})
    return report


def dataset_name(dataset: PreparedDataset, model_dir: Path | None = None) -> str:
    """The name reports use: the prepared manifest's ``name``, else its registry name, else the artifact folder's."""
    name = dataset.manifest.get("name")
    if isinstance(name, str) and name:
        return name
    source = dataset.manifest.get("source")
    if isinstance(source, dict) and isinstance(source.get("dataset"), str) and source["dataset"]:
        return str(source["dataset"])
    return model_dir.name if model_dir is not None else "dataset"


def _score_fn(art: Artifact | Path, device: str = "cpu") -> ScoreFn:
    """Batch of internal-id histories -> [B, V+1] CPU scores, for any model type, scored on `device`."""
    from llmrec.eval.scoring import resolve_device

    art = art if isinstance(art, Artifact) else open_artifact(art)
    return score_fn(art.model(resolve_device(device)))  # "cuda" without CUDA: a ValueError before anything loads


def write_evaluation(report: dict[str, Any], out_json: Path, model_dir: Path) -> list[Path]:
    """Write the report (json, md, png); the png gets the training curve when the artifact has one."""
    return write_report(report, out_json, training_log_csv=open_artifact(model_dir).training_log_path)
