"""Maximum-inner-product retrieval over the item table with FAISS, for catalogues too large to score in full.

The next-item LM scores item i for a user as ``h · e_i`` (final hidden state · output item embedding), so the
top-k items are a maximum inner product search (MIPS) over the item table. Three kinds of index:

- ``"flat"``: exact (``IndexFlatIP``), a scan of every item; the reference the others are calibrated against.
- ``"ivf"``: ``IndexIVFFlat``: k-means into ``nlist ≈ 4·√N`` lists; a query scans the ``nprobe`` lists whose
  centroids are nearest to it (Jégou et al., TPAMI 2011, https://doi.org/10.1109/TPAMI.2010.57).
- ``"hnsw"``: ``IndexHNSWFlat``, a navigable small-world graph (Malkov & Yashunin, TPAMI 2018,
  https://arxiv.org/abs/1603.09320); a query walks the graph with a candidate list of ``efSearch``.

Both approximate kinds search by L2 after the standard MIPS → nearest-neighbour reduction (Bachrach et al.,
RecSys 2014, "Speeding up the Xbox recommender system using a Euclidean transformation for inner-product
spaces"): each item gets one extra coordinate √(M² − ‖e‖²) (M = the largest item norm) and each query a 0,
so that ‖q − e‖² = ‖q‖² + M² − 2 q·e: the L2-nearest items are the largest inner products, and q·e is recovered
from the distance. On the clustered benchmark catalogue (1M items, docs/scaling.md) both kinds built on inner product
directly (``mips="inner-product"``: an inner-product quantizer for IVF, ``METRIC_INNER_PRODUCT`` for HNSW) needed
far more work for the same recall (IVF: nprobe 471 instead of 63 for 0.99; HNSW: 0.74 at efSearch 2048, against
0.99 at 727): inner product is not a metric, and large-norm items and centroids capture the queries. On the
structureless Gaussian worst case the reduction hurt HNSW instead (0.45 at efSearch 2048; on inner product 0.99),
while IVF reached the target either way, by scanning half of its lists.

``kind="auto"`` is exact up to ``AUTO_FLAT_MAX`` items and IVF above: on the benchmark it was the fastest to build,
the smallest and the fastest to search at the target recall, and it degrades towards exact search (nprobe → nlist)
where HNSW's recall stalls. The approximate kinds pick their search parameter (``nprobe`` / ``efSearch``) at build
time: the smallest value whose recall@k against exact search, on sample queries, reaches ``target_recall``; the
value and the recall it reached are stored with the index (an HNSW that stalls below the target at
``MAX_EF_SEARCH`` keeps that value and logs a warning).
Give real queries (the model's hidden states for stored histories, as ``Recommender.use_ann`` does); without
them, item vectors stand in.

Search returns ``(scores, item_ids)`` for a batch of queries: item ids are the model's (1..N; the item table's
row 0, PAD, is never indexed), and given items per query (seen items) are left out by searching deeper and
filtering. Missing slots (a catalogue smaller than k + excluded) hold id 0 and score -inf.

Threads: FAISS parallelises over the queries of a batch with OpenMP; this module never sets the thread count,
so ``faiss.omp_set_num_threads`` (or ``OMP_NUM_THREADS``) of the calling thread applies. A single query runs on
one thread whatever the setting.

Persistence: ``save(dir)`` writes ``index.faiss`` (``faiss.write_index``) and ``index.json`` (kind, parameters,
calibration, and a SHA-256 of the item table, so that ``load(dir, item_table)`` refuses an index built from other
weights). No pickle. faiss is imported inside the functions: ``import llmrec.index`` stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import faiss

log = logging.getLogger("llmrec.index.ann")

__all__ = ["AUTO_FLAT_MAX", "INDEX_KINDS", "MIPS_MODES", "IndexInfo", "ItemIndex", "exact_top_k", "recall_at_k"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
MIPS_MODES = ("l2-reduction", "inner-product")
AUTO_FLAT_MAX = 100_000  # kind="auto": exact up to this many items (one query scans 100k x 64 in ~1 ms here)
MAX_EF_SEARCH = 2048  # hnsw calibration stops here (recall that needs more is better served by ivf or flat)
INDEX_FILE, INFO_FILE = "index.faiss", "index.json"
_FORMAT = 1  # version of index.json


@dataclass(frozen=True)
class IndexInfo:
    """What ``index.json`` holds: how the index was built, its search parameter, and its calibration."""

    kind: str  # "flat" | "ivf" | "hnsw"
    n_items: int  # items 1..n_items are indexed (row 0 of the table, PAD, is not)
    dim: int  # item embedding width D
    table_sha256: str  # SHA-256 of the float32 item rows 1..N: load() refuses another table
    nlist: int = 0  # ivf: inverted lists
    nprobe: int = 0  # ivf: lists scanned per query (calibrated)
    hnsw_m: int = 0  # hnsw: graph degree
    ef_construction: int = 0  # hnsw: candidate list size while building
    ef_search: int = 0  # hnsw: candidate list size while searching (calibrated)
    mips: str = ""  # ivf/hnsw: "l2-reduction" (default) | "inner-product"; "" for flat (exact inner product)
    max_norm: float = 0.0  # M of the l2-reduction (largest item norm)
    target_recall: float = 0.0  # calibration target (0 = not calibrated: exact, or the search parameter was given)
    calibrated_recall: float = 0.0  # recall@calibration_k against exact on the calibration queries (flat: 1)
    calibration_k: int = 10
    n_calibration_queries: int = 0
    calibration_queries: str = ""  # "given" | "item vectors" | "" (flat or not calibrated)
    build_seconds: float = 0.0  # train + add + calibration
    faiss_version: str = ""
    format: int = _FORMAT


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # faiss-cpu is the optional extra "scale"
        raise ImportError("approximate retrieval needs faiss: pip install 'llmrec[scale]' (faiss-cpu)") from e
    return faiss


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be [B, {dim}], got shape {list(q.shape)}")
    if not np.isfinite(q).all():
        raise ValueError("queries hold NaN or infinite values")
    return q


def _item_rows(item_table: np.ndarray) -> np.ndarray:
    """[V+1, D] table with row 0 = PAD -> [V, D] contiguous float32 rows of the items 1..V."""
    table = np.asarray(item_table)
    if table.ndim != 2 or table.shape[0] < 2:
        raise ValueError(f"item_table must be [n_items + 1, D] with row 0 = PAD, got shape {list(table.shape)}")
    rows = np.ascontiguousarray(table[1:], dtype=np.float32)
    if not np.isfinite(rows).all():
        raise ValueError("item_table holds NaN or infinite values")
    return rows


def _augment_items(rows: np.ndarray, max_norm: float) -> np.ndarray:
    """[N, D] -> [N, D+1]: append √(M² − ‖e‖²), so that every row has norm M (the MIPS -> L2 reduction)."""
    sq = np.einsum("nd,nd->n", rows.astype(np.float64), rows.astype(np.float64))  # [N]
    extra = np.sqrt(np.maximum(max_norm**2 - sq, 0.0)).astype(np.float32)
    return np.hstack([rows, extra[:, None]])


def _sha256(rows: np.ndarray) -> str:
    return hashlib.sha256(rows.tobytes()).hexdigest()


def exact_top_k(item_table: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact MIPS with a flat index: (scores [B, K], item ids [B, K]) over items 1..V of a [V+1, D] table."""
    return ItemIndex.build(item_table, "flat").search(queries, k)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |found ∩ exact| / |exact|: item ids [B, K'] against the exact top-k ids [B, K]."""
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"{found.shape[0]} rows found for {exact.shape[0]} exact rows")
    hits = []
    for f, e in zip(found, exact, strict=True):
        relevant = set(e[e > 0].tolist())
        hits.append(len(set(f[f > 0].tolist()) & relevant) / max(1, len(relevant)))
    return float(np.mean(hits)) if hits else 1.0


