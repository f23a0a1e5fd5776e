"""Which data a model was trained on: the dataset identity a model artifact records, and the check that a model
and a prepared dataset belong together.

A model scores item ids 1..n_items of the catalogue it was trained on. Paired with another prepared dataset, the
ids mean other items and every number computed from the pair is silently wrong, so each command that pairs a
model with a dataset (evaluate, meta-train, map-cold-items) calls `check_model_dataset` first.

The identity (``dataset.json`` → ``identity`` in the artifact)::

    n_items, n_users      sizes of the catalogue and of the user table
    item_ids_sha256       SHA-256 of the raw item ids in item_idx order (the id map)
    manifest_sha256       SHA-256 of the prepared files' checksums (manifest.json "files"); null when the model
                          was trained on a dataset that had not been saved, or loaded, from disk

Artifacts saved before the identity was recorded are checked by what they hold anyway: their ``items.parquet``
is the id map.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset

__all__ = ["check_model_dataset", "dataset_for_model", "dataset_identity"]


def _ids_sha256(ids: list[Any]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def dataset_identity(dataset: PreparedDataset) -> dict[str, Any]:
    """The identity of `dataset` that a model artifact records (see the module docstring)."""
    files = dataset.manifest.get("files")
    manifest_sha = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() if files else None
    return {
        "n_items": dataset.n_items,
        "n_users": dataset.n_users,
        "item_ids_sha256": _ids_sha256(dataset.raw_item_ids()),
        "manifest_sha256": manifest_sha,
    }


def check_model_dataset(model_dir: str | Path, dataset: PreparedDataset, *, option: str = "--dataset") -> None:
    """Raise ValueError unless the model artifact in `model_dir` was trained on `dataset` (same catalogue and,
    when both record it, the same prepared files)."""
    from llmrec.artifact import Artifact

    model_dir = Path(model_dir)
    art = Artifact(model_dir)
    recorded = art.dataset_identity
    here = dataset_identity(dataset)
    if recorded is not None:
        n, ids, manifest = recorded.get("n_items"), recorded.get("item_ids_sha256"), recorded.get("manifest_sha256")
    else:  # an artifact saved before identities were recorded: its items.parquet is the id map
        if not (model_dir / "items.parquet").is_file():
            return
        raw = art.items["item"].to_list()
        n, ids, manifest = len(raw), _ids_sha256(raw), None
    if n != here["n_items"]:
        raise ValueError(
            f"{option}: the model {model_dir} was trained on a dataset of {n:,} items, this one has "
            f"{here['n_items']:,}: not the data it was trained on"
        )
    if ids != here["item_ids_sha256"]:
        raise ValueError(
            f"{option}: the model {model_dir} was trained on a catalogue with other item ids (same size, "
            f"{n:,} items): not the data it was trained on"
        )
    if manifest and here["manifest_sha256"] and manifest != here["manifest_sha256"]:
        raise ValueError(
            f"{option}: the model {model_dir} was trained on another preparation of this catalogue (other users, "
            "events or split; manifest checksum differs): not the data it was trained on"
        )


def dataset_for_model(
    model_dir: str | Path,
    dataset: str | Path | None = None,
    *,
    option: str = "--dataset",
    status: Callable[[str], AbstractContextManager[Any]] = nullcontext,
) -> PreparedDataset:
    """The prepared dataset to score the artifact in `model_dir` on, checked to be the data it was trained on.

    dataset: a prepared folder or a registry name (prepared with the defaults into ``<model_dir>/../<name>-data``);
    None: the folder the artifact records in ``dataset.json``. A mismatch (`check_model_dataset`) or a damaged
    ``dataset.json`` is a ValueError naming `option` or the file. ``llmrec evaluate`` and ``llmrec.evaluate`` both
    call this, so a model is never scored on data it was not trained on.
    """
    from llmrec.artifact import Artifact
    from llmrec.data import open_dataset

    model_dir = Path(model_dir)
    if dataset is None:
        meta_path = model_dir / "dataset.json"
        recorded = Artifact(model_dir).dataset_info.get("prepared_path")
        if not isinstance(recorded, str):
            raise ValueError(f"{model_dir}: the model does not record its dataset; pass {option}")
        dataset = recorded
        option = f"the dataset recorded in {meta_path} ({dataset})"
    prepared, _ = open_dataset(str(dataset), model_dir.parent / f"{Path(dataset).name}-data", status=status)
    check_model_dataset(model_dir, prepared, option=option)
    return prepared
