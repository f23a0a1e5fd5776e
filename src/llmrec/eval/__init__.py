"""Evaluation: full-ranking metrics, segments, confidence intervals and reports.

The published protocol ranks each held-out target against all items (see docs/DESIGN.md,
"Evaluation protocol"); `evaluate_split` implements it for any model given as a `ScoreFn`.
"""

from llmrec.eval.evaluate import (
    EvalResult,
    ScoreFn,
    bootstrap_ci,
    compute_ranks,
    compute_ranks_and_topk,
    evaluate_split,
    evaluate_split_both,
    paired_test,
    repeat_targets,
    sampled_metrics,
    sampled_ranks,
    segment_metrics,
)
from llmrec.eval.metrics import (
    coverage_at_k,
    mrr,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    summarize,
)
from llmrec.eval.report import build_report, comparison_markdown, write_report

__all__ = [
    "EvalResult",
    "ScoreFn",
    "bootstrap_ci",
    "build_report",
    "comparison_markdown",
    "compute_ranks",
    "compute_ranks_and_topk",
    "coverage_at_k",
    "evaluate_split",
    "evaluate_split_both",
    "mrr",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_test",
    "precision_at_k",
    "recall_at_k",
    "repeat_targets",
    "sampled_metrics",
    "sampled_ranks",
    "segment_metrics",
    "summarize",
    "write_report",
]
