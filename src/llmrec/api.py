"""Training and evaluation from Python in one call each, with exactly the command line's defaults.

    import llmrec
    rec = llmrec.train("ml-100k", out="runs/ml100k", epochs=3)      # == llmrec train --dataset ml-100k --epochs 3
    rec.recommend(user="7", k=10)
    report = llmrec.evaluate(rec, n_boot=200)                        # == llmrec evaluate --model runs/ml100k

`llmrec.train` is the same code path as ``llmrec train`` (``llmrec.experiment.train_model``, attributes on, the
TOML/override precedence of ``llmrec.config``); `llmrec.evaluate` is a thin wrapper over
``llmrec.experiment.evaluate_model``, the function behind ``llmrec evaluate``.

`train` here is ``llmrec.train``, a plain function; the training machinery it drives is ``llmrec.training``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import weakref
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.models import DEFAULT_MODEL  # the registry only: no torch

if TYPE_CHECKING:
    from llmrec.data import PrepareConfig, PreparedDataset
    from llmrec.recommend import Recommender

__all__ = ["evaluate", "prepare", "split_overrides", "train"]

FRAME_NAME = "dataframe"  # the prepared dataset's name when events come as a DataFrame and no name is given


def split_overrides(overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Keyword overrides -> config sections.

    ``section__key=value`` names the section (``train__lr=1e-3``, ``model__d_model=32``); a bare key goes to
    ``[train]`` when it is a TrainConfig field (``epochs=3``, ``lr=1e-3``) and to ``[model]`` otherwise
    (``d_model=32``, ``use_attributes=False``). Unknown keys are refused later, by name, as with ``--set``.
    """
    from llmrec.training.loop import TrainConfig

    train_keys = {f.name for f in fields(TrainConfig)}
    out: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, sep, name = key.partition("__")
        if not sep:
            section, name = ("train" if key in train_keys else "model"), key
        if not section or not name:
            raise ValueError(f"override {key!r}: expected key=value or section__key=value, e.g. train__lr=1e-3")
        out.setdefault(section, {})[name] = value
    return out


def prepare(
    events: Any,
    config: PrepareConfig | None = None,
    *,
    out: str | Path | None = None,
    items: Any = None,
    columns: dict[str, str | None] | str | None = None,
    item_columns: dict[str, str | None] | str | None = None,
    name: str | None = None,
    domain: str | None = None,
    source: dict[str, Any] | None = None,
) -> PreparedDataset:
    """Prepare events given as a pandas or Polars DataFrame (or `RawData`, as `llmrec.data.prepare` takes) into a
    `PreparedDataset`, saved to `out` when given (atomically, as ``llmrec data prepare --out``).

    items: an optional catalogue DataFrame. columns / item_columns: the CLI's ``--columns`` / ``--item-columns``
    as a dict (``{"user": "uid", "item": "sku", "time": "ts"}``; None: no such column) or the same text; the
    frames are read in memory with the file readers' defaults and checks (`llmrec.data.frames`), nothing written.
    config: a `PrepareConfig` (filters, split); default: leave-one-out, no filters.
    """
    from llmrec.data import prepare as prepare_raw
    from llmrec.data.frames import is_frame, raw_from_frames
    from llmrec.data.tables import RawData

    if isinstance(events, RawData):
        if items is not None or columns is not None or item_columns is not None:
            raise ValueError("items=, columns= and item_columns= go with a DataFrame of events, not with RawData")
        raw = events
    elif is_frame(events):
        raw = raw_from_frames(events, items=items, columns=columns, item_columns=item_columns, domain=domain)
        source = source or {"format": "dataframe"}
        name = name or FRAME_NAME
    else:
        raise TypeError(f"events must be a pandas or Polars DataFrame (or RawData), not {type(events).__name__}")
    if domain is not None:
        raw.domain = domain
    prepared = prepare_raw(raw, config, source=source, name=name)
    if out is not None:
        from llmrec.data.auto import check_out_dir

        check_out_dir(Path(out))
        prepared.save(Path(out))
    return prepared


