"""The public surface of llmrec.eval, frozen so that changes to it are deliberate."""

from __future__ import annotations

import llmrec.eval


def test_eval_all_is_frozen_and_resolves() -> None:
    assert llmrec.eval.__all__ == [
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
    for name in llmrec.eval.__all__:
        assert getattr(llmrec.eval, name) is not None