class ItemIndex:
    """A FAISS index over items 1..N of an item table, searched by maximum inner product. Build with ``build``."""

    def __init__(self, index: faiss.Index, info: IndexInfo) -> None:
        self.index = index
        self.info = info

    # ---- building ----------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        item_table: np.ndarray,
        kind: str = "auto",
        *,
        queries: np.ndarray | None = None,
        target_recall: float = 0.99,
        calibration_k: int = 10,
        n_calibration_queries: int = 1000,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int | None = None,
        mips: str = "l2-reduction",
        seed: int = 0,
    ) -> ItemIndex:
        """Index the rows 1..V of ``item_table`` [V+1, D] (row 0 = PAD).

        kind: "flat" | "ivf" | "hnsw" | "auto" (flat up to AUTO_FLAT_MAX items, else ivf).
        queries: [Q, D] sample queries for calibration (at most ``n_calibration_queries`` are used); None: item
        vectors drawn at random stand in. ``nprobe`` / ``ef_search`` given: used as they are, no calibration.
        nlist: ivf lists (default 4·√N, at most N/39 so that k-means has 39 points per centroid).
        mips: how ivf/hnsw search by inner product: "l2-reduction" (see the module docstring) | "inner-product".
        """
        if kind not in (*INDEX_KINDS, "auto"):
            raise ValueError(f"kind must be one of auto, {', '.join(INDEX_KINDS)}; got {kind!r}")
        if mips not in MIPS_MODES:
            raise ValueError(f"mips must be one of {', '.join(MIPS_MODES)}; got {mips!r}")
        if not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        faiss = _faiss()
        started = time.perf_counter()
        rows = _item_rows(item_table)  # [N, D]
        n, d = rows.shape
        if kind == "auto":
            kind = "flat" if n <= AUTO_FLAT_MAX else "ivf"
        info = IndexInfo(kind=kind, n_items=n, dim=d, table_sha256=_sha256(rows), faiss_version=faiss.__version__)
        index: Any
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
            index.add(rows)
            info = replace(info, calibrated_recall=1.0)
        else:
            is_l2 = mips == "l2-reduction"
            max_norm = float(np.linalg.norm(rows, axis=1).max()) if is_l2 else 0.0
            vectors = _augment_items(rows, max_norm) if is_l2 else rows  # [N, D+1] or [N, D]
            width = vectors.shape[1]
            info = replace(info, mips=mips, max_norm=max_norm)
            if kind == "ivf":
                nlist = nlist or max(1, min(int(round(4 * math.sqrt(n))), n // 39))
                if is_l2:
                    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(width), width, nlist, faiss.METRIC_L2)
                else:
                    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(width), width, nlist, faiss.METRIC_INNER_PRODUCT)
                index.cp.seed = seed
                index.cp.max_points_per_centroid = 64  # k-means on a sample of ≤ 64 points per list (1M: 256k)
                index.train(vectors)
                info = replace(info, nlist=nlist, nprobe=nprobe or 1)
            else:
                index = faiss.IndexHNSWFlat(width, hnsw_m, faiss.METRIC_L2 if is_l2 else faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = ef_construction
                info = replace(info, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search or 16)
            index.add(vectors)
        out = cls(index, info)
        out._apply_search_parameter()
        is_given = (kind == "ivf" and nprobe is not None) or (kind == "hnsw" and ef_search is not None)
        if kind != "flat" and not is_given:
            out._calibrate(rows, queries, target_recall, calibration_k, n_calibration_queries, seed)
        out.info = replace(out.info, build_seconds=time.perf_counter() - started)
        return out

    def _calibrate(self, rows: np.ndarray, queries: np.ndarray | None, target: float, k: int, n_queries: int, seed: int) -> None:
        """Set nprobe / efSearch to the smallest value whose recall@k on the sample queries reaches `target`.

        Recall grows with the parameter (for IVF strictly: more lists scanned is a superset of candidates), so
        doubling finds a bracket and bisection the smallest passing value. 1,000 queries x 10 = 10,000 relevant
        items: a recall estimate with a standard error of about 0.001 near 0.99.
        """
        rng = np.random.default_rng(seed)
        if queries is None:
            source = "item vectors"
            q = rows[rng.choice(len(rows), size=min(n_queries, len(rows)), replace=False)]
        else:
            source = "given"
            q = _as_queries(queries, self.info.dim)
            if len(q) > n_queries:
                q = q[rng.choice(len(q), size=n_queries, replace=False)]
        if len(q) == 0:
            raise ValueError("calibration needs at least one query")
        k = min(k, self.info.n_items)
        faiss = _faiss()
        exact = faiss.IndexFlatIP(self.info.dim)
        exact.add(rows)
        truth = exact.search(q, k)[1] + 1  # [Q, K] item ids
        del exact
        top = self.info.nlist if self.info.kind == "ivf" else max(MAX_EF_SEARCH, 4 * k)  # a cap for hnsw

        def recall(value: int) -> float:
            self._set_search_parameter(value)
            return recall_at_k(self.search(q, k)[1], truth)

        lo, hi = 0, 1 if self.info.kind == "ivf" else 16
        reached = {hi: recall(hi)}
        while reached[hi] < target and hi < top:  # doubling: lo fails (or is 0), hi is the next to try
            lo, hi = hi, min(2 * hi, top)
            reached[hi] = recall(hi)
        while reached[hi] >= target and hi - lo > 1:  # bisection: the smallest passing value in (lo, hi]
            mid = (lo + hi) // 2
            reached[mid] = recall(mid)
            lo, hi = (lo, mid) if reached[mid] >= target else (mid, hi)
        if reached[hi] < target:  # hnsw at its cap (ivf at nlist scans everything): keep the cap, say so
            log.warning(
                "hnsw index: recall@%d %.3f at efSearch %d, below the target %.3f; kind='ivf' or 'flat' reach it",
                k,
                reached[hi],
                hi,
                target,
            )
        self._set_search_parameter(hi)
        self.info = replace(
            self.info,
            target_recall=target,
            calibrated_recall=reached[hi],
            calibration_k=k,
            n_calibration_queries=len(q),
            calibration_queries=source,
        )

    # ---- search parameter -------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def n_items(self) -> int:
        return self.info.n_items

    @property
    def search_parameter(self) -> int:
        """nprobe (ivf), efSearch (hnsw), 0 (flat)."""
        return {"ivf": self.info.nprobe, "hnsw": self.info.ef_search}.get(self.kind, 0)

    def _set_search_parameter(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"the search parameter must be >= 1, got {value}")
        if self.kind == "ivf":
            self.info = replace(self.info, nprobe=min(value, self.info.nlist))
        elif self.kind == "hnsw":
            self.info = replace(self.info, ef_search=value)
        self._apply_search_parameter()

    def with_search_parameter(self, value: int) -> ItemIndex:
        """The same index (shared, not copied) searched with another nprobe / efSearch (benchmarks, sweeps)."""
        if self.kind == "flat":
            raise ValueError("a flat index has no search parameter")
        # A shallow twin: faiss keeps nprobe/efSearch on the index object, so the twin sets it before each search.
        twin = ItemIndex(self.index, self.info)
        twin._set_search_parameter(value)
        twin.info = replace(twin.info, target_recall=0.0, calibrated_recall=0.0, calibration_queries="")
        return twin

    def _apply_search_parameter(self) -> None:
        index: Any = self.index  # the concrete faiss index type (IndexIVF / IndexHNSW) carries the parameter
        if self.kind == "ivf":
            index.nprobe = self.info.nprobe
        elif self.kind == "hnsw":
            index.hnsw.efSearch = self.info.ef_search

    # ---- search ------------------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray | Sequence[int] | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by inner product for each query [B, D] -> (scores [B, K] float32, item ids [B, K] int64).

        exclude: per query, item ids never to return (seen items). The search goes k + min(#excluded, max(k, 16))
        deep and filters; a row left with fewer than k items is searched again 4x deeper, up to k + #excluded (a
        long history rarely overlaps the top of the ranking, and HNSW's cost grows with the depth). Rows are in
        descending score; a slot with nothing to fill has id 0 and score -inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _as_queries(queries, self.info.dim)  # [B, D]
        B = q.shape[0]
        banned = [np.empty(0, dtype=np.int64)] * B
        if exclude is not None:
            if len(exclude) != B:
                raise ValueError(f"exclude has {len(exclude)} entries for {B} queries")
            banned = [np.unique(np.asarray(e if e is not None else [], dtype=np.int64)) for e in exclude]
        k_out = min(k, self.n_items)
        scores = np.full((B, k), -np.inf, dtype=np.float32)  # [B, K]
        ids = np.zeros((B, k), dtype=np.int64)  # [B, K]
        rows = np.arange(B)  # the rows still to (re)search
        depth = np.array([min(self.n_items, k + min(len(e), max(k, 16))) for e in banned])  # [B] first depth
        full = np.array([min(self.n_items, k + len(e)) for e in banned])  # [B] deepest needed
        self._apply_search_parameter()
        while len(rows):
            kk = int(depth[rows].max())  # KK
            found_scores, found_ids = self._search_raw(q[rows], kk)  # [R, KK]
            is_valid = found_ids > 0
            for r, i in enumerate(rows):
                if len(banned[i]):
                    is_valid[r] &= ~np.isin(found_ids[r], banned[i])
            order = np.argsort(~is_valid, axis=1, kind="stable")[:, :k_out]  # valid first, in score order
            top_ids = np.take_along_axis(found_ids, order, axis=1)  # [R, K']
            top_scores = np.take_along_axis(found_scores, order, axis=1)
            top_valid = np.take_along_axis(is_valid, order, axis=1)
            scores[rows, :k_out] = np.where(top_valid, top_scores, -np.inf)
            ids[rows, :k_out] = np.where(top_valid, top_ids, 0)
            is_short = (top_valid.sum(1) < k_out) & (kk < full[rows])  # [R] not filled, and deeper exists
            rows = rows[is_short]
            depth[rows] = np.minimum(full[rows], 4 * kk)
        return scores, ids

    def _search_raw(self, q: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search [B, D] -> (inner products [B, KK] float32 descending, item ids [B, KK]; 0 = none)."""
        if self.info.mips == "l2-reduction":
            qa = np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)])  # [B, D+1]
            dist, labels = self.index.search(qa, depth)  # [B, KK] squared L2 in the augmented space, ascending
            q_sq = np.einsum("bd,bd->b", q, q)[:, None]  # [B, 1]
            scores = (q_sq + np.float32(self.info.max_norm**2) - dist) / 2  # q·e = (‖q‖² + M² − ‖q − e‖²) / 2
        else:
            scores, labels = self.index.search(q, depth)  # [B, KK] inner products, descending
        return scores.astype(np.float32), labels.astype(np.int64) + 1  # labels 0..N-1 -> ids 1..N; -1 -> 0

    # ---- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``index.faiss`` and ``index.json`` into the folder ``path`` (created if needed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(path / INDEX_FILE))
        (path / INFO_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, item_table: np.ndarray | None = None) -> ItemIndex:
        """Read a saved index; with ``item_table``, refuse (ValueError) an index built from another table."""
        path = Path(path)
        if not (path / INFO_FILE).is_file() or not (path / INDEX_FILE).is_file():
            raise FileNotFoundError(f"{path}: no saved index ({INDEX_FILE} + {INFO_FILE})")
        raw = json.loads((path / INFO_FILE).read_text())
        known = set(IndexInfo.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown or raw.get("format") != _FORMAT:
            raise ValueError(f"{path / INFO_FILE}: not an index description of format {_FORMAT}")
        info = IndexInfo(**raw)
        if item_table is not None and _sha256(_item_rows(item_table)) != info.table_sha256:
            raise ValueError(f"{path}: the index was built from another item table (stale); rebuild it")
        index = _faiss().read_index(str(path / INDEX_FILE))
        if index.ntotal != info.n_items:
            raise ValueError(f"{path}: {INDEX_FILE} holds {index.ntotal} items, {INFO_FILE} says {info.n_items}")
        out = cls(index, info)
        out._apply_search_parameter()
        return out

    def __repr__(self) -> str:
        extra = {
            "ivf": f", nlist={self.info.nlist}, nprobe={self.info.nprobe}",
            "hnsw": f", M={self.info.hnsw_m}, efSearch={self.info.ef_search}",
        }.get(self.kind, "")
        return f"ItemIndex(kind={self.kind!r}, n_items={self.n_items}, dim={self.info.dim}{extra})"
