"""One scoring path: evaluation, training's validation, the Recommender and the cold-start runner agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset

TINY_LM = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "emb_dropout": 0.0}


def _artifact(ds: PreparedDataset, tmp_path: Path, inner_steps: int) -> Path:
    """A tiny LM artifact with a per-user adapter beside it (u0 = 0; inner_steps=0 = no adaptation)."""
    from llmrec.artifact import save_artifact
    from llmrec.meta.maml import AdapterConfig, UserAdapter
    from llmrec.training import build_model

    model, _ = build_model(ds, TINY_LM, seed=3)
    torch.nn.init.normal_(model.item_emb.weight, std=1.0)  # an untrained table gives near-ties; spread the scores
    out = save_artifact(model.eval(), ds, tmp_path / f"lm-{inner_steps}")
    UserAdapter(AdapterConfig(d_model=16, inner_steps=inner_steps, inner_lr=1.0)).save_pretrained(out)
    return out


def _histories(ds: PreparedDataset) -> list[np.ndarray]:
    ex = ds.eval_examples("valid")
    return [h[-k:] for h, k in zip(ex.histories, [1, 2, 3, 5, 12] * len(ex.histories), strict=False)]


def test_evaluation_recommender_and_zero_adaptation_give_the_same_scores(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.eval.leave_one_out import _score_fn
    from llmrec.eval.scoring import score_fn
    from llmrec.models import load_model
    from llmrec.recommend import Recommender

    path = _artifact(tiny_prepared, tmp_path, inner_steps=0)
    histories = _histories(tiny_prepared)
    rec = Recommender.load(path)
    assert rec.adapter is not None
    evaluation = _score_fn(path)(histories)  # what `llmrec evaluate` ranks with
    direct = score_fn(load_model(path))(histories)
    served = rec.score_batch(histories)
    adapted = rec.score_batch(histories, adapt=True)  # the cold-start path, with an adaptation that does nothing
    adapted_direct = score_fn(rec.model, adapter=rec.adapter)(histories)
    assert evaluation.shape == (len(histories), tiny_prepared.n_items + 1)
    assert torch.equal(evaluation, direct) and torch.equal(evaluation, served)
    torch.testing.assert_close(adapted, served, rtol=1e-5, atol=1e-5)
    assert torch.equal(adapted, adapted_direct)
    assert (served[:, 0] == float("-inf")).all()
    # the same ranking: the top-5 of every row agree between the paths
    assert torch.equal(adapted[:, 1:].topk(5).indices, served[:, 1:].topk(5).indices)


def test_a_real_adaptation_changes_the_scores_of_short_histories(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    """Control for the test above: the adapted path is not silently the plain one."""
    from llmrec.recommend import Recommender

    rec = Recommender.load(_artifact(tiny_prepared, tmp_path, inner_steps=3))
    short = [h[-2:] for h in tiny_prepared.eval_examples("valid").histories[:4]]
    assert not torch.allclose(rec.score_batch(short, adapt=True), rec.score_batch(short), atol=1e-4)


def test_cold_start_runner_and_validation_rank_through_the_same_scores(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.eval.cold_start import evaluate_cold_start
    from llmrec.eval.evaluate import compute_ranks
    from llmrec.eval.metrics import summarize
    from llmrec.recommend import Recommender
    from llmrec.training.fit import validation_evaluator

    rec = Recommender.load(_artifact(tiny_prepared, tmp_path, inner_steps=0))
    sequences = tiny_prepared.train_sequences()
    plain = evaluate_cold_start(rec.score_batch, sequences, support_sizes=(1, 3), n_boot=0)
    adapted = evaluate_cold_start(lambda h: rec.score_batch(h, adapt=True), sequences, support_sizes=(1, 3), n_boot=0)
    for n in (1, 3):
        np.testing.assert_array_equal(plain.ranks[n], adapted.ranks[n])
    ex = tiny_prepared.eval_examples("valid")
    # validation selects on the seen-excluded ranking (train.valid_exclude_seen, the default)
    via_recommender = summarize(compute_ranks(rec.score_batch, ex.histories, ex.targets, exclude_seen=True), (10, 20))
    via_training = validation_evaluator(tiny_prepared)(rec.model)
    assert via_training == {k: v for k, v in via_recommender.items() if k in via_training}
    assert set(via_training) == {"ndcg@10", "ndcg@20", "recall@10", "recall@20"}


def test_adapting_a_model_without_item_embeddings_is_refused(tiny_prepared: PreparedDataset) -> None:
    from llmrec.eval.scoring import score_fn
    from llmrec.meta.maml import AdapterConfig, UserAdapter
    from llmrec.models.baselines import MostPopular

    pop = MostPopular.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items)
    with pytest.raises(ValueError, match="item embeddings"):
        score_fn(pop, adapter=UserAdapter(AdapterConfig(d_model=4)))
    scores = score_fn(pop)([np.array([1, 2]), np.array([], dtype=np.int64)])
    assert scores.shape == (2, tiny_prepared.n_items + 1) and torch.equal(scores[0], scores[1])
