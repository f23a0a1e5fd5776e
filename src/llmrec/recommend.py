"""Recommender: load a model artifact directory and recommend from a user id or a list of raw item ids.

    rec = Recommender.load("runs/beauty/model")
    rec.recommend(history=["1", "5", "9"], k=10)   # -> list[Recommendation], none of 1, 5, 9
    rec.recommend(user="42", k=10, exclude_seen=False)  # re-purchase domains: history items may come back

Items already in the history are left out by default (``exclude_seen=True``): on ml-100k about half of an
unfiltered top-10 repeats the history. Evaluation chooses its protocol explicitly (``llmrec.eval.leave_one_out``).

Large catalogues: above ``ANN_THRESHOLD`` items (or when asked, ``load(path, ann="hnsw")`` / ``use_ann``), the
top-k come from a FAISS index over the item table (``llmrec.index.ann``): the model encodes the history, the
index returns candidates by inner product with the last hidden state, and the candidates are re-scored exactly
with the model's item table. Diversity re-ranks those candidates (the same max(100, 5k) pool as full scoring);
a ``query`` blend and ``adapt`` need the whole score row (the blend standardises over the catalogue) and fall
back to full scoring. The retrieval and re-ranking steps themselves are in `llmrec.retrieval`; this module keeps
the facade (loading, id mapping, state) and the explanation assembly.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from llmrec.arguments import check_histories, check_history, check_k, check_options
from llmrec.artifact import ANN_DIR, ann_dir, read_items_and_histories
from llmrec.data.sequences import pad_left
from llmrec.errors import UnknownIdError, artifact_file, read_json
from llmrec.eval.scoring import model_device, resolve_device, score_fn
from llmrec.meta.maml import UserAdapter, has_adapter
from llmrec.models import load_model  # re-exported: `from llmrec.recommend import load_model` keeps working
from llmrec.models.base import ItemEmbeddingModel, RecModel
from llmrec.results import Contribution, Explanation, Recommendation
from llmrec.retrieval import (
    ANN_MODES,
    ANN_THRESHOLD,
    N_CANDIDATES,
    ann_candidates,
    calibration_queries,
    diversity_features,
    item_table,
    item_text_embeddings,
    load_or_build_index,
    mmr_topk,
    popularity_scores,
    query_similarity,
)

if TYPE_CHECKING:
    from llmrec.explain.text import ItemInfo, TextGenerator
    from llmrec.index.ann import ItemIndex

__all__ = [
    "ANN_DIR",
    "ANN_MODES",
    "ANN_THRESHOLD",
    "Contribution",
    "Explanation",
    "Recommendation",
    "Recommender",
    "UnknownIdError",
    "load_model",
]


log = logging.getLogger("llmrec.recommend")

CITE_SHARE = 0.25  # explain(): a history item is cited as a reason when its attribution is >= this share of the top one


def _n_items(model: Any) -> int | None:
    """The catalogue size a loaded model was built for (None when it does not say)."""
    n = getattr(getattr(model, "config", None), "n_items", None)
    if n is None:
        n = getattr(model, "n_items", None)
    return None if n is None else int(n)


class Recommender:
    """Facade over a model artifact: raw ids in, ranked raw ids (with titles) out."""

    def __init__(self, model: RecModel, items: pl.DataFrame, histories: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.model = model
        self.items = items.sort("item_idx")
        self.raw_ids: list[str] = self.items["item"].to_list()
        self.titles: list[str | None] = self.items["title"].to_list()
        self.item_index = {raw: i + 1 for i, raw in enumerate(self.raw_ids)}
        self.histories = histories
        self.meta = meta
        self.max_seq_len = int(model.max_seq_len)
        # Intent queries (recommend(query=...)): the text encoder loads on the first query; item embeddings are
        # computed once (cached on disk in text_cache_dir, keyed by item text) and kept here.
        self.text_encoder: Any = None  # llmrec.index.text_encoder.TextEncoder; None = the default model, lazily
        self.text_cache_dir: Path | None = None  # None = <llmrec cache dir>/text-embeddings
        self._item_text_emb: torch.Tensor | None = None  # [V+1, E]
        self._diversity_features: tuple[np.ndarray, str] | None = None
        # Per-user adaptation (recommend(..., adapt=True)): the meta-trained adapter of a `llmrec meta-train` artifact.
        self.adapter: UserAdapter | None = None
        # Approximate retrieval for large catalogues (use_ann); None = score every item.
        self.ann: ItemIndex | None = None
        self.path: Path | None = None  # the artifact folder (set by `load`)
        self._popularity: torch.Tensor | None = None  # [V+1] events per item in the stored histories (empty history)

    @classmethod
    def load(
        cls, path: str | Path, *, ann: str = "auto", ann_threshold: int = ANN_THRESHOLD, device: str = "auto"
    ) -> Recommender:
        """Load an artifact folder. ann: "auto" | "off" | "flat" | "ivf" | "hnsw" (see `use_ann`); a saved index
        in ``<path>/ann`` is used when it matches. device: "auto" (default, as on the command line: CUDA when
        available, else the CPU) | "cpu" | "cuda"; "cuda" without a CUDA device is a ValueError. Scores come back
        on the CPU either way; ``adapt=True`` needs ``device="cpu"``."""
        path = Path(path)
        torch_device = resolve_device(device)
        model = load_model(path)
        if torch_device.type != "cpu" and isinstance(model, torch.nn.Module):
            model = model.to(torch_device)
        items, histories = read_items_and_histories(path, _n_items(model))
        meta = read_json(path / "dataset.json") if (path / "dataset.json").exists() else {}
        with artifact_file(path / "items.parquet"):  # columns the facade needs (item_idx, item, title)
            rec = cls(model, items, histories, meta)
        rec.path = path
        if has_adapter(path):
            read_json(path / "adapter.json")  # names the file when it is the JSON that is damaged
            with artifact_file(path / "adapter.safetensors"):
                rec.adapter = UserAdapter.from_pretrained(path)
        rec.use_ann(ann, threshold=ann_threshold, index_dir=ann_dir(path))
        return rec

    # ---- approximate retrieval -----------------------------------------------------------------------------
    def use_ann(
        self,
        mode: str = "auto",
        *,
        threshold: int = ANN_THRESHOLD,
        index_dir: str | Path | None = None,
        target_recall: float = 0.99,
    ) -> ItemIndex | None:
        """Retrieve top-k through a FAISS index instead of scoring every item; returns the index (None: off).

        mode: "off"; "auto" = an index of kind "auto" when the catalogue has more than `threshold` items and the
        model is a next-item LM (else off); "flat" | "ivf" | "hnsw" = that kind whatever the size. A saved index in
        `index_dir` is loaded when it was built from this model's item table (and is of the asked kind); otherwise
        one is built, its search parameter calibrated to `target_recall` recall@10 on the hidden states of up to
        1,000 stored users. The index is a snapshot of the item table: call again after changing the weights.
        """
        if mode not in ANN_MODES:
            raise ValueError(f"ann must be one of {', '.join(ANN_MODES)}; got {mode!r}")
        has_table = isinstance(self.model, ItemEmbeddingModel)
        if mode == "off" or (mode == "auto" and (not has_table or self.n_items <= threshold)):
            self.ann = None
            return None
        if not has_table:
            raise ValueError(
                f"ann={mode} needs a model with item embeddings (e.g. a next-item LM); this model is {type(self.model).__name__}"
            )
        if mode == "auto" and importlib.util.find_spec("faiss") is None:  # the optional extra is not installed
            log.warning("%d items but faiss is not installed (pip install 'llmrec[scale]'): scoring every item", self.n_items)
            self.ann = None
            return None
        assert isinstance(self.model, ItemEmbeddingModel)
        self.ann = load_or_build_index(
            self.model, mode, self._calibration_queries, index_dir=index_dir, target_recall=target_recall
        )
        return self.ann

    def _item_table(self) -> torch.Tensor:
        assert isinstance(self.model, ItemEmbeddingModel)
        return item_table(self.model)  # [V+1, D]

    def _calibration_queries(self, n: int = 1000, seed: int = 0) -> np.ndarray | None:
        """Last hidden states [Q, D] of up to n stored histories (seeded sample), the index's calibration queries."""
        if not isinstance(self.model, ItemEmbeddingModel):
            return None
        return calibration_queries(self.model, self.histories, self._padded, n, seed)

    @property
    def n_items(self) -> int:
        return len(self.raw_ids)

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
        exclude_seen: bool | Sequence[bool] = True,
        query: str | None = None,
        query_weight: float = 0.7,
        diversity: float = 0.0,
        adapt: bool = False,
    ) -> list[list[Recommendation]]:
        """Top-k for each internal-id history (`encode_history`'s arrays; an empty one gets the popularity
        fallback of `recommend`); `exclude_seen` for all rows or one flag per row (the service batches requests
        that differ in it into one forward pass).

        query: a natural-language intent blended with the personal scores (`llmrec.rerank.blend_query`, weight
        `query_weight`); the reported score is then the blended one. diversity: in [0, 1], re-rank the top
        candidates by maximal marginal relevance with λ = 1 − diversity (`llmrec.rerank.mmr`)."""
        histories, k = check_histories(histories), check_k(k)
        check_options(diversity, query_weight, query)
        excluded = [exclude_seen] * len(histories) if isinstance(exclude_seen, bool) else list(exclude_seen)
        if len(excluded) != len(histories):
            raise ValueError(f"exclude_seen has {len(excluded)} flags for {len(histories)} histories")
        empty = [i for i, h in enumerate(histories) if not len(h)]
        if self.ann is not None and not adapt and query is None and not empty:
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
        for i, (h, is_excluded) in enumerate(zip(histories, excluded, strict=True)):
            if is_excluded and len(h):
                scores[i, torch.from_numpy(h)] = float("-inf")
        if diversity > 0.0:
            values, indices = self._diversify(scores, k, 1.0 - diversity)
        else:
            values, indices = scores.topk(min(k, self.n_items), dim=1)
        return self._ranked(values, indices)

    def _ranked(self, values: torch.Tensor, indices: torch.Tensor) -> list[list[Recommendation]]:
        """Scores and item ids [B, K] (descending; -inf = nothing) -> Recommendations per row."""
        out = []
        for vals, idx in zip(values.tolist(), indices.tolist(), strict=True):
            recs = [
                Recommendation(self.raw_ids[j - 1], float(v), r + 1, self.titles[j - 1])
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
        exclude_seen: bool = True,
        query: str | None = None,
        query_weight: float = 0.7,
        diversity: float = 0.0,
        adapt: bool = False,
    ) -> list[Recommendation]:
        """Top-k items for a raw history (oldest first) or a known raw user id (options: see recommend_batch;
        adapt=True fits the artifact's per-user adapter to the history first: cold-start users).

        history is a list of raw item ids (str or int): ``history=["1113"]``; a bare string is a TypeError, never
        read as its characters. k is an int >= 1 (a bool or float is a TypeError). An empty history is allowed,
        here, on the command line (``--history ""``) and over HTTP alike: with nothing to go on, the items come
        ranked by popularity, their score the number of events with them in the artifact's stored histories
        (what ``most-popular`` would say); an artifact without stored histories falls back to the model's own
        scores of the empty context. exclude_seen and query / diversity apply as for any history.
        """
        h = self._history(history, user)
        return self.recommend_batch(
            [h], k, exclude_seen=exclude_seen, query=query, query_weight=query_weight, diversity=diversity, adapt=adapt
        )[0]

    def _history(self, history: list[str] | None, user: str | None) -> np.ndarray:
        if (history is None) == (user is None):
            raise ValueError("give exactly one of history= or user=")
        if history is None and isinstance(user, list | tuple):
            raise TypeError("user is one raw user id (str); for a list of item ids use history=[...]")
        return self.encode_history(history) if history is not None else self.user_history(str(user))

    def _retrieve(
        self, histories: list[np.ndarray], k: int, excluded: list[bool], diversity: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The index path of recommend_batch -> (scores, item ids) [B, K], like topk over the full scores
        (`llmrec.retrieval.ann_candidates`: index candidates re-scored exactly with the item table, sorted)."""
        assert self.ann is not None and isinstance(self.model, ItemEmbeddingModel)
        n_candidates = max(N_CANDIDATES, 5 * k) if diversity > 0.0 else k
        values, ids = ann_candidates(self.model, self.ann, self._padded(histories), histories, excluded, n_candidates)
        if diversity > 0.0:
            return self._mmr(values, ids, k, 1.0 - diversity)
        return values, ids

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
            self._item_text_emb = item_text_embeddings(self.items, domain, self.text_encoder, self.text_cache_dir)
        return query_similarity(query, self.text_encoder, self._item_text_emb)  # [V+1]

    # ---- explanations -------------------------------------------------------------------------------------
    def explain(
        self,
        *,
        history: list[str] | None = None,
        user: str | None = None,
        k: int = 5,
        exclude_seen: bool = True,
        query: str | None = None,
        query_weight: float = 0.7,
        diversity: float = 0.0,
        method: str = "occlusion",
        n_contributions: int = 5,
        n_reasons: int = 2,
        generator: TextGenerator | None = None,
    ) -> list[Explanation]:
        """Recommend (same options as recommend) and explain each item by the history items behind its score.

        The attribution is of the model's own score (a query blend or diversity re-ranking chooses among
        items, but the model's score is what the history drives). method: "occlusion" (exact) | "gradient".
        The text cites up to `n_reasons` history items: those with a positive attribution of at least
        CITE_SHARE of the strongest one (a distant second is not a reason). An item never explains itself:
        with exclude_seen=False a recommended item may be in the history, and its own occurrences are left out
        of the contributions and the text. When a query blended into the scores (query_weight > 0), the text
        says so. generator: an `llmrec.explain.text.TextGenerator` (default: the template generator).
        """
        return self.explain_history(
            self._history(history, user),
            k=k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            method=method,
            n_contributions=n_contributions,
            n_reasons=n_reasons,
            generator=generator,
        )

    def explain_history(
        self,
        h: np.ndarray,
        *,
        k: int = 5,
        exclude_seen: bool = True,
        query: str | None = None,
        query_weight: float = 0.7,
        diversity: float = 0.0,
        method: str = "occlusion",
        n_contributions: int = 5,
        n_reasons: int = 2,
        generator: TextGenerator | None = None,
    ) -> list[Explanation]:
        """`explain` for an internal-id history `h` (1-D int64, oldest first), as `recommend_batch` takes: the
        service's path, which has already encoded and checked the ids."""
        from llmrec.explain.attribution import attribute, is_weak, score_spread
        from llmrec.explain.text import Reason, TemplateGenerator

        recs = self.recommend_batch(
            [h], k, exclude_seen=exclude_seen, query=query, query_weight=query_weight, diversity=diversity
        )[0]
        if not recs:
            return []
        targets = [self.item_index[r.item_id] for r in recs]
        if self.device.type != "cpu" and method != "occlusion":
            raise ValueError(f"method={method!r} runs on the CPU: load the model with device='cpu' or use occlusion")
        # [K, T] (occlusion runs on the model's device); an empty history has nothing to attribute to
        weights = attribute(self.model, h, targets, self.max_seq_len, method) if len(h) else np.zeros((len(targets), 0))
        spread = score_spread(self.model, h, self.max_seq_len)  # an attribution below MIN_STRENGTH of it names nothing
        generator = generator or TemplateGenerator()
        domain = str(self.meta.get("domain") or "generic")
        shaping_query = query if query is not None and query_weight > 0 else None
        out = []
        for rec, j, w in zip(recs, targets, weights, strict=True):
            per_item: dict[int, float] = {}
            for item, a in zip(h.tolist(), w.tolist(), strict=True):  # an item seen twice: its parts add up
                if item != j:  # never cite the recommended item as its own reason
                    per_item[item] = per_item.get(item, 0.0) + a
            ranked = sorted(per_item.items(), key=lambda t: -t[1])
            contributions = [Contribution(self.raw_ids[i - 1], a, self.titles[i - 1]) for i, a in ranked[:n_contributions]]
            strongest = ranked[0][1] if ranked else 0.0
            weak = bool(ranked) and is_weak(strongest, spread)
            cited = [] if weak else [i for i, a in ranked[:n_reasons] if a > 0 and a >= CITE_SHARE * strongest]
            causes = tuple(self.item_info(i) for i in cited)
            reason = Reason(item=self.item_info(j), causes=causes, domain=domain, query=shaping_query, weak=weak)
            text = generator.generate(reason)
            out.append(Explanation(rec, contributions, text))
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
