"""Fitting a sequence model on a PreparedDataset: item features, validation and selection + refit.

`fit` builds a model of any type the generic loop trains (default the next-item LM) sized for the dataset and fits
it with `llmrec.training.refit.select_then_refit`, the recipe every trainable model shares (the T5's is
`llmrec.training.semantic.fit_t5_semantic`). The model artifact
format is `llmrec.artifact` (`save_artifact` is re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from llmrec import artifact
from llmrec.artifact import save_artifact
from llmrec.data.dataset import PreparedDataset
from llmrec.data.sequences import prefix_examples, training_windows
from llmrec.eval.evaluate import compute_ranks
from llmrec.eval.metrics import summarize
from llmrec.eval.scoring import ScoreFn, score_fn
from llmrec.index.text_encoder import (
    SentenceTransformerEncoder,
    TextEncoder,
    encode_items,
    item_texts,
)
from llmrec.index.text_store import write_item_text
from llmrec.models.base import RecModel, Trainable
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
from llmrec.models.spec import DatasetMeta, ModelSpec, sized
from llmrec.training import distributed
from llmrec.training.loop import Callback, TrainConfig, TrainResult
from llmrec.training.refit import select_then_refit

__all__ = [
    "DERIVED_MODEL_KEYS",
    "ScoreFn",
    "attribute_matrix",
    "build_model",
    "check_examples",
    "check_model_params",
    "dataset_meta",
    "examples_for",
    "fit",
    "fit_spec",
    "make_score_fn",
    "save_artifact",
    "resolve_item_text",
    "store_item_text",
    "text_encoder_for",
    "validation_evaluator",
]


def attribute_matrix(items: pl.DataFrame, max_attributes: int = 8) -> tuple[torch.Tensor, list[str]]:
    """Item categories as an id matrix [V+1, A] (0 = none) and the vocabulary (id i ↔ vocab[i-1])."""
    cats: list[list[str] | None] = items.sort("item_idx")["categories"].to_list()
    vocab = sorted({c for cs in cats if cs for c in cs})
    index = {c: i + 1 for i, c in enumerate(vocab)}
    width = max(1, min(max_attributes, max((len(cs) for cs in cats if cs), default=1)))
    mat = torch.zeros(len(cats) + 1, width, dtype=torch.long)
    for row, cs in enumerate(cats, start=1):
        for j, c in enumerate((cs or [])[:width]):
            mat[row, j] = index[c]
    return mat, vocab


# NextItemLMConfig fields that preparation and feature building set from the data; a user never sets them.
DERIVED_MODEL_KEYS = ("n_items", "n_attributes", "max_item_attributes", "text_dim")


def check_model_params(params: dict[str, Any]) -> None:
    """Refuse derived sizes (naming the key and what to use instead) and an `item_text` that names no encoder."""
    for key in DERIVED_MODEL_KEYS:
        if key in params:
            hint = {"text_dim": "; use model.item_text = true to add item text", "n_items": ""}.get(
                key, "; use model.use_attributes = true to add item categories"
            )
            raise ValueError(f"model.{key} is derived from the data and cannot be set{hint}")
    if "item_text" in params:
        value = params["item_text"]
        named = isinstance(value, str) and (value in ("auto", "minilm", "llm") or Path(value).expanduser().exists())
        if not isinstance(value, bool) and not named:
            raise ValueError(
                'model.item_text: expected true/false, "auto", "minilm", "llm" or the path of a text encoder '
                f"(a sentence-transformers or causal-LM folder, or a .gguf file), got {value!r}"
            )


# ``item_text = "auto"``: the catalogue's text is read when at least this share of its items has a title or text.
TEXT_AUTO_SHARE = 0.5


def titled_share(items: pl.DataFrame) -> float:
    """The share of catalogue rows with a non-empty title or text."""
    if items.height == 0:
        return 0.0
    has = pl.lit(False)
    for column in ("title", "text"):
        if column in items.columns:
            has = has | (pl.col(column).is_not_null() & (pl.col(column).cast(pl.Utf8).str.strip_chars() != ""))
    return float(items.select(has.fill_null(False).mean()).item())


def resolve_item_text(setting: bool | str, dataset: PreparedDataset) -> bool | str:
    """``[model] item_text`` for `dataset`: ``"auto"`` becomes ``"minilm"`` (the packaged
    all-MiniLM-L6-v2 reads each item's title / text) when at least `TEXT_AUTO_SHARE` of the catalogue has some, else
    false (ids and categories only); any other setting is kept. Not TV-Rec's default: on Beauty the titles raised
    its validation NDCG@10 by 1.4% (3 seeds), on ml-100k they lowered it by 1.7% (3 seeds; docs/benchmarks.md)."""
    if setting != "auto":
        return setting
    return "minilm" if titled_share(dataset.items) >= TEXT_AUTO_SHARE else False


def text_encoder_for(setting: bool | str) -> TextEncoder | None:
    """The item text encoder a ``[model] item_text`` setting names: false -> None (no text); true or "minilm" ->
    the packaged all-MiniLM-L6-v2; "llm" -> the packaged LLM (SmolLM2-135M-Instruct) read as an encoder
    (`llmrec.index.llm.LLMEncoder`); a path -> a sentence-transformers folder (it has ``modules.json``), else a
    causal-LM folder or ``.gguf`` file read as an encoder. Nothing is loaded until the first text is encoded."""
    if setting is False:
        return None
    if setting == "auto":
        raise ValueError('model.item_text = "auto" is resolved against a dataset first (resolve_item_text)')
    if setting is True or setting == "minilm":
        return SentenceTransformerEncoder()
    from llmrec.index.llm import LLMEncoder

    if setting == "llm":
        return LLMEncoder()
    path = Path(setting).expanduser()
    if (path / "modules.json").is_file():
        return SentenceTransformerEncoder(path)
    if not path.exists():
        raise ValueError(f'model.item_text: {path}: no such encoder folder or .gguf file (or use true, "llm")')
    return LLMEncoder(path)


def dataset_meta(
    dataset: PreparedDataset,
    *,
    use_attributes: bool = False,
    use_text: bool = False,
    text_encoder: TextEncoder | None = None,
    text_cache_dir: str | Path | None = None,
) -> DatasetMeta:
    """What a model is built from (`llmrec.models.spec.DatasetMeta`): the catalogue size, the item popularity,
    and when asked the item categories and the items' frozen text embeddings (`text_encoder`, default the
    packaged all-MiniLM-L6-v2, cached in `text_cache_dir`, default ``<llmrec cache>/text-embeddings``)."""
    if use_text and not dataset.items.select(pl.col("title").is_not_null() | pl.col("text").is_not_null()).to_series().any():
        raise ValueError(
            "model.item_text = true needs item text, but no item of the dataset has a title or text: prepare it "
            "with a catalogue (--items FILE, mapped with --item-columns title=...,text=...)"
        )
    attrs, vocab = attribute_matrix(dataset.items) if use_attributes else (None, [])
    text = None
    if use_text:
        encoder = text_encoder if text_encoder is not None else SentenceTransformerEncoder()
        cache = artifact.text_cache_dir(text_cache_dir)
        text = torch.from_numpy(encode_items(dataset.items, dataset.domain, encoder, cache))  # [V+1, text_dim]
    return DatasetMeta(dataset.n_items, attrs, tuple(vocab), text, dataset.item_popularity())


def build_model(
    dataset: PreparedDataset,
    params: dict[str, Any] | None = None,
    *,
    use_attributes: bool = False,
    use_text: bool = False,
    text_encoder: TextEncoder | None = None,
    text_cache_dir: str | Path | None = None,
    seed: int = 0,
) -> tuple[NextItemLM, list[str]]:
    """A NextItemLM sized for `dataset` (n_items and feature sizes come from the data, the rest from params).

    use_text (or ``item_text = true`` in params, the [model] key): add frozen text embeddings of the catalogue
    (see `dataset_meta`); they travel in the model's state dict. Sizes that come from the data
    (`DERIVED_MODEL_KEYS`) cannot be given in params.
    """
    params = dict(params or {})
    check_model_params(params)
    text = resolve_item_text(params.pop("item_text", False), dataset)
    use_text = bool(text) or use_text
    if text_encoder is None and text:
        text_encoder = text_encoder_for(text)
    meta = dataset_meta(
        dataset, use_attributes=use_attributes, use_text=use_text, text_encoder=text_encoder, text_cache_dir=text_cache_dir
    )
    torch.manual_seed(seed)
    model = NextItemLM.build(sized(NextItemLMConfig(n_items=dataset.n_items, **params), meta), meta)
    return model, list(meta.attribute_vocab)


def store_item_text(
    model: RecModel, dataset: PreparedDataset, out: str | Path, *, text_encoder: TextEncoder | None = None
) -> bool:
    """When `model` reads item text (``model.item_text = true``), store the catalogue's text embeddings it was built
    with in the artifact `out` (`llmrec.index.text_store`), so a query encodes only itself. `text_encoder`: the
    encoder `build_model` used (default the packaged all-MiniLM-L6-v2); only its name is read. False: no item text."""
    text = getattr(model, "item_text", None)
    if not int(getattr(getattr(model, "config", None), "text_dim", 0) or 0) or not isinstance(text, torch.Tensor):
        return False
    encoder = text_encoder if text_encoder is not None else SentenceTransformerEncoder()
    write_item_text(out, text.detach().cpu().numpy(), encoder.name, item_texts(dataset.items, dataset.domain))
    return True


def make_score_fn(model: RecModel) -> ScoreFn:
    """`llmrec.eval.scoring.score_fn(model)` (kept under its older name)."""
    return score_fn(model)


def validation_evaluator(
    dataset: PreparedDataset, ks: Sequence[int] = (10, 20), *, exclude_seen: bool = True
) -> Callable[[RecModel], dict[str, float]]:
    """Full-ranking metrics on the validation targets (never the test targets), for early stopping.

    exclude_seen: the user's history items are not ranked (the default, as `Recommender.recommend` serves them and
    as the published tables score them; `TrainConfig.valid_exclude_seen`).

    Under data-parallel training each rank ranks its share of the users and the ranks are gathered, so every
    process computes the same metrics as a single process would.
    """
    ex = dataset.eval_examples("valid")

    def evaluate(model: RecModel) -> dict[str, float]:
        ctx = distributed.current()
        part = distributed.shard_rows(len(ex.targets), ctx)
        local = compute_ranks(score_fn(model), ex.histories[part], ex.targets[part], exclude_seen=exclude_seen)
        ranks = np.asarray(distributed.gather_in_order(local.tolist(), len(ex.targets), ctx), dtype=local.dtype)
        m = summarize(ranks, ks)
        return {k: m[k] for k in m if k.startswith(("ndcg@", "recall@"))}

    return evaluate


def examples_for(sequences: Sequence[np.ndarray], max_seq_len: int, kind: str) -> list[np.ndarray]:
    """Training examples of `kind` (``train.examples``): causal windows or one-target prefixes."""
    if kind == "prefixes":
        return prefix_examples(sequences, max_seq_len)
    return training_windows(sequences, max_seq_len)


def check_examples(spec: ModelSpec, kind: str) -> None:
    """Refuse ``train.examples = kind`` for a model that does not train on them (`ModelSpec.examples`)."""
    if kind not in spec.examples:
        raise ValueError(
            f"train.examples = {kind!r}: {spec.model_type} trains on {' or '.join(repr(e) for e in spec.examples)} only"
            + ("; it is not causal and trains on one target per example" if spec.examples == ("prefixes",) else "")
        )


def fit_spec(
    spec: ModelSpec,
    dataset: PreparedDataset,
    config: Any,
    train_config: TrainConfig,
    *,
    use_attributes: bool = False,
    use_text: bool = False,
    text_encoder: TextEncoder | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    selected_epoch: int | None = None,
) -> tuple[RecModel, TrainResult, list[str]]:
    """The generic fit of every neural model: `spec.build` from `config` (the spec's typed config, checked when
    the settings were read) sized from the dataset's metadata, then selection on validation and refit
    (`select_then_refit`). Returns the model, the selection run's result and the attribute vocabulary."""
    check_examples(spec, train_config.examples)
    assert spec.build is not None  # a spec with its own fit never comes here
    make = spec.build
    meta = dataset_meta(
        dataset,
        use_attributes=use_attributes and spec.features,
        use_text=use_text and spec.features,
        text_encoder=text_encoder,
    )
    sized_config = sized(config, meta)  # the derived sizes, checked again with the rest

    def build(sequences: list[np.ndarray]) -> tuple[Trainable, list[np.ndarray]]:
        torch.manual_seed(train_config.seed)
        model = make(sized_config, meta)
        assert isinstance(model, Trainable)
        return model, examples_for(sequences, model.max_seq_len, train_config.examples)

    validate = validation_evaluator(dataset, exclude_seen=train_config.valid_exclude_seen)

    def evaluate(model: Trainable) -> dict[str, float]:
        assert isinstance(model, RecModel)
        return validate(model)

    model, result = select_then_refit(
        build,
        dataset,
        train_config,
        evaluate=evaluate,
        run_dir=run_dir,
        resume=resume,
        callbacks=callbacks,
        selected_epoch=selected_epoch,
    )
    assert isinstance(model, RecModel)
    return model, result, list(meta.attribute_vocab)


