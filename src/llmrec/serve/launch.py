"""Starting the service: its settings, the app of one process or of each uvicorn worker, and the saved ANN index.

``llmrec serve`` and ``llmrec build-index`` are thin doors over this module:

- `ServeSettings` holds what a serving process needs (the artifact, retrieval mode, batching and limits, the *name*
  of the environment variable holding the API key, never the key). It travels to uvicorn worker processes as JSON
  (``to_json`` / ``from_json``): with ``--workers N`` uvicorn imports the app factory by name in each process.
- `prepare_serving` checks the settings and loads the model once (a bad folder fails before any port is bound);
  `build_app` is the app of one process, from settings (what each worker runs) or from a loaded recommender.
- `build_index` builds the approximate-retrieval index of an artifact and saves it in ``<model>/ann``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmrec.serve.app import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, create_app
from llmrec.serve.limits import ServeLimits

if TYPE_CHECKING:
    from fastapi import FastAPI

    from llmrec.index.ann import IndexInfo
    from llmrec.recommend import Recommender

__all__ = [
    "INDEX_KINDS",
    "Prepared",
    "ServeSettings",
    "api_key_from_env",
    "build_app",
    "build_index",
    "load_recommender",
    "prepare_serving",
]

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
_NO_TEXT_ENCODER = "the text encoder is not installed (pip install 'llmrec[text]')"


@dataclass(frozen=True)
class ServeSettings:
    """One serving process's settings (see `llmrec.serve.app.create_app` and `Recommender.load` for each)."""

    model: str
    ann: str = "auto"
    ann_threshold: int = 200_000
    device: str = "auto"
    api_key_env: str | None = None  # the variable's name; the key stays in the environment
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    queries: bool | None = None
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    # cost limits and the options lane (`llmrec.serve.limits.ServeLimits`)
    max_diverse_k: int = ServeLimits.max_diverse_k
    max_explain_k: int = ServeLimits.max_explain_k
    max_explained: int = ServeLimits.max_explained
    max_option_requests: int = ServeLimits.max_option_requests
    max_groups: int = ServeLimits.max_groups
    options_queue: int = ServeLimits.options_queue
    options_timeout: float = ServeLimits.options_timeout
    llm_text: bool = False  # requests may ask for reasons written by the LLM (`create_app`)
    threads: int = 0  # torch threads of each model thread; 0 = the default, one (`llmrec.serve.service.model_threads`)

    def limits(self) -> ServeLimits:
        """The cost limits (a ValueError naming the field when one is out of range)."""
        return ServeLimits(
            max_diverse_k=self.max_diverse_k,
            max_explain_k=self.max_explain_k,
            max_explained=self.max_explained,
            max_option_requests=self.max_option_requests,
            max_groups=self.max_groups,
            options_queue=self.options_queue,
            options_timeout=self.options_timeout,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))


def api_key_from_env(name: str | None) -> str | None:
    """The API key held by environment variable `name` (None: no key); an unset or empty variable is a ValueError."""
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key:
        raise ValueError(f"--api-key-env {name}: that environment variable is not set or is empty")
    return key


def load_recommender(model: str | Path, ann: str = "auto", ann_threshold: int = 200_000, device: str = "cpu") -> Recommender:
    """Recommender.load with an ANN mode; a missing faiss is a ValueError here (it is an optional extra)."""
    from llmrec.recommend import Recommender

    try:
        return Recommender.load(model, ann=ann, ann_threshold=ann_threshold, device=device)
    except ImportError as e:
        raise ValueError(f"--ann {ann}: {e}") from None


def build_app(settings: ServeSettings, recommender: Recommender | None = None) -> FastAPI:
    """The app of one serving process: `recommender`, or the model of `settings` loaded here (a uvicorn worker)."""
    from llmrec.serve.service import model_threads

    if recommender is None:
        recommender = load_recommender(settings.model, settings.ann, settings.ann_threshold, settings.device)
    return create_app(
        recommender,
        api_key=api_key_from_env(settings.api_key_env),
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        max_body_bytes=settings.max_body_bytes,
        queries=settings.queries,
        limits=settings.limits(),
        body_timeout=settings.body_timeout,
        thread_init=model_threads(settings.threads),
        llm_text=settings.llm_text,
    )


@dataclass(frozen=True)
class Prepared:
    """What `prepare_serving` made: the settings with `queries` decided, the app (None with several workers: each
    builds its own from the settings), and lines worth telling the operator."""

    settings: ServeSettings
    app: FastAPI | None
    notes: list[str] = field(default_factory=list)


def prepare_serving(settings: ServeSettings, *, workers: int = 1) -> Prepared:
    """Check `settings` and load the model once: the app itself for one process, the checked settings for several.

    queries None becomes False when the text encoder is not installed (with a note); True without it is a
    ValueError. The model is loaded even for several workers, so that a bad folder fails before a port is bound.
    """
    from llmrec.index.text_encoder import default_encoder_available

    api_key_from_env(settings.api_key_env)  # an unset variable fails first
    settings.limits()  # and so does a limit out of range
    if not settings.body_timeout > 0:
        raise ValueError(f"--body-timeout must be > 0, got {settings.body_timeout}")
    notes: list[str] = []
    if not default_encoder_available():
        if settings.queries:
            raise ValueError(f"--queries: {_NO_TEXT_ENCODER}, or use --no-queries")
        if settings.queries is None:
            notes.append(f"queries are off: {_NO_TEXT_ENCODER}")
            settings = dataclasses.replace(settings, queries=False)
    recommender = load_recommender(settings.model, settings.ann, settings.ann_threshold, settings.device)
    if recommender.ann is not None:
        notes.append(f"retrieval through {recommender.ann!r}")
    app = build_app(settings, recommender) if workers == 1 else None
    return Prepared(settings, app, notes)


def build_index(model: Path, kind: str = "auto", *, target_recall: float = 0.99, threads: int = 0) -> IndexInfo:
    """Build the approximate-retrieval index of the artifact `model` (a model with item embeddings) and save it to
    ``<model>/ann`` atomically, where `Recommender.load` finds it. threads: FAISS threads (0 = all cores)."""
    from llmrec.artifact import ann_dir
    from llmrec.atomic import atomic_directory

    if kind not in INDEX_KINDS:
        raise ValueError(f"--kind must be auto, flat, ivf or hnsw; got {kind!r}")
    if threads < 0:
        raise ValueError(f"--threads must be >= 0 (0 = all cores), got {threads}")
    rec = load_recommender(model, "off", 0)
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    index = rec.use_ann(kind, threshold=0, target_recall=target_recall)
    if index is None:
        raise ValueError(f"{model}: an index needs a next-item LM artifact (item embeddings)")
    with atomic_directory(ann_dir(model), kind="index") as tmp:
        index.save(tmp)
    return index.info
