"""Semantic ids: residual k-means quantisation of item embeddings, a disambiguation code, and the valid-id trie.

An item's semantic id is a short code tuple (c_1, ..., c_L, d): c_l is the nearest of C centroids to what levels
1..l-1 left unexplained (residual quantisation, as the RQ-VAE of TIGER, Rajput et al., NeurIPS 2023,
https://arxiv.org/abs/2305.05065, but with k-means codebooks fitted level by level instead of a trained
auto-encoder — the "RQ-KMeans" variant; it needs no training loop and is deterministic for a seed). Items whose
L codes coincide get d = 0, 1, 2, ... in item_idx order (TIGER's extra disambiguation token), so every id is unique.

Codes are integers per level, not vocabulary tokens: a model maps level l, code c to its own token ids.
The padding item (row 0) has code PAD_CODE = -1 at every level, which no real item uses.

k-means is a plain torch implementation (k-means++ seeding, Lloyd iterations until the assignment is stable,
empty clusters re-seeded with the worst-fitted point), about one second per level for 12k items × 256 codes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "PAD_CODE",
    "CodeTrie",
    "SemanticIds",
    "build_semantic_ids",
    "collision_rate",
    "disambiguate",
    "kmeans",
    "residual_kmeans",
]

PAD_CODE = -1  # every code of the padding item (row 0)
_FORMAT = 1  # version of the saved layout


# ---- quantisation ------------------------------------------------------------------------------------------
def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[N, D], [K, D] -> [N, K] squared euclidean distances."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return d.clamp_min_(0.0)


def _kmeans_pp(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, SODA 2007): each next centre drawn ∝ squared distance."""
    n = x.shape[0]
    centres = [int(torch.randint(n, (1,), generator=g))]
    d2 = _sq_dist(x, x[centres[0]][None])[:, 0]  # [N] distance to the nearest chosen centre
    for _ in range(1, k):
        total = float(d2.sum())
        if total > 0:
            i = int(torch.multinomial(d2 / total, 1, generator=g))
        else:  # every point sits on a centre already: duplicates are all that is left
            i = int(torch.randint(n, (1,), generator=g))
        centres.append(i)
        d2 = torch.minimum(d2, _sq_dist(x, x[i][None])[:, 0])
    return x[centres].clone()  # [k, D]


