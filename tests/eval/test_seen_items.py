"""One seen-item rule (`llmrec.eval.seen_items`): evaluation's ranks and the Recommender's top-k agree under both
protocols, and the FAISS path leaves out the same items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.eval.ranking import rank_and_topk
from llmrec.eval.scoring import score_fn
from llmrec.eval.seen_items import seen_items, seen_mask


def test_seen_mask_marks_each_rows_history_where_the_rule_applies() -> None:
    hist = [np.array([2, 3, 2]), np.array([], dtype=np.int64), np.array([1])]
    mask = seen_mask(hist, 4, excluded=[True, True, False])
    assert mask.tolist() == [
        [False, False, True, True, False],
        [False] * 5,
        [False] * 5,
    ]
    assert seen_mask(hist, 4)[2].tolist() == [False, True, False, False, False]  # excluded=None: every row
    assert [None if s is None else s.tolist() for s in seen_items(hist, [True, True, False])] == [[2, 3, 2], None, None]
    with pytest.raises(ValueError, match="0..4"):
        seen_mask([np.array([5])], 4)
    with pytest.raises(ValueError, match="2 seen-item flags for 1 histories"):
        seen_items([np.array([1])], [True, False])


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_evaluation_ranks_and_recommender_topk_agree(exclude_seen: bool, tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.recommend import Recommender
    from llmrec.training import build_model, save_artifact

    torch.set_num_threads(1)
    model = build_model(tiny_prepared, dict(max_seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32), seed=0)[0].eval()
    rec = Recommender.load(save_artifact(model, tiny_prepared, tmp_path / "lm"), ann="off", device="cpu")
    ex = tiny_prepared.eval_examples("test")
    histories = [np.asarray(h, dtype=np.int64) for h in ex.histories]
    n, k = tiny_prepared.n_items, 5
    ranks, topk = rank_and_topk(
        score_fn(rec.model), histories, ex.targets, protocols=(exclude_seen,), batch_size=4, progress=False, k=k
    )
    full = rec.recommend_batch(histories, n, exclude_seen=exclude_seen)  # every rankable item, best first
    assert topk is not None
    for i, (h, target) in enumerate(zip(histories, ex.targets, strict=True)):
        ids = [rec.item_index[r.item_id] for r in full[i]]
        shown = [j for j in topk[i].tolist() if j]  # 0 pads a row with fewer than k rankable items
        assert ids[:k] == shown  # the same top-k
        if exclude_seen:
            assert not set(ids) & set(h.tolist())  # no history item comes back
        if exclude_seen and int(target) in h:
            assert ranks[exclude_seen][i] == n  # a repeated target is a miss by construction
        else:
            assert ranks[exclude_seen][i] == ids.index(int(target)) + 1  # the target's place in the served list
