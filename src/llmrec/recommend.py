"""Recommender: load a model artifact directory and recommend from a user id or a list of raw item ids.

    rec = Recommender.load("runs/beauty/model")
    rec.recommend(history=["1", "5", "9"], k=10)   # -> Recommendations (a list of Recommendation)
    rec.recommend(user="42", k=10, exclude_seen=False)  # history items may come back, whatever the model's rule

Whether items already in the history are left out is one decision per model (``exclude_seen=None``, the
default): chosen at training time on validation and recorded in the artifact (`llmrec.eval.seen_rule`); models
without the record leave them out. Unknown ids are skipped (`resolve_history`), business rules mask items out
before top-k (`llmrec.filters`).

Large catalogues: above ``ANN_THRESHOLD`` items (or when asked, ``load(path, ann="hnsw")`` / ``use_ann``), the
top-k come from a FAISS index over the item table (`llmrec.recommend_ann`, `llmrec.retrieval`); a ``query``
blend, ``adapt`` and filtered rows need the whole score row and fall back to full scoring. This module keeps
the facade (loading, id mapping, state) and the explanation assembly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from llmrec.arguments import check_histories, check_history, check_k, check_new_items, check_options
from llmrec.artifact import ANN_DIR, Artifact, open_artifact
from llmrec.config import QUERY_WEIGHT
from llmrec.data.sequences import pad_left
from llmrec.errors import UnknownIdError
from llmrec.eval.scoring import model_device, resolve_device, score_fn
from llmrec.eval.seen_rule import served_exclude_seen
from llmrec.filters import ItemFilter, ItemMasks, UnknownCategoryWarning, UnknownIdWarning, apply_masks, new_item_quota
from llmrec.models import load_model  # re-exported: `from llmrec.recommend import load_model` keeps working
from llmrec.models.base import ItemEmbeddingModel, RecModel
from llmrec.recommend_ann import IndexedRetrieval
from llmrec.results import Contribution, Explanation, Recommendation, Recommendations
from llmrec.retrieval import (
    ANN_MODES,
    ANN_THRESHOLD,
    N_CANDIDATES,
    diversity_features,
    item_text_embeddings,
    mmr_topk,
    popularity_scores,
    query_similarity,
)

if TYPE_CHECKING:
    from llmrec.explain.text import ItemInfo, TextGenerator
    from llmrec.index.ann import ItemIndex
    from llmrec.models.adapter import UserAdapter

__all__ = [
    "ANN_DIR",
    "ANN_MODES",
    "ANN_THRESHOLD",
    "Contribution",
    "Explanation",
    "ItemFilter",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "UnknownCategoryWarning",
    "UnknownIdError",
    "UnknownIdWarning",
    "load_model",
]


log = logging.getLogger("llmrec.recommend")

CITE_SHARE = 0.25  # explain(): a history item is cited as a reason when its attribution is >= this share of the top one
N_RECENT = 5  # explain(): the user's latest items a text generator is shown (`Reason.history`)


class Recommender(IndexedRetrieval):
    """Facade over a model artifact: raw ids in, ranked raw ids (with titles) out."""

    def __init__(self, model: RecModel, items: pl.DataFrame, histories: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.model = model
        self.items = items.sort("item_idx")
        self.raw_ids: list[str] = self.items["item"].to_list()
        self.titles: list[str | None] = self.items["title"].to_list()
        cats = self.items["categories"].to_list() if "categories" in self.items.columns else [None] * len(self.raw_ids)
        self.categories: list[tuple[str, ...]] = [tuple(c or ()) for c in cats]
        self.masks = ItemMasks.of_items(self.items)  # business rules: filters and the catalogue's `available` column
        # The seen-item rule served by default (training.json's `seen_items`, chosen on validation; set by `load`).
        self.exclude_seen_default = True
        self.item_index = {raw: i + 1 for i, raw in enumerate(self.raw_ids)}
        self.histories = histories
        self.meta = meta
        self.max_seq_len = int(model.max_seq_len)
        # Intent queries (recommend(query=...)): the text encoder loads on the first query; item embeddings are read
        # from the artifact (or computed once, cached on disk in text_cache_dir by item text) and kept here.
        self.text_encoder: Any = None  # llmrec.index.text_encoder.TextEncoder; None = the default model, lazily
        self.text_cache_dir: Path | None = None  # None = <llmrec cache dir>/text-embeddings
        self._item_text_emb: torch.Tensor | None = None  # [V+1, E]
        self._diversity_features: tuple[np.ndarray, str] | None = None
        # Per-user adaptation (recommend(..., adapt=True)): the meta-trained adapter of a `llmrec meta-train` artifact.
        self.adapter: UserAdapter | None = None
        # Approximate retrieval for large catalogues (use_ann); None = score every item.
        self.ann: ItemIndex | None = None
        self.path: Path | None = None  # the artifact folder (set by `load`)
        self.artifact: Artifact | None = None  # its reader (set by `load`)
        self._popularity: torch.Tensor | None = None  # [V+1] events per item in the stored histories (empty history)
        self._llm_writers: dict[str, TextGenerator] = {}  # llm_writer(): one LLM text generator per model source

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        ann: str = "auto",
        ann_threshold: int = ANN_THRESHOLD,
        device: str = "auto",
        threads: int = 0,
    ) -> Recommender:
        """Load an artifact folder. ann: "auto" | "off" | "flat" | "ivf" | "hnsw" (see `use_ann`); a saved index
        in ``<path>/ann`` is used when it matches. device: "auto" (default, as on the command line: CUDA when
        available, else the CPU) | "cpu" | "cuda"; "cuda" without a CUDA device is a ValueError. Scores come back
        on the CPU either way; ``adapt=True`` needs ``device="cpu"``. threads: CPU threads for scoring, as
        ``--threads`` on the command line (torch's, and FAISS's when loaded; they are the process's, so the last
        setting wins); 0 leaves them."""
        from llmrec.threads import use_threads

        use_threads(threads, name="threads")
        art = open_artifact(path)  # every file is read through it (`llmrec.artifact.Artifact`)
        model = art.model(resolve_device(device))  # "cuda" without CUDA is a ValueError before anything is loaded
        art.check_catalogue(model.n_items)  # the catalogue the model was built for
        rec = cls(model, art.items, art.histories, art.dataset_info)
        rec.path, rec.artifact = art.path, art
        rec.exclude_seen_default = served_exclude_seen(art.training)
        rec.adapter = art.adapter()
        rec.use_ann(ann, threshold=ann_threshold, index_dir=art.ann_dir)
        return rec

    @property
    def n_items(self) -> int:
        return len(self.raw_ids)

    def __repr__(self) -> str:
        """``Recommender(tvrec from 'runs/model': 1,682 items, 943 users, seen items excluded, cpu)``."""
        where = f" from {str(self.path)!r}" if self.path is not None else ""
        unavailable = int(self.masks.unavailable.sum())
        stock = f", {unavailable:,} unavailable" if unavailable else ""
        seen = "excluded" if self.exclude_seen_default else "kept"
        kind = getattr(self.model, "model_type", type(self.model).__name__)
        return (
            f"Recommender({kind}{where}: {self.n_items:,} items{stock}, {len(self.histories):,} users, "
            f"seen items {seen}, {self.device.type})"
        )

    def encode_history(self, history: Sequence[str]) -> np.ndarray:
        """Raw item ids (a list, not a bare string: see `llmrec.arguments.check_history`) -> internal ids [T]."""
        raw = check_history(history)
        if unknown := [h for h in raw if h not in self.item_index]:
            raise UnknownIdError("item", unknown)
        return np.array([self.item_index[h] for h in raw], dtype=np.int64)

    def user_history(self, user: str) -> np.ndarray:
        if str(user) not in self.histories:
            raise UnknownIdError("user", [str(user)])
        return self.histories[str(user)]

    def score_batch(self, histories: list[np.ndarray], *, adapt: bool = False) -> torch.Tensor:
        """[B, V+1] scores for internal-id histories (column 0 = -inf).

        adapt: first fit each history's user vector (the inner loop of `llmrec.meta.maml`, a few ms per user)."""
        if adapt and (self.adapter is None or not isinstance(self.model, ItemEmbeddingModel)):
            raise ValueError("adapt=True needs a meta-trained artifact with an adapter (see `llmrec meta-train`)")
        return score_fn(self.model, adapter=self.adapter if adapt else None, max_seq_len=self.max_seq_len)(histories)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (Recommender.load(device=...)); inputs go there, scores come back to CPU."""
        return model_device(self.model)

    def _padded(self, histories: list[np.ndarray]) -> torch.Tensor:
        """Internal-id histories -> left-padded [B, L] on the model's device."""
        return pad_left(histories, self.max_seq_len).to(self.device)

    def recommend_batch(
        self,
        histories: list[np.ndarray],
        k: int = 10,
        *,
        exclude_seen: bool | Sequence[bool] | None = None,
        query: str | None = None,
        query_weight: float = QUERY_WEIGHT,
        diversity: float = 0.0,
        adapt: bool = False,
        filters: ItemFilter | Sequence[ItemFilter | None] | None = None,
        new_items: int = 0,
    ) -> list[list[Recommendation]]:
        """Top-k for each internal-id history (`encode_history`'s arrays; an empty one gets the popularity
        fallback of `recommend`); `exclude_seen` for all rows or one flag per row (the service batches requests
        that differ in it into one forward pass); None: the model's rule (`exclude_seen_default`, chosen at
        training time on validation: `llmrec.eval.seen_rule`). filters: an `llmrec.filters.ItemFilter` for all
        rows or one per row (None: the default rule, unavailable items left out); blocked items are masked out of
        the scores before top-k, next to the seen items (`llmrec.filters.apply_masks`).

        query: a natural-language intent blended with the personal scores (`llmrec.rerank.blend_query`, weight
        `query_weight`); the reported score is then the blended one. diversity: in [0, 1], re-rank the top
        candidates by maximal marginal relevance with λ = 1 − diversity (`llmrec.rerank.mmr`).

        new_items: positions k-n+1..k of each list hold the n best-scored new items (`new_item_mask`: no event in
        the stored histories, or held out of training by a cold-item split), when the top k-n do not already hold
        them; 0 = off. TIGER's cold-item quota: the model ranks items it never trained on low, so without a
        reserved place they are rarely shown. The quota's items keep their score (the list is then not in score
        order) and pass the same rules as any item (`llmrec.filters.new_item_quota`)."""
        histories, k = check_histories(histories, self.n_items), check_k(k)
        check_options(diversity, query_weight, query)
        new_items = check_new_items(new_items, k)
        is_new = self.new_item_mask() if new_items else None
        if exclude_seen is None:
            exclude_seen = self.exclude_seen_default
        excluded = [exclude_seen] * len(histories) if isinstance(exclude_seen, bool) else list(exclude_seen)
        if len(excluded) != len(histories):
            raise ValueError(f"exclude_seen has {len(excluded)} flags for {len(histories)} histories")
        per_row = [filters] * len(histories) if filters is None or isinstance(filters, ItemFilter) else list(filters)
        if len(per_row) != len(histories):
            raise ValueError(f"filters has {len(per_row)} entries for {len(histories)} histories")
        blocked = [self.masks.blocked(f) for f in per_row]  # [V+1] bool per row, None: nothing blocked
        empty = [i for i, h in enumerate(histories) if not len(h)]
        unfiltered = all(b is None for b in blocked)  # the index path serves unfiltered rows only
        if self.ann is not None and not adapt and query is None and not empty and unfiltered and not new_items:
            values, indices = self._retrieve(histories, k, excluded, diversity)
            return self._ranked(values, indices)
        scores = self.score_batch(histories, adapt=adapt)
        if empty and self.histories:  # nothing to go on: the most popular items of the stored histories
            if self._popularity is None:
                self._popularity = popularity_scores(self.histories, self.n_items)
            scores[empty] = self._popularity
        if query is not None:
            from llmrec.rerank import blend_query

            scores = blend_query(scores, self.query_similarity(query), query_weight)
        apply_masks(scores, histories, excluded, blocked)
        if is_new is not None:
            return self._with_quota(scores, k, new_items, is_new, diversity)
        if diversity > 0.0:
            values, indices = self._diversify(scores, k, 1.0 - diversity)
        else:
            values, indices = scores.topk(min(k, self.n_items), dim=1)
            if empty and self.histories:  # popularity ties: the lower item id first, as every door ranks them
                ordered = scores[empty].sort(dim=1, descending=True, stable=True)
                values[empty], indices[empty] = ordered.values[:, : values.shape[1]], ordered.indices[:, : values.shape[1]]
        return self._ranked(values, indices)

    def new_item_mask(self) -> np.ndarray:
        """[V+1] bool (column 0 False): the catalogue's new items, those with no event in the stored histories and
        those a cold-item split held out of every training sequence (the catalogue's ``is_cold`` column: their
        validation and test events are in the stored histories, but the model never trained on them)."""
        is_cold = self.items["is_cold"].fill_null(False).to_numpy() if "is_cold" in self.items.columns else None
        if not self.histories and is_cold is None:
            raise ValueError("new_items needs the artifact's stored histories (histories.parquet) to tell new items")
        is_new = np.zeros(self.n_items + 1, dtype=bool)
        if self.histories:
            if self._popularity is None:
                self._popularity = popularity_scores(self.histories, self.n_items)
            is_new |= (self._popularity == 0).numpy()  # column 0 is -inf: never new
        if is_cold is not None:
            is_new[1:] |= is_cold.astype(bool)
        return is_new

    def _with_quota(
        self, scores: torch.Tensor, k: int, new_items: int, is_new: np.ndarray, diversity: float
    ) -> list[list[Recommendation]]:
        """Masked scores [B, V+1] -> lists of k whose last `new_items` positions hold new items (`new_item_quota`);
        with diversity, the rest of the list is the re-ranking's."""
        orders = self._diversify(scores, k, 1.0 - diversity)[1].numpy() if diversity > 0.0 else None  # [B, K]
        rows = scores.numpy()
        width = min(k, self.n_items)
        values = torch.full((len(rows), width), float("-inf"))  # [B, K]: -inf = nothing
        indices = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            cols = new_item_quota(row, k, new_items, is_new, None if orders is None else orders[b])
            values[b, : len(cols)] = torch.from_numpy(row[cols].astype(np.float32))
            indices[b, : len(cols)] = torch.from_numpy(cols)
        return self._ranked(values, indices)

    def _ranked(self, values: torch.Tensor, indices: torch.Tensor) -> list[list[Recommendation]]:
        """Scores and item ids [B, K] (descending; -inf = nothing) -> Recommendations per row."""
        out = []
        for vals, idx in zip(values.tolist(), indices.tolist(), strict=True):
            recs = [
                Recommendation(self.raw_ids[j - 1], float(v), r + 1, self.titles[j - 1], self.categories[j - 1])
                for r, (v, j) in enumerate(zip(vals, idx, strict=True))
                if v != float("-inf")
            ]
            out.append(recs)
        return out

    def recommend(
        self,
        *,
        history: list[str] | None = None,
        user: str | None = None,
        k: int = 10,
        exclude_seen: bool | None = None,
        query: str | None = None,
        query_weight: float = QUERY_WEIGHT,
        diversity: float = 0.0,
        adapt: bool = False,
        strict: bool = False,
        include_items: Sequence[str] | None = None,
        exclude_items: Sequence[str] | None = None,
        include_categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
        include_unavailable: bool = False,
        new_items: int = 0,
    ) -> Recommendations:
        """Top-k items for a raw history (oldest first) or a raw user id (options: see recommend_batch;
        adapt=True fits the artifact's per-user adapter to the history first: cold-start users).

        history is a list of raw item ids (str or int): ``history=["1113"]``; a bare string is a TypeError, never
        read as its characters. k is an int >= 1 (a bool or float is a TypeError). exclude_seen: None (default)
        is the model's seen-item rule (`exclude_seen_default`); True / False override it.

        Unknown ids (`resolve_history`): history items the model does not know are skipped and listed in the
        answer's ``ignored_items``; an unknown user, or a history with no known item, gets the popularity list,
        marked ``fallback == "popular"``; either is also an `UnknownIdWarning`. strict=True refuses both instead
        (`UnknownIdError`). An empty history is
        allowed, here, on the command line (``--history ""``) and over HTTP alike: with nothing to go on, the items
        come ranked by popularity, their score the number of events with them in the artifact's stored histories
        (what ``most-popular`` would say); an artifact without stored histories falls back to the model's own
        scores of the empty context. exclude_seen and query / diversity apply as for any history.

        include_items / exclude_items (raw ids), include_categories / exclude_categories, include_unavailable:
        business rules (`llmrec.filters.ItemFilter`) masked out of the scores before top-k. Categories match
        whatever their case; one that no item has is listed in ``ignored_categories`` and warned about
        (`UnknownCategoryWarning`).
        """
        h, ignored, fallback = self.resolve_history(history, user, strict=strict)
        rules = ItemFilter.of(include_items, exclude_items, include_categories, exclude_categories, include_unavailable)
        unknown_categories = self.masks.unknown_categories(rules)
        _warn_unknown(ignored, user if history is None and str(user) not in self.histories else None, fallback)
        if unknown_categories:
            warnings.warn(
                f"ignored unknown categories: {', '.join(unknown_categories)} (no catalogue item has them)",
                UnknownCategoryWarning,
                stacklevel=2,
            )
        found = self.recommend_batch(
            [h],
            k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            adapt=adapt,
            filters=rules,
            new_items=new_items,
        )[0]
        return Recommendations(found, ignored, fallback, unknown_categories, user=None if user is None else str(user))

    def resolve_history(
        self, history: Sequence[str] | None, user: str | None, *, strict: bool = False
    ) -> tuple[np.ndarray, list[str], str | None]:
        """(internal-id history, ignored raw item ids, fallback) for exactly one of a raw history or a user id.

        strict=False: unknown history items are skipped (and returned as ignored) and an unknown user has an
        empty history; strict=True: either is an `UnknownIdError`, as before. fallback is "popular" when the
        history to score is empty and the artifact has stored histories to count (`recommend`)."""
        if (history is None) == (user is None):
            raise ValueError("give exactly one of history= or user=")
        if history is None and isinstance(user, list | tuple):
            raise TypeError("user is one raw user id (str); for a list of item ids use history=[...]")
        ignored: list[str] = []
        if history is not None:
            raw = check_history(history)
            ignored = [] if strict else list(dict.fromkeys(i for i in raw if i not in self.item_index))
            h = self.encode_history([i for i in raw if i in self.item_index or strict])
        elif strict or str(user) in self.histories:
            h = self.user_history(str(user))
        else:
            h = np.zeros(0, dtype=np.int64)
        return h, ignored, ("popular" if not len(h) and self.histories else None)

    # ---- diversity and intent ------------------------------------------------------------------------------
    def _diversify(self, scores: torch.Tensor, k: int, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """MMR over each row's top max(N_CANDIDATES, 5k) items -> (scores, item ids), each [B, K], like topk."""
        top = scores.topk(min(max(N_CANDIDATES, 5 * k), self.n_items), dim=1)  # [B, N]
        return self._mmr(top.values, top.indices, k, lam)

    def _mmr(self, values: torch.Tensor, indices: torch.Tensor, k: int, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """MMR re-ranking of candidates (scores, item ids) [B, N] in descending score -> [B, K] of each."""
        return mmr_topk(values, indices, k, lam, *self.diversity_features())

    def diversity_features(self) -> tuple[np.ndarray, str]:
        """Item features for diversity: multi-hot categories (Jaccard) when the catalogue has them, else the
        model's item embeddings (cosine). [V+1, F] and the metric name."""
        if self._diversity_features is None:
            self._diversity_features = diversity_features(self.items, self.model)
        return self._diversity_features

    def query_similarity(self, query: str) -> torch.Tensor:
        """Cosine similarity [V+1] between the query's text embedding and every item's (column 0 = padding)."""
        if not query.strip():
            raise ValueError("the query is empty")
        if self.text_encoder is None:
            from llmrec.index.text_encoder import default_encoder

            self.text_encoder = default_encoder()  # one per process: models loaded side by side share it
        if self._item_text_emb is None:
            domain = str(self.meta.get("domain") or "generic")
            self._item_text_emb = item_text_embeddings(self.items, domain, self.text_encoder, self.text_cache_dir, self.path)
        return query_similarity(query, self.text_encoder, self._item_text_emb)  # [V+1]

    # ---- explanations -------------------------------------------------------------------------------------
    def explain(
        self,
        *,
        history: list[str] | None = None,
        user: str | None = None,
        k: int = 5,
        exclude_seen: bool | None = None,
        query: str | None = None,
        query_weight: float = QUERY_WEIGHT,
        diversity: float = 0.0,
        method: str = "occlusion",
        n_contributions: int = 5,
        n_reasons: int = 2,
        generator: TextGenerator | None = None,
        llm_text: bool | str | Path = False,
        include_items: Sequence[str] | None = None,
        exclude_items: Sequence[str] | None = None,
        include_categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
        include_unavailable: bool = False,
        strict: bool = False,
        new_items: int = 0,
    ) -> list[Explanation]:
        """Recommend (same options as recommend, the business rules and unknown ids included: skipped with an
        `UnknownIdWarning`, or refused with strict=True) and explain each item by the history items behind its
        score.

        The attribution is of the model's own score (a query blend or diversity re-ranking chooses among
        items, but the model's score is what the history drives). method: "occlusion" (exact) | "gradient".
        The text cites up to `n_reasons` history items: with occlusion, only items whose deletion moves the
        recommended item's score more than the catalogue's (`llmrec.explain.attribution.occlusion_reasons`); with
        the gradient, only when the strongest weight is at least MIN_STRENGTH score spreads; in both, those with a
        positive attribution of at least CITE_SHARE of the strongest such item (a distant second is not a
        reason). An item never explains itself: with exclude_seen=False a recommended item may be in the history,
        and its own occurrences are left out of the contributions and the text. When a query blended into the scores (query_weight > 0), the text
        says so. generator: an `llmrec.explain.text.TextGenerator` (default: the template generator). llm_text:
        True (the packaged SmolLM2) or a local causal-LM folder / GGUF file: the LLM writes the text, checked against
        the attribution (`llm_writer`); `Explanation.written_by` and `fallback` say whether its text was used.
        """
        if llm_text is not False and generator is None:
            generator = self.llm_writer(None if llm_text is True else llm_text)
        rules = ItemFilter.of(include_items, exclude_items, include_categories, exclude_categories, include_unavailable)
        if unknown_categories := self.masks.unknown_categories(rules):
            warnings.warn(
                f"ignored unknown categories: {', '.join(unknown_categories)} (no catalogue item has them)",
                UnknownCategoryWarning,
                stacklevel=2,
            )
        h, ignored, fallback = self.resolve_history(history, user, strict=strict)  # unknown ids: as `recommend`
        _warn_unknown(ignored, user if history is None and str(user) not in self.histories else None, fallback)
        return self.explain_history(
            h,
            filters=rules,
            k=k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            method=method,
            n_contributions=n_contributions,
            n_reasons=n_reasons,
            generator=generator,
            new_items=new_items,
        )

    def llm_writer(self, source: str | Path | None = None) -> TextGenerator:
        """An `llmrec.explain.text.LLMTextGenerator` (source: a local causal-LM folder or GGUF file; None: the
        packaged SmolLM2) whose text is checked against this catalogue's titles; one per source, kept here."""
        from llmrec.explain.text import LLMTextGenerator

        key = str(source)
        if key not in self._llm_writers:
            catalogue = dict(zip(self.raw_ids, self.titles, strict=True))
            self._llm_writers[key] = LLMTextGenerator(source, catalogue=catalogue)
        return self._llm_writers[key]

    def explain_history(
        self,
        h: np.ndarray,
        *,
        k: int = 5,
        exclude_seen: bool | None = None,
        query: str | None = None,
        query_weight: float = QUERY_WEIGHT,
        diversity: float = 0.0,
        method: str = "occlusion",
        n_contributions: int = 5,
        n_reasons: int = 2,
        generator: TextGenerator | None = None,
        filters: ItemFilter | None = None,
        new_items: int = 0,
    ) -> list[Explanation]:
        """`explain` for an internal-id history `h` (1-D int64, oldest first), as `recommend_batch` takes: the
        service's path, which has already encoded and checked the ids. filters: the business rules
        (`llmrec.filters.ItemFilter`; None: the default rule)."""
        from llmrec.explain.attribution import attribute, is_weak, occlusion_reasons, score_spread
        from llmrec.explain.text import Reason, TemplateGenerator, write_reason

        recs = self.recommend_batch(
            [h],
            k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            filters=filters,
            new_items=new_items,
        )[0]
        if not recs:
            return []
        targets = [self.item_index[r.item_id] for r in recs]
        if self.device.type != "cpu" and method != "occlusion":
            raise ValueError(f"method={method!r} runs on the CPU: load the model with device='cpu' or use occlusion")
        # [K, T] (occlusion runs on the model's device); an empty history has nothing to attribute to. Occlusion names
        # a history item only where `occlusion_reasons` finds the target reacts to its deletion more than the
        # catalogue does; the gradient estimate keeps the global rule (strongest weight >= MIN_STRENGTH x spread).
        reasons: np.ndarray | None = None
        if method == "occlusion":
            weights, reasons = occlusion_reasons(self.model, h, targets, self.max_seq_len)
        else:
            weights = attribute(self.model, h, targets, self.max_seq_len, method) if len(h) else np.zeros((len(targets), 0))
            spread = score_spread(self.model, h, self.max_seq_len)
        generator = generator or TemplateGenerator()
        domain = str(self.meta.get("domain") or "generic")
        shaping_query = query if query is not None and query_weight > 0 else None
        recent = tuple(self.item_info(int(i)) for i in h[-N_RECENT:])  # the user's latest items, for an LLM's text
        out = []
        for k, (rec, j, w) in enumerate(zip(recs, targets, weights, strict=True)):
            per_item: dict[int, float] = {}
            for item, a in zip(h.tolist(), w.tolist(), strict=True):  # an item seen twice: its parts add up
                if item != j:  # never cite the recommended item as its own reason
                    per_item[item] = per_item.get(item, 0.0) + a
            ranked = sorted(per_item.items(), key=lambda t: -t[1])
            if reasons is not None:  # occlusion: only the items that pass the test may be named
                named = {int(i) for i, r in zip(h.tolist(), reasons[k].tolist(), strict=True) if r and i != j}
                candidates = [(i, a) for i, a in ranked if i in named and a > 0]
                weak = bool(ranked) and not candidates
            else:
                candidates = ranked
                weak = bool(ranked) and is_weak(ranked[0][1], spread)
            strongest = candidates[0][1] if candidates else 0.0
            cited = [] if weak else [i for i, a in candidates[:n_reasons] if a > 0 and a >= CITE_SHARE * strongest]
            # the table: the largest weights, and every item the text cites (a group's item may rank lower)
            shown = ranked[:n_contributions] + [(i, a) for i, a in ranked[n_contributions:] if i in cited]
            contributions = [Contribution(self.raw_ids[i - 1], a, self.titles[i - 1]) for i, a in shown]
            causes = tuple(self.item_info(i) for i in cited)
            reason = Reason(self.item_info(j), causes, domain, query=shaping_query, weak=weak, history=recent)
            written = write_reason(generator, reason)
            cited_ids = tuple(self.raw_ids[i - 1] for i in cited)
            out.append(Explanation(rec, contributions, written.text, cited_ids, written.written_by, written.fallback))
        return out

    def item_info(self, item: str | int) -> ItemInfo:
        """Catalogue facts (`llmrec.explain.text.ItemInfo`) of a raw item id (str, ``item_info("50")``; unknown: an
        `UnknownIdError`) or, as before, of an internal index (int, 1-based, ``item_index[raw]``)."""
        from llmrec.explain.text import ItemInfo

        idx = self.item_index.get(item, -1) if isinstance(item, str) else item
        if isinstance(item, str) and idx < 0:
            raise UnknownIdError("item", [item])
        if isinstance(idx, bool) or not isinstance(idx, int | np.integer) or not 1 <= idx <= len(self.raw_ids):
            raise TypeError(f"item must be a raw item id (str) or an internal index 1..{len(self.raw_ids)}, got {item!r}")
        cats = self.items.row(int(idx) - 1, named=True).get("categories")  # list[str] | None
        return ItemInfo(self.raw_ids[idx - 1], self.titles[idx - 1], tuple(cats or ()))


def _warn_unknown(ignored: list[str], unknown_user: str | None, fallback: str | None) -> None:
    """`recommend`'s word on ids it could not use: one `UnknownIdWarning`, at the caller's line."""
    served = f"the {fallback} items (fallback: {fallback})" if fallback else "the model's scores of an empty history"
    notes = []
    if ignored:
        shown = ", ".join(ignored[:10]) + (" …" if len(ignored) > 10 else "")
        notes.append(f"ignored unknown item ids: {shown}" + (f"; no known item in the history: {served}" if fallback else ""))
    if unknown_user is not None:
        notes.append(f"unknown user id {unknown_user!r}: {served}")
    if notes:
        warnings.warn(
            "; ".join(notes) + " (strict=True, --strict on the command line, refuses unknown ids)", UnknownIdWarning, stacklevel=3
        )