def fit(
    dataset: PreparedDataset,
    params: dict[str, Any] | None,
    train_config: TrainConfig,
    *,
    model: str = "next-item-lm",
    use_attributes: bool = False,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    selected_epoch: int | None = None,
) -> tuple[RecModel, TrainResult, list[str]]:
    """Build a model of type `model` (any registry type trained by the generic loop: its spec declares a config
    and a `build`) for `dataset`, select its epoch count on validation and refit (`fit_spec`).

    Returns the model (best weights; the refit model with ``refit_on_valid``), the selection run's result and the
    attribute vocabulary. selected_epoch: skip the selection run and train that many epochs (as the T5 can).
    """
    from llmrec.models import model_spec

    spec = model_spec(model)
    if spec.config is None or spec.build is None or spec.fit is not None:
        raise ValueError(f"model {model!r} is not trained by the generic loop (it has its own fit)")
    params = dict(params or {})
    check_model_params(params)
    text = resolve_item_text(params.pop("item_text", spec.text_default), dataset)
    config = spec.config(n_items=dataset.n_items, **params)
    return fit_spec(
        spec,
        dataset,
        config,
        train_config,
        use_attributes=use_attributes,
        use_text=bool(text),
        text_encoder=text_encoder_for(text),
        run_dir=run_dir,
        resume=resume,
        callbacks=callbacks,
        selected_epoch=selected_epoch,
    )