def train(
    dataset: Any,
    out: str | Path | None = None,
    config: str | Path | dict[str, dict[str, Any]] | None = None,
    *,
    items: Any = None,
    columns: dict[str, str | None] | str | None = None,
    item_columns: dict[str, str | None] | str | None = None,
    model: str = DEFAULT_MODEL,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    force: bool = False,
    threads: int = 0,
    **overrides: Any,
) -> Recommender:
    """Train a model as ``llmrec train`` does and return it as a loaded `Recommender`.

    dataset: a prepared dataset folder, or a registry name (prepared with the defaults, as the CLI does: into
    ``<out>/../<name>-data``, or ``<cache dir>/prepared/<name>-data`` without `out`), or a pandas / Polars
    DataFrame of events (with `items`, `columns`, `item_columns` as in `prepare`; prepared with the defaults into
    ``<cache dir>/prepared/dataframe-<key>-data``, one folder per `out` (never beside the model: the folder next to
    it is the user's), or inside the temporary folder without `out`; the model's ``dataset.json`` records where,
    so ``llmrec.evaluate(rec)`` finds it). out: the artifact folder
    to write; None keeps the artifact in a temporary folder removed with the returned Recommender. config: a TOML
    file path or a dict of sections ``{"model": {...}, "train": {...}}``. overrides: see `split_overrides`; they
    win over `config`. model: a training name of `llmrec.models.training_names` (default `DEFAULT_MODEL`, tvrec with
    its recipe; next-item-lm, sasrec, bsarec, most-popular, item-knn, t5-semantic). Every setting is
    checked before anything is read or written, and a run whose estimated peak memory exceeds what the machine
    has is refused (`llmrec.training.memory`); force: train anyway. threads: torch threads for the training run
    (``llmrec train --threads``; the setting ``train.num_threads``); 0 leaves torch's default.
    """
    from llmrec.arguments import check_path
    from llmrec.config import load_toml, merge_sections
    from llmrec.data.frames import is_frame
    from llmrec.data.registry import cache_dir
    from llmrec.eval.popularity import warn_below_popularity
    from llmrec.experiment import check_settings, open_dataset_once, train_model
    from llmrec.recommend import Recommender
    from llmrec.training import distributed

    frame = is_frame(dataset)
    if not frame:
        check_path(dataset, "dataset")
        if items is not None or columns is not None or item_columns is not None:
            raise ValueError("items=, columns= and item_columns= go with a DataFrame of events as dataset=")
    check_path(out, "out", optional=True)
    if not isinstance(model, str):
        raise TypeError(f"model must be a training name (str), e.g. 'next-item-lm', not {type(model).__name__}")
    if config is not None and not isinstance(config, dict):
        check_path(config, "config")
    if isinstance(config, dict):
        file_sections = {str(s): dict(v) for s, v in config.items()}
    else:
        file_sections = load_toml(config) if config is not None else {}
    sections = merge_sections(file_sections, split_overrides(overrides))
    if threads:
        _check_threads(threads)
        sections.setdefault("train", {})["num_threads"] = threads
    run = check_settings(model, sections, progress=progress)  # before a folder is made or a dataset prepared
    temporary = out is None
    out_dir = Path(tempfile.mkdtemp(prefix="llmrec-model-")) / "model" if out is None else Path(out)
    if not temporary:  # as `llmrec train --out`: refused before any work, never a folder llmrec did not write
        from llmrec.outputs import check_folder

        inputs = {} if frame else {"dataset": dataset}
        out_dir = check_folder(out_dir, "model", inputs=inputs, option="out")
    name = FRAME_NAME if frame else str(dataset)
    prepared_root = (cache_dir() / "prepared" if temporary else out_dir.parent) / f"{Path(name).name}-data"
    if frame:  # in memory, the user named no folder for it: none appears beside the model
        key = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:12]
        prepared_root = (
            out_dir.parent / f"{FRAME_NAME}-data" if temporary else cache_dir() / "prepared" / f"{FRAME_NAME}-{key}-data"
        )
    if frame:  # read and checked in memory (no file of the user's), then saved where training reads it
        prepare(dataset, out=prepared_root, items=items, columns=columns, item_columns=item_columns)
        name = str(prepared_root)
    try:
        distributed.init_from_env(device)
        try:
            prepared, prepared_dir = open_dataset_once(name, prepared_root)  # rank 0 prepares, the others wait
            summary = train_model(prepared, prepared_dir, run, out_dir, resume=resume, force=force)
        finally:
            distributed.shutdown()
        rec = Recommender.load(out_dir, device=device)
        warn_below_popularity(summary.get("warnings") or ())
    except BaseException:
        if temporary:
            shutil.rmtree(out_dir.parent, ignore_errors=True)
        raise
    if temporary:
        weakref.finalize(rec, shutil.rmtree, out_dir.parent, True)  # the folder lives as long as the Recommender
    return rec


def _check_threads(threads: int) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= 4096:
        raise ValueError(f"threads must be an int in 0..4096 (0 = torch's default), got {threads!r}")


def evaluate(
    model: Recommender | str | Path, dataset: str | Path | None = None, *, threads: int = 0, **options: Any
) -> dict[str, Any]:
    """Full-ranking evaluation of a trained model; returns the report dict that ``llmrec evaluate --out`` writes.

    model: a `Recommender` (from `train` or `Recommender.load`) or an artifact folder. dataset: a prepared
    dataset folder or a registry name; default: the one the model was trained on. A dataset the model was not
    trained on is refused with a ValueError (as ``llmrec evaluate`` refuses it). options: passed on to
    ``llmrec.experiment.evaluate_model`` (e.g. ``n_boot=200``, ``splits=("test",)``, ``ks=(10,)``,
    ``sampled_negatives=100``, ``baseline_dir=...``, ``progress=True``, ``device="cpu"``; device defaults to
    "auto", as on the command line). threads: torch threads while evaluating (``llmrec evaluate --threads``),
    restored afterwards; 0 leaves them.
    """
    from llmrec.arguments import check_path
    from llmrec.eval.popularity import warn_below_popularity
    from llmrec.experiment import evaluate_model
    from llmrec.identity import dataset_for_model

    if not hasattr(model, "recommend"):
        check_path(model, "model (a Recommender or an artifact folder)")
    check_path(dataset, "dataset", optional=True)
    model_dir = getattr(model, "path", None) if not isinstance(model, (str, Path)) else Path(model)
    if model_dir is None:
        raise ValueError("this Recommender was not loaded from an artifact folder; pass the folder instead")
    # The same resolution and model/dataset identity check as `llmrec evaluate`: never scores other data.
    prepared = dataset_for_model(model_dir, dataset, option="dataset=")
    _check_threads(threads)
    import torch

    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        report = evaluate_model(model_dir, prepared, **options)
    finally:
        torch.set_num_threads(before)
    warn_below_popularity(report.get("warnings") or ())  # also in report["warnings"]
    return report
