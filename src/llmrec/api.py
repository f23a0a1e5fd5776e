"""Training and evaluation from Python in one call each, with exactly the command line's defaults.

    import llmrec
    rec = llmrec.train("ml-100k", out="runs/ml100k", epochs=3)      # == llmrec train --dataset ml-100k --epochs 3
    rec.recommend(user="7", k=10)
    report = llmrec.evaluate(rec, n_boot=200)                        # == llmrec evaluate --model runs/ml100k

`llmrec.train` is the same code path as ``llmrec train`` (``llmrec.experiment.train_model``, attributes on, the
TOML/override precedence of ``llmrec.config``); `llmrec.evaluate` is a thin wrapper over
``llmrec.experiment.evaluate_model``, the function behind ``llmrec evaluate``.

``llmrec.train`` is also the name of the training subpackage (``llmrec.train.fit``, ``llmrec.train.TrainConfig``);
the package is callable and calling it runs `train` below, so the name works whatever was imported first.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.recommend import Recommender

__all__ = ["evaluate", "split_overrides", "train"]


def split_overrides(overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Keyword overrides -> config sections.

    ``section__key=value`` names the section (``train__lr=1e-3``, ``model__d_model=32``); a bare key goes to
    ``[train]`` when it is a TrainConfig field (``epochs=3``, ``lr=1e-3``) and to ``[model]`` otherwise
    (``d_model=32``, ``use_attributes=False``). Unknown keys are refused later, by name, as with ``--set``.
    """
    from llmrec.train.loop import TrainConfig

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


def train(
    dataset: str | Path,
    out: str | Path | None = None,
    config: str | Path | dict[str, dict[str, Any]] | None = None,
    *,
    model: str = "next-item-lm",
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    force: bool = False,
    **overrides: Any,
) -> Recommender:
    """Train a model as ``llmrec train`` does and return it as a loaded `Recommender`.

    dataset: a prepared dataset folder, or a registry name (prepared with the defaults, as the CLI does: into
    ``<out>/../<name>-data``, or ``<cache dir>/prepared/<name>-data`` without `out`). out: the artifact folder
    to write; None keeps the artifact in a temporary folder removed with the returned Recommender. config: a TOML
    file path or a dict of sections ``{"model": {...}, "train": {...}}``. overrides: see `split_overrides`; they
    win over `config`. model: next-item-lm | sasrec | most-popular | item-knn | t5-semantic. Every setting is
    checked before anything is read or written, and a run whose estimated peak memory exceeds what the machine
    has is refused (`llmrec.train.memory`); force: train anyway.
    """
    from llmrec.arguments import check_path
    from llmrec.config import load_toml, merge_sections
    from llmrec.data.registry import cache_dir
    from llmrec.experiment import check_settings, open_dataset_once, train_model
    from llmrec.recommend import Recommender
    from llmrec.train import distributed

    check_path(dataset, "dataset")
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
    check_settings(model, sections, progress=progress)  # before a folder is made or a dataset prepared
    temporary = out is None
    out_dir = Path(tempfile.mkdtemp(prefix="llmrec-model-")) / "model" if out is None else Path(out)
    if out_dir.exists() and not (out_dir / "config.json").is_file() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: exists and is not a model folder; refusing to replace it")
    name = str(dataset)
    prepared_root = (cache_dir() / "prepared" if temporary else out_dir.parent) / f"{Path(name).name}-data"
    try:
        distributed.init_from_env(device)
        try:
            prepared, prepared_dir = open_dataset_once(name, prepared_root)  # rank 0 prepares, the others wait
            train_model(prepared, prepared_dir, model, out_dir, sections, resume=resume, progress=progress, force=force)
        finally:
            distributed.shutdown()
        rec = Recommender.load(out_dir, device=device)
    except BaseException:
        if temporary:
            shutil.rmtree(out_dir.parent, ignore_errors=True)
        raise
    if temporary:
        weakref.finalize(rec, shutil.rmtree, out_dir.parent, True)  # the folder lives as long as the Recommender
    return rec


def evaluate(model: Recommender | str | Path, dataset: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Full-ranking evaluation of a trained model; returns the report dict that ``llmrec evaluate --out`` writes.

    model: a `Recommender` (from `train` or `Recommender.load`) or an artifact folder. dataset: a prepared
    dataset folder or a registry name; default: the one the model was trained on. A dataset the model was not
    trained on is refused with a ValueError (as ``llmrec evaluate`` refuses it). options: passed on to
    ``llmrec.experiment.evaluate_model`` (e.g. ``n_boot=200``, ``splits=("test",)``, ``ks=(10,)``,
    ``sampled_negatives=100``, ``baseline_dir=...``, ``progress=True``, ``device="cpu"``; device defaults to
    "auto", as on the command line).
    """
    from llmrec.arguments import check_path
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
    return evaluate_model(model_dir, prepared, **options)
