"""The training loop's numbers are pinned: the same seed gives the same validation NDCG@10 and metrics.csv columns.

The golden values were produced by the loop as it was before its split into callbacks (issue 20: the loop was one
173-line function), on the tiny fixture dataset, with one torch thread, by running this file with the constants
unset and printing `result.history`. Any refactor of `llmrec.training.loop` must keep them (tolerance 1e-6).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.data.sequences import training_windows
from llmrec.eval.evaluate import compute_ranks
from llmrec.eval.metrics import summarize
from llmrec.eval.scoring import score_fn
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
from llmrec.training import TrainConfig, train_loop

# (validation NDCG@10 of the kept weights, per-epoch NDCG@10): default NextItemLMConfig and TrainConfig, 2 epochs,
# seed 0, seen items excluded; "ema": the same with ema_decay=0.9, batch_size=8, 3 epochs and a run directory (checkpoints, metrics.csv).
# Also the mean training loss of every epoch. Produced before the refactor (see the module docstring).
GOLDEN: dict[str, tuple[float, list[float], list[float]]] = {
    "default": (0.10135167638458809, [0.10135167638458809, 0.09469613464919159], [3.9278664588928223, 3.8552744388580322]),
    "ema": (
        0.08170924059942071,
        [0.01781035935540111, 0.0750778903975489, 0.08170924059942071],
        [3.89579168955485, 3.804725011189779, 3.783119519551595],
    ),
}
METRICS_COLUMNS = ["epoch", "train_loss", "lr", "train_seconds", "valid_ndcg@10", "valid_recall@10", "seconds"]


def _evaluate(ds: PreparedDataset) -> Any:
    ex = ds.eval_examples("valid")

    def evaluate(model: NextItemLM) -> dict[str, float]:
        m = summarize(compute_ranks(score_fn(model), ex.histories, ex.targets, exclude_seen=True), (10,))
        return {k: m[k] for k in ("ndcg@10", "recall@10")}

    return evaluate


@pytest.mark.parametrize("case", ["default", "ema"])
def test_default_recipe_gives_the_golden_validation_ndcg(tiny_prepared: PreparedDataset, case: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = NextItemLM(NextItemLMConfig(n_items=tiny_prepared.n_items))
    windows = training_windows(tiny_prepared.train_sequences(), model.config.max_seq_len)
    extra: dict[str, Any] = {"ema_decay": 0.9, "batch_size": 8, "epochs": 3} if case == "ema" else {"epochs": 2}
    config = TrainConfig(seed=0, num_threads=1, progress=False, **extra)
    run = tmp_path / "run" if case == "ema" else None
    result = train_loop(model, windows, config, evaluate=_evaluate(tiny_prepared), run_dir=run)
    per_epoch = [row["valid_ndcg@10"] for row in result.history]
    losses = [row["train_loss"] for row in result.history]
    best, epochs, train_losses = GOLDEN[case]
    assert result.best_metric == pytest.approx(best, abs=1e-6)
    np.testing.assert_allclose(per_epoch, epochs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(losses, train_losses, rtol=0, atol=1e-6)
    if run is not None:
        with open(run / "metrics.csv", newline="") as f:
            assert next(csv.reader(f)) == METRICS_COLUMNS