def kmeans(x: torch.Tensor, k: int, *, generator: torch.Generator, max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on x [N, D] -> (centroids [min(k, N), D], assignment [N] int64)."""
    k = min(k, x.shape[0])
    c = _kmeans_pp(x, k, generator)
    assign: torch.Tensor | None = None
    for _ in range(max_iter):
        d = _sq_dist(x, c)  # [N, k]
        new_assign = d.argmin(1)  # [N]
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        counts = torch.bincount(assign, minlength=k)  # [k]
        c = torch.zeros_like(c).index_add_(0, assign, x) / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = torch.nonzero(counts == 0)[:, 0]
        if len(empty):
            # An empty cluster takes the point worst served by its centroid (only points not already on one).
            err = d.gather(1, assign[:, None])[:, 0]  # [N]
            worst = err.topk(len(empty)).indices
            keep = err[worst] > 0
            c[empty[keep]] = x[worst[keep]]
    assert assign is not None
    return c, _sq_dist(x, c).argmin(1)


def residual_kmeans(
    x: torch.Tensor, n_levels: int, codebook_size: int, *, seed: int = 0, max_iter: int = 100
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x [N, D] -> (codes [N, L] int64, centroids: L tensors [≤C, D]); level l quantises the residual of levels < l."""
    g = torch.Generator().manual_seed(seed)
    residual = x.to(torch.float32).clone()  # [N, D]
    codes = torch.empty(x.shape[0], n_levels, dtype=torch.long)
    centroids = []
    for level in range(n_levels):
        c, a = kmeans(residual, codebook_size, generator=g, max_iter=max_iter)
        codes[:, level] = a
        centroids.append(c)
        residual -= c[a]
    return codes, centroids


def _groups(prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows [N, L] -> (group id of each row [N], size of each group [G]); equal rows share a group."""
    if prefix.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(prefix, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def disambiguate(prefix: torch.Tensor) -> torch.Tensor:
    """codes [N, L] -> [N] int64: 0, 1, 2, ... among rows with equal codes, in row order (unique rows get 0)."""
    group, _ = _groups(prefix.numpy())
    order = np.argsort(group, kind="stable")  # rows grouped, row order kept inside a group
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])  # first position of each group
    rank_sorted = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(order), dtype=np.int64)
    out[order] = rank_sorted
    return torch.from_numpy(out)


def collision_rate(prefix: torch.Tensor) -> float:
    """Share of rows [N, L] that repeat an earlier row: 1 - distinct/N (the items that need a d > 0)."""
    n = prefix.shape[0]
    return 0.0 if n == 0 else 1.0 - len(_groups(prefix.numpy())[1]) / n


# ---- the trie of valid ids ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CodeTrie:
    """All valid ids as dense transition tables, for masking logits in constrained decoding.

    children[t] is [n_nodes_t, size_t] int64: from node `n` at depth t (a valid prefix of t codes; depth 0 is the
    root, node 0), code `c` leads to node children[t][n, c] at depth t + 1, or, at the last depth, to the
    item_idx it completes; -1 means no valid id continues that way. A LogitsProcessor keeps one node per beam
    (`walk`) and takes ``children[t][nodes] >= 0`` as the [beams, size_t] mask of allowed next codes.
    """

    children: tuple[torch.Tensor, ...]

    @property
    def depth(self) -> int:
        """Codes per id (L + 1)."""
        return len(self.children)

    def to(self, device: torch.device | str) -> CodeTrie:
        """The same trie on `device` (move it once, next to the model, rather than at every decoding step)."""
        return CodeTrie(tuple(t.to(device) for t in self.children))

    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """prefixes [B, t] (t ≤ depth) -> [B] node at depth t (item_idx when t == depth), -1 where not valid."""
        B, t = prefixes.shape
        if t > self.depth:
            raise ValueError(f"prefix of {t} codes, ids have {self.depth}")
        nodes = torch.zeros(B, dtype=torch.long, device=prefixes.device)
        for s in range(t):
            table = self.children[s].to(prefixes.device)  # [n_nodes_s, size_s]
            code = prefixes[:, s]  # [B]
            ok = (nodes >= 0) & (code >= 0) & (code < table.shape[1])
            nxt = table[nodes.clamp_min(0), code.clamp(0, table.shape[1] - 1)]  # [B]
            nodes = torch.where(ok, nxt, torch.full_like(nxt, -1))
        return nodes

    def allowed_mask(self, prefixes: torch.Tensor) -> torch.Tensor:
        """prefixes [B, t] with t < depth -> [B, size_t] bool: the codes that continue each prefix to a valid id."""
        t = prefixes.shape[1]
        if t >= self.depth:
            raise ValueError(f"a prefix of {t} codes is already a complete id (depth {self.depth})")
        nodes = self.walk(prefixes)  # [B]
        table = self.children[t].to(prefixes.device)
        return (table[nodes.clamp_min(0)] >= 0) & (nodes >= 0)[:, None]  # [B, size_t]

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """The codes that may follow `prefix` (sorted); [] for an invalid or complete prefix."""
        if len(prefix) >= self.depth:
            return []
        mask = self.allowed_mask(torch.tensor([list(prefix)], dtype=torch.long).reshape(1, len(prefix)))
        return torch.nonzero(mask[0])[:, 0].tolist()

    def items_of(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, depth] -> [B] item_idx, 0 (padding) where the codes are not a valid id."""
        if codes.shape[1] != self.depth:
            raise ValueError(f"ids have {self.depth} codes, got {codes.shape[1]}")
        return self.walk(codes).clamp_min(0)


def _build_trie(codes: np.ndarray, sizes: Sequence[int]) -> CodeTrie:
    """codes [N, T] of items 1..N -> CodeTrie; nodes at depth t are the distinct t-code prefixes."""
    n, depth = codes.shape
    children = []
    node = np.zeros(n, dtype=np.int64)  # each item's node at the current depth (all at the root)
    n_nodes = 1
    for t in range(depth):
        if t + 1 < depth:
            nxt, _ = _groups(codes[:, : t + 1])
            target, n_next = nxt, int(nxt.max(initial=-1)) + 1
        else:
            target, n_next = np.arange(1, n + 1), 0  # the last code leads to the item itself
        table = np.full((n_nodes, sizes[t]), -1, dtype=np.int64)
        table[node, codes[:, t]] = target
        children.append(torch.from_numpy(table))
        node, n_nodes = target, n_next
    return CodeTrie(tuple(children))


# ---- the ids of a catalogue --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SemanticIds:
    """Semantic ids of items 1..n_items.

    codes: [n_items + 1, L + 1] int64; row i is item_idx i, row 0 (padding) is PAD_CODE everywhere.
    codebook_sizes: L + 1 widths: C for each quantisation level, then the disambiguation width (the largest
        number of items sharing L codes).
    centroids: the L residual codebooks [C_l, D] they were quantised with (empty when codes were given).
    """

    codes: torch.Tensor
    codebook_sizes: tuple[int, ...]
    centroids: tuple[torch.Tensor, ...] = field(default=())

    def __post_init__(self) -> None:
        c = self.codes
        if c.dtype != torch.long or c.dim() != 2 or c.shape[0] < 1:
            raise ValueError(f"codes must be a [n_items + 1, L + 1] int64 tensor, got {c.dtype} {tuple(c.shape)}")
        if c.shape[1] != len(self.codebook_sizes):
            raise ValueError(f"{c.shape[1]} codes per item but {len(self.codebook_sizes)} codebook sizes")
        if not bool((c[0] == PAD_CODE).all()):
            raise ValueError(f"row 0 (padding) must be all {PAD_CODE}")
        items = c[1:]
        if bool(((items < 0) | (items >= torch.tensor(self.codebook_sizes))).any()):
            raise ValueError("item codes must lie in [0, codebook size) at every level")
        if collision_rate(items) > 0:
            raise ValueError("semantic ids are not unique")

    @property
    def n_items(self) -> int:
        return self.codes.shape[0] - 1

    @property
    def n_levels(self) -> int:
        """Quantisation levels L (the id has L + 1 codes with the disambiguation code)."""
        return self.codes.shape[1] - 1

    def stats(self) -> dict[str, Any]:
        """Codebook utilisation per level (distinct codes / C) and the collisions before disambiguation."""
        items = self.codes[1:]
        prefix = items[:, : self.n_levels]
        _, sizes = _groups(prefix.numpy())
        return {
            "n_items": self.n_items,
            "n_levels": self.n_levels,
            "codebook_sizes": list(self.codebook_sizes),
            "utilisation": [len(torch.unique(items[:, lv])) / self.codebook_sizes[lv] for lv in range(self.n_levels)],
            "distinct_prefixes": len(sizes),
            "collision_rate": collision_rate(prefix),  # items that needed a disambiguation code > 0
            "colliding_items": float(sizes[sizes > 1].sum() / max(1, self.n_items)),  # items sharing their L codes
            "max_group": int(sizes.max(initial=0)),
        }

    def build_trie(self) -> CodeTrie:
        return _build_trie(self.codes[1:].numpy(), self.codebook_sizes)

    @cached_property
    def _index(self) -> dict[tuple[int, ...], int]:
        return {tuple(row): i for i, row in enumerate(self.codes.tolist()) if i > 0}

    def item_of(self, codes: Sequence[int]) -> int:
        """The item_idx whose id is `codes` (KeyError if none); for batches use ``build_trie().items_of``."""
        return self._index[tuple(int(c) for c in codes)]

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """semantic_ids.safetensors (codes, centroids) + semantic_ids.json (sizes and stats) in directory `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"codes": self.codes.contiguous()}
        tensors.update({f"centroids.{i}": c.contiguous() for i, c in enumerate(self.centroids)})
        save_file(tensors, path / "semantic_ids.safetensors")
        meta = {"format": _FORMAT, "codebook_sizes": list(self.codebook_sizes), "stats": self.stats()}
        (path / "semantic_ids.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SemanticIds:
        path = Path(path)
        meta = json.loads((path / "semantic_ids.json").read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: semantic ids format {meta.get('format')!r}, expected {_FORMAT}")
        tensors = load_file(path / "semantic_ids.safetensors")
        centroids = tuple(tensors[f"centroids.{i}"] for i in range(sum(k.startswith("centroids.") for k in tensors)))
        return cls(tensors["codes"], tuple(meta["codebook_sizes"]), centroids)


def build_semantic_ids(
    item_embeddings: torch.Tensor | np.ndarray,
    *,
    n_levels: int = 3,
    codebook_size: int = 256,
    seed: int = 0,
    max_iter: int = 100,
) -> SemanticIds:
    """Item embeddings [n_items + 1, D] (row 0, padding, ignored) -> unique semantic ids with L = n_levels."""
    x = torch.as_tensor(item_embeddings, dtype=torch.float32)[1:]  # [N, D]
    if x.shape[0] < 1:
        raise ValueError("no items to quantise")
    prefix, centroids = residual_kmeans(x, n_levels, codebook_size, seed=seed, max_iter=max_iter)  # [N, L]
    d = disambiguate(prefix)  # [N]
    codes = torch.cat([prefix, d[:, None]], dim=1)  # [N, L + 1]
    codes = torch.cat([torch.full((1, n_levels + 1), PAD_CODE, dtype=torch.long), codes])  # [N + 1, L + 1]
    sizes = tuple(c.shape[0] for c in centroids) + (int(d.max()) + 1,)
    return SemanticIds(codes, sizes, tuple(centroids))
