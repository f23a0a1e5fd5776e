"""Semantic ids: k-means, uniqueness after disambiguation, the trie (property test), persistence, determinism."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.index.semantic_ids import (
    PAD_CODE,
    SemanticIds,
    build_semantic_ids,
    collision_rate,
    disambiguate,
    kmeans,
    residual_kmeans,
)


def _embeddings(n_items: int = 60, dim: int = 8, seed: int = 0) -> torch.Tensor:
    """[n_items + 1, dim] random item embeddings, row 0 (padding) zeros."""
    x = torch.randn(n_items + 1, dim, generator=torch.Generator().manual_seed(seed))
    x[0] = 0
    return x


def _ids(rows: list[list[int]], sizes: tuple[int, ...]) -> SemanticIds:
    codes = torch.tensor([[PAD_CODE] * len(sizes), *rows], dtype=torch.long)
    return SemanticIds(codes, sizes)


def test_kmeans_finds_separated_clusters() -> None:
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres.repeat_interleave(20, 0) + 0.1 * torch.randn(60, 2, generator=torch.Generator().manual_seed(1))
    c, a = kmeans(x, 3, generator=torch.Generator().manual_seed(0))
    groups = a.view(3, 20)
    assert all(len(torch.unique(g)) == 1 for g in groups) and len(torch.unique(a)) == 3
    torch.testing.assert_close(c[groups[:, 0]], centres, atol=0.1, rtol=0)


def test_kmeans_with_fewer_distinct_points_than_codes() -> None:
    x = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    c, a = kmeans(x, 4, generator=torch.Generator().manual_seed(0))
    assert c.shape == (4, 2) and len(torch.unique(a)) == 2


def test_residual_levels_reduce_reconstruction_error() -> None:
    x = _embeddings(200, 16)[1:]
    codes, cents = residual_kmeans(x, 3, 8, seed=0)
    assert codes.shape == (200, 3)
    errors = []
    recon = torch.zeros_like(x)
    for lv in range(3):
        recon += cents[lv][codes[:, lv]]
        errors.append(float(((x - recon) ** 2).sum()))
    assert errors[0] > errors[1] > errors[2]


def test_collision_rate_and_disambiguation_on_literal_example() -> None:
    prefix = torch.tensor([[0, 1], [2, 3], [0, 1], [4, 4], [0, 1], [2, 3]])
    # 6 items, 3 distinct prefixes: 3 items repeat an earlier one
    assert collision_rate(prefix) == pytest.approx(0.5)
    assert disambiguate(prefix).tolist() == [0, 0, 1, 0, 2, 1]
    ids = _ids([[*p, d] for p, d in zip(prefix.tolist(), disambiguate(prefix).tolist(), strict=True)], (5, 5, 3))
    stats = ids.stats()
    assert stats["collision_rate"] == pytest.approx(0.5)
    assert stats["colliding_items"] == pytest.approx(5 / 6)
    assert stats["max_group"] == 3 and stats["distinct_prefixes"] == 3
    assert stats["utilisation"] == [pytest.approx(3 / 5), pytest.approx(3 / 5)]


def test_build_gives_every_item_a_unique_id() -> None:
    ids = build_semantic_ids(_embeddings(60), n_levels=2, codebook_size=4, seed=0)  # 16 prefixes < 60 items
    assert ids.codes.shape == (61, 3)
    assert (ids.codes[0] == PAD_CODE).all()
    assert len({tuple(r) for r in ids.codes[1:].tolist()}) == 60
    assert ids.stats()["collision_rate"] > 0  # collisions were there and got resolved
    assert ids.codebook_sizes[:2] == (4, 4) and ids.codebook_sizes[2] == ids.stats()["max_group"]
    for i in (1, 17, 60):
        assert ids.item_of(ids.codes[i].tolist()) == i


def test_build_is_deterministic_for_a_seed() -> None:
    a = build_semantic_ids(_embeddings(), n_levels=3, codebook_size=6, seed=3)
    b = build_semantic_ids(_embeddings(), n_levels=3, codebook_size=6, seed=3)
    c = build_semantic_ids(_embeddings(), n_levels=3, codebook_size=6, seed=4)
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.codes, c.codes)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    ids = build_semantic_ids(_embeddings(), n_levels=2, codebook_size=5, seed=0)
    back = SemanticIds.load(ids.save(tmp_path / "sid"))
    assert torch.equal(back.codes, ids.codes) and back.codebook_sizes == ids.codebook_sizes
    assert all(torch.equal(x, y) for x, y in zip(back.centroids, ids.centroids, strict=True))
    assert back.stats() == ids.stats()


def test_semantic_ids_reject_duplicates_and_out_of_range_codes() -> None:
    with pytest.raises(ValueError, match="unique"):
        _ids([[0, 1], [0, 1]], (2, 2))
    with pytest.raises(ValueError, match="codebook size"):
        _ids([[0, 2]], (2, 2))
    with pytest.raises(ValueError, match="padding"):
        SemanticIds(torch.tensor([[0, 0], [0, 1]]), (2, 2))


def test_trie_masks_and_items_on_literal_ids() -> None:
    ids = _ids([[0, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]], (2, 2, 2))
    trie = ids.build_trie()
    assert trie.allowed([]) == [0, 1]
    assert trie.allowed([0]) == [0, 1] and trie.allowed([1]) == [0]
    assert trie.allowed([0, 1]) == [0, 1] and trie.allowed([1, 0]) == [0] and trie.allowed([1, 1]) == []
    assert trie.allowed([0, 1, 1]) == []  # complete
    prefixes = torch.tensor([[0, 1], [1, 0], [1, 1]])
    assert trie.allowed_mask(prefixes).tolist() == [[True, True], [True, False], [False, False]]
    got = trie.items_of(torch.tensor([[0, 1, 1], [1, 0, 0], [1, 0, 1], [0, 0, 0], [5, 0, 0]]))
    assert got.tolist() == [2, 3, 0, 4, 0]
    assert trie.to("cpu").items_of(torch.tensor([[0, 1, 1]])).tolist() == [2]


@st.composite
def _unique_codes(draw: st.DrawFn) -> tuple[list[list[int]], tuple[int, ...]]:
    depth = draw(st.integers(1, 4))
    sizes = tuple(draw(st.lists(st.integers(1, 4), min_size=depth, max_size=depth)))
    space = list(itertools.product(*(range(s) for s in sizes)))
    rows = draw(st.lists(st.sampled_from(space), min_size=1, max_size=min(20, len(space)), unique=True))
    return [list(r) for r in rows], sizes


@settings(max_examples=60, deadline=None)
@given(_unique_codes())
def test_trie_allows_exactly_the_valid_continuations(case: tuple[list[list[int]], tuple[int, ...]]) -> None:
    rows, sizes = case
    ids = _ids(rows, sizes)
    trie = ids.build_trie()
    depth = len(sizes)
    for t in range(depth):
        # every prefix over the code space, valid or not
        for prefix in itertools.product(*(range(s) for s in sizes[:t])):
            want = sorted({r[t] for r in rows if tuple(r[:t]) == prefix})
            assert trie.allowed(list(prefix)) == want
            mask = trie.allowed_mask(torch.tensor([list(prefix)], dtype=torch.long).reshape(1, t))
            assert torch.nonzero(mask[0])[:, 0].tolist() == want
    every = torch.tensor(list(itertools.product(*(range(s) for s in sizes))), dtype=torch.long)
    index = {tuple(r): i for i, r in enumerate(rows, start=1)}
    assert trie.items_of(every).tolist() == [index.get(tuple(r), 0) for r in every.tolist()]


def test_stats_on_build_report_utilisation_per_level() -> None:
    ids = build_semantic_ids(np.asarray(_embeddings(100, 8)), n_levels=2, codebook_size=4, seed=0)
    util = ids.stats()["utilisation"]
    assert len(util) == 2 and all(0 < u <= 1 for u in util)
