"""MostPopular and ItemKNN on a literal 4-user, 4-item example with hand-worked counts, cosines and scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data.sequences import pad_left
from llmrec.models.baselines import ItemKNN, MostPopular
from llmrec.types import PAD_ID

INF = float("-inf")

# Item 3 occurs 4 times (twice for user c), 2 three times, 1 twice, 4 once.
SEQUENCES = [np.array(s, dtype=np.int64) for s in ([1, 2, 3], [2, 3], [3, 1, 3], [4, 2])]
N_ITEMS = 4

# Users of each item (repeats count once): 1 {a, c}, 2 {a, b, d}, 3 {a, b, c}, 4 {d}; co-occurrence:
# n12 = 1 (a), n13 = 2 (a, c), n23 = 2 (a, b), n24 = 1 (d), n14 = n34 = 0.  cos(i, j) = n_ij / sqrt(n_i n_j):
S12, S13, S23, S24 = 1 / math.sqrt(2 * 3), 2 / math.sqrt(2 * 3), 2 / math.sqrt(3 * 3), 1 / math.sqrt(3 * 1)
COSINE = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],  # PAD
        [0.0, 0.0, S12, S13, 0.0],
        [0.0, S12, 0.0, S23, S24],
        [0.0, S13, S23, 0.0, 0.0],
        [0.0, 0.0, S24, 0.0, 0.0],
    ]
)


def _histories(*hs: list[int]) -> torch.Tensor:
    return pad_left([np.array(h, dtype=np.int64) for h in hs], 50)


# ---- MostPopular ---------------------------------------------------------------------------------------------
def test_most_popular_ranks_by_literal_counts() -> None:
    model = MostPopular.fit(SEQUENCES, N_ITEMS)
    scores = model.score(_histories([1, 2], [4], []))
    assert scores.tolist() == [[INF, 2.0, 3.0, 4.0, 1.0]] * 3  # the same list for every history
    assert scores[0].topk(N_ITEMS).indices.tolist() == [3, 2, 1, 4]


# ---- ItemKNN -------------------------------------------------------------------------------------------------
def test_item_knn_cosine_with_no_shrink() -> None:
    model = ItemKNN.fit(SEQUENCES, N_ITEMS, shrink=0.0)
    torch.testing.assert_close(model.sim.to_dense(), COSINE)


def test_item_knn_shrink_and_neighbours() -> None:
    shrunk = ItemKNN.fit(SEQUENCES, N_ITEMS, shrink=1.0).sim.to_dense()
    # n_ij / (n_ij + shrink): 1/2 where one user is shared, 2/3 where two are
    torch.testing.assert_close(shrunk[1, 3], torch.tensor(S13 * 2 / 3))
    torch.testing.assert_close(shrunk[2, 4], torch.tensor(S24 * 1 / 2))
    torch.testing.assert_close(shrunk, shrunk.T)

    # one neighbour per item: 1 -> 3 (S13 > S12), 2 -> 3 (S23 > S24 > S12), 3 -> 1 (S13 > S23), 4 -> 2 (only one)
    top1 = ItemKNN.fit(SEQUENCES, N_ITEMS, shrink=0.0, neighbours=1).sim.to_dense()
    want = torch.zeros(5, 5)
    want[1, 3], want[2, 3], want[3, 1], want[4, 2] = S13, S23, S13, S24
    torch.testing.assert_close(top1, want)


def test_item_knn_recency_weighted_score() -> None:
    model = ItemKNN.fit(SEQUENCES, N_ITEMS, shrink=0.0, decay=0.5)
    # history [1, 2]: weight 1 for the most recent item (2) and 0.5 for item 1; score(j) = 0.5 S[1, j] + S[2, j]
    want = [INF, S12, 0.5 * S12, 0.5 * S13 + S23, S24]
    torch.testing.assert_close(model.score(_histories([1, 2])), torch.tensor([want]))
    # reversed order: [2, 1] weighs item 1 fully; score(j) = 0.5 S[2, j] + S[1, j]
    want_rev = [INF, 0.5 * S12, S12, 0.5 * S23 + S13, 0.5 * S24]
    # left padding (a longer history in the batch) does not change a row
    scores = model.score(_histories([2, 1], [4, 4, 1, 2]))
    torch.testing.assert_close(scores[0], torch.tensor(want_rev))
    # a repeated item counts at each of its positions: [4, 4, 1, 2] = 0.125 S4 + 0.25 S4 + 0.5 S1 + S2
    torch.testing.assert_close(scores[1], 0.375 * COSINE[4] + 0.5 * COSINE[1] + COSINE[2] + torch.tensor([INF, 0, 0, 0, 0]))


def test_item_knn_reads_only_the_last_max_seq_len_items() -> None:
    model = ItemKNN.fit(SEQUENCES, N_ITEMS, shrink=0.0, decay=0.5, max_seq_len=2)
    torch.testing.assert_close(model.score(_histories([4, 3, 1, 2])), model.score(_histories([1, 2])))


# ---- both ----------------------------------------------------------------------------------------------------
def _fitted() -> list[MostPopular | ItemKNN]:
    return [MostPopular.fit(SEQUENCES, N_ITEMS), ItemKNN.fit(SEQUENCES, N_ITEMS, shrink=2.0, decay=0.7, max_seq_len=3)]


@pytest.mark.parametrize("model", _fitted(), ids=["most-popular", "item-knn"])
def test_save_load_gives_identical_scores(model: MostPopular | ItemKNN, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = type(model).from_pretrained(tmp_path / "m")
    histories = _histories([1, 2], [3], [4, 4, 1, 2, 3], [])
    assert torch.equal(loaded.score(histories), model.score(histories))
    assert loaded.n_items == N_ITEMS
    if isinstance(model, ItemKNN):
        assert isinstance(loaded, ItemKNN)
        assert (loaded.decay, loaded.max_seq_len) == (0.7, 3)


@pytest.mark.parametrize("model", _fitted(), ids=["most-popular", "item-knn"])
def test_never_ranks_pad(model: MostPopular | ItemKNN) -> None:
    # an empty history scores every item 0 for ItemKNN; PAD must still come last
    scores = model.score(_histories([1, 2], [4], []))
    assert torch.all(scores[:, PAD_ID] == INF)
    assert torch.isfinite(scores[:, 1:]).all()
    assert not (scores.topk(N_ITEMS, dim=1).indices == PAD_ID).any()
