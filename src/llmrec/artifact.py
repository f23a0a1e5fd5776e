"""The model artifact folder: everything that knows its files lives here (loading by class: `llmrec.models`).

A model artifact directory is self-describing (no other file and no network needed to load it)::

    config.json, model.safetensors   the model (safetensors + JSON, no pickle); config.json's ``model_type`` is
                                     the key of ``llmrec.models.MODELS``
    items.parquet                    item_idx ↔ raw id, title, text, categories (for output and explanations)
    histories.parquet                raw user id → full item sequence (for `recommend --user`)
    attributes.json                  attribute vocabulary when the model uses item attributes
    dataset.json                     domain, source, statistics and identity (llmrec.identity) of the data it was
                                     trained on
    training.json                    what `llmrec train` did (model name, params, [train] settings, best epoch)
    train/                           the training run (checkpoints, metrics.csv) when the model was trained
    ann/                             a saved FAISS index (`llmrec build-index`)
    item_text.safetensors, .json     the catalogue's text embeddings for queries, with the encoder that made them
                                     (`llmrec.index.text_store`; written by training with item text and by export)
    manifest.json                    every file above the folders (path, size, SHA-256), written last (`write_manifest`)

The manifest lets an artifact detect its own damage: `open_artifact` checks it (`verify_manifest`) before anything is
read, so a missing, truncated or changed file is an `ArtifactError` naming it instead of answers from a broken
model; the model's weights are also refused when they hold NaN or infinity (`check_finite`). It lists the top-level
files, which are what loading reads; ``train/`` (training state) and ``ann/`` (an index with its own folder, written
later by `llmrec build-index`) are not listed. An artifact written before manifests existed still loads, with a
one-line notice.

Reading goes through one object, ``open_artifact(path)`` (also ``llmrec.artifact.open``) -> `Artifact`: ``.model()``
(through the registry, `llmrec.models.load_model`), ``.items``, ``.histories``, ``.adapter()``, ``.training``,
``.dataset_info`` / ``.dataset_identity``, ``.training_log()``, ``.text_embeddings(...)``, ``.ann_dir``. Each file is
read once, when first asked for; a damaged one is an `ArtifactError` naming it.

This module sits below the models (it never imports a model class at import time): `Artifact.model` and
`Artifact.adapter` import the registry and the adapter inside the call. Every write is atomic (`llmrec.atomic`):
a folder is complete or absent.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.atomic import atomic_directory, atomic_write, recover_set_aside
from llmrec.errors import ArtifactError, artifact_file, as_os_error, read_json

if TYPE_CHECKING:  # types only: no model class, torch, polars or data code at import time (the service imports this)
    import polars as pl
    import torch

    from llmrec.data.dataset import PreparedDataset
    from llmrec.models.adapter import UserAdapter
    from llmrec.models.base import RecModel

__all__ = [
    "ANN_DIR",
    "ARTIFACT_FILES",
    "Artifact",
    "MANIFEST",
    "TEXT_EMBEDDINGS",
    "TEXT_EMBEDDINGS_META",
    "ann_dir",
    "artifact_files",
    "check_finite",
    "check_weights",
    "copy_with_weights",
    "model_type",
    "has_model",
    "open_artifact",
    "output_errors",
    "read_items_and_histories",
    "read_training",
    "refit_on_valid",
    "save_artifact",
    "text_cache_dir",
    "verify_manifest",
    "write_manifest",
    "write_training",
]

log = logging.getLogger("llmrec.artifact")

ANN_DIR = "ann"  # where an artifact keeps a saved index (`llmrec build-index`)
WEIGHT_FILES = ("config.json", "model.safetensors")  # what `save_pretrained` writes
TEXT_EMBEDDINGS = "item_text.safetensors"  # the catalogue's text embeddings (`llmrec.index.text_store`)
TEXT_EMBEDDINGS_META = "item_text.json"  # their encoder, dimension and catalogue digest
MANIFEST = "manifest.json"  # every top-level file with its size and SHA-256 (`write_manifest`)
# The files llmrec writes into a model folder (what an artifact without a manifest is taken to hold); the
# semantic ids of t5-semantic, a meta-trained adapter, a cold-item map and an ONNX scorer among them.
ARTIFACT_FILES = (
    *WEIGHT_FILES,
    "items.parquet",
    "histories.parquet",
    "attributes.json",
    "dataset.json",
    "training.json",
    TEXT_EMBEDDINGS,
    TEXT_EMBEDDINGS_META,
    "semantic_ids.safetensors",
    "semantic_ids.json",
    "adapter.json",
    "adapter.safetensors",
    "meta.json",
    "text_map.json",
    "scorer.onnx",
    "scorer.onnx.data",
    "onnx.json",
    "onnx_items.json",
    "onnx_scorer.py",
)
ARTIFACT_FOLDERS = ("train", ANN_DIR)  # the training state and a saved index: not in the manifest
_HASH_CHUNK = 1 << 20


def model_type(path: str | Path) -> object:
    """config.json's ``model_type`` of the artifact folder `path` (None when absent; not checked against MODELS).

    No config.json is a FileNotFoundError ("not a model directory"); an unreadable one an ArtifactError naming it.
    """
    path = Path(path)
    if not has_model(path):
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    return read_json(path / "config.json").get("model_type")


def has_model(path: str | Path) -> bool:
    """Whether the folder `path` holds a model (its config.json): what readers ask before `Artifact.model`."""
    return (Path(path) / "config.json").is_file()


def check_weights(path: str | Path) -> None:
    """Read the header of ``model.safetensors``: a missing, truncated or garbage file is an ArtifactError naming it."""
    weights = Path(path) / "model.safetensors"
    with artifact_file(weights):
        from safetensors import safe_open

        with safe_open(str(weights), "pt"):  # reads the header only: a truncated or garbage file fails here
            pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _listed(folder: Path) -> list[Path]:
    """The files a manifest of `folder` lists: its top-level regular files except the manifest and hidden files
    (the output marker, temporaries); the folders (train/, ann/) and symbolic links are left out."""
    return sorted(
        p for p in folder.iterdir() if p.name != MANIFEST and not p.name.startswith(".") and p.is_file() and not p.is_symlink()
    )


def write_manifest(folder: str | Path) -> Path:
    """Write ``manifest.json`` into the artifact `folder`: each top-level file's path, size and SHA-256.

    Every writer of a model folder calls it last, inside the temporary folder before it is renamed into place
    (`save_artifact`, `copy_with_weights`, `llmrec.export`); a writer that changes a finished artifact's files
    (`write_training`) rewrites it after them."""
    folder = Path(folder)
    files = [{"path": p.name, "size": p.stat().st_size, "sha256": _sha256(p)} for p in _listed(folder)]
    manifest = {"format": 1, "files": files}
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    _VERIFIED.pop(str(folder.resolve()), None)
    return folder / MANIFEST


def _manifest_entries(folder: Path) -> dict[str, tuple[int, str]] | None:
    """manifest.json of `folder` as {path: (size, sha256)}; None when the artifact has none (an older one)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    manifest = read_json(path)
    with artifact_file(path):
        files = manifest["files"]
        if not isinstance(files, list):
            raise ValueError("'files' is not a list")
        entries = {}
        for entry in files:
            name, size, digest = entry["path"], entry["size"], entry["sha256"]
            if not isinstance(name, str) or not isinstance(size, int) or not isinstance(digest, str):
                raise ValueError(f"bad entry {entry!r}")
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"path {name!r} lies outside the folder")
            entries[name] = (size, digest)
    return entries


# Folders verified in this process: resolved path -> the (name, size, mtime, inode) of each listed file then; a
# folder opened again with the same stats is not hashed again (the service and evaluate open one several times).
_VERIFIED: dict[str, tuple[tuple[str, int, int, int], ...]] = {}
_NOTICED: set[str] = set()  # folders without a manifest already reported


def verify_manifest(folder: str | Path) -> bool:
    """Check the artifact `folder` against its manifest.json: each listed file exists, has its size (checked first,
    for every file) and its SHA-256; else an ArtifactError naming the first bad file. False (after a one-line
    notice, once per folder) when the artifact has no manifest: written by an llmrec older than manifests."""
    folder = Path(folder)
    entries = _manifest_entries(folder)
    key = str(folder.resolve())
    if entries is None:
        if key not in _NOTICED:
            _NOTICED.add(key)
            log.warning(
                "%s: no %s (an artifact saved by an older llmrec): its files are not checked for damage", folder, MANIFEST
            )
        return False
    stats = []
    for name, (size, _) in entries.items():
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ArtifactError(path, "missing (incomplete artifact: listed in manifest.json)") from None
        except OSError as e:
            raise ArtifactError(path, f"cannot be read ({e.strerror})") from None
        if st.st_size != size:
            what = "truncated: " if st.st_size < size else ""
            raise ArtifactError(path, f"damaged or incomplete ({what}{st.st_size:,} bytes, manifest.json says {size:,})")
        stats.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    if _VERIFIED.get(key) == tuple(stats):
        return True
    for name, (_, digest) in entries.items():
        path = folder / name
        with artifact_file(path):
            actual = _sha256(path)
        if actual != digest:
            raise ArtifactError(path, "damaged or incomplete (its SHA-256 differs from manifest.json's: changed since saved)")
    _VERIFIED[key] = tuple(stats)
    return True


def artifact_files(folder: str | Path) -> list[Path]:
    """llmrec's own top-level files of the artifact `folder`: the ones its manifest lists, or for an artifact
    without one the names llmrec writes (`ARTIFACT_FILES`) that are regular files. What a copy of an artifact
    takes along (`copy_with_weights`, `llmrec export`); anything else in the folder is left where it is."""
    folder = Path(folder)
    entries = _manifest_entries(folder)
    names = list(entries) if entries is not None else list(ARTIFACT_FILES)
    return [folder / n for n in names if (folder / n).is_file() and not (folder / n).is_symlink()]


def check_finite(path: str | Path, tensors: Mapping[str, torch.Tensor] | None = None) -> None:
    """Refuse the safetensors file `path` when a floating-point tensor of it holds NaN or infinity (ArtifactError
    naming the file and the tensor). tensors: the file's tensors already loaded (a model's state dict), checked
    instead of reading the file again.

    A tensor's sum is finite only when every element is (NaN and infinity propagate through a sum), and summing is
    several times faster than ``isfinite`` over every element; only a sum that is not finite (a bad value, or an
    overflow of large finite ones) is looked at element by element."""
    path = Path(path)
    with artifact_file(path):
        import torch

        if tensors is None:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
                raise ArtifactError(path, f"tensor {name!r} holds NaN or infinite values (refused)")


class Artifact:
    """A model artifact folder, read lazily: each accessor reads its file once, when first asked for, and a damaged
    file is an `ArtifactError` naming it. Made by `open_artifact` (which refuses a folder without config.json)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @cached_property
    def config(self) -> dict[str, object]:
        """config.json (the model's settings and ``model_type``)."""
        return read_json(self.path / "config.json")

    @property
    def model_type(self) -> str | None:
        kind = self.config.get("model_type")
        return kind if isinstance(kind, str) else None

    def model(self, device: str | torch.device | None = None) -> RecModel:
        """The model, through the registry (`llmrec.models.load_model`), moved to `device` when one is given."""
        import torch

        from llmrec.models import load_model

        model: RecModel = load_model(self.path)
        if device is not None and torch.device(device).type != "cpu" and isinstance(model, torch.nn.Module):
            model = model.to(device)
        return model

    @cached_property
    def items(self) -> pl.DataFrame:
        """items.parquet by ``item_idx`` (1..V): raw id ``item``, ``title`` and whatever else the catalogue holds."""
        import polars as pl

        with artifact_file(self.path / "items.parquet"):
            items = pl.read_parquet(self.path / "items.parquet").sort("item_idx")
            items.select("item", "title")  # the columns every reader needs
        return items

    def check_catalogue(self, n_items: int | None) -> None:
        """items.parquet must hold the model's `n_items` items (None: not checked); else an ArtifactError naming it."""
        with artifact_file(self.path / "items.parquet"):
            if n_items is not None and self.items.height != n_items:
                raise ValueError(f"{self.items.height} items, the model has {n_items}")

    @cached_property
    def histories(self) -> dict[str, np.ndarray]:
        """histories.parquet: raw user id -> internal item ids, oldest first ({} when absent), checked against items."""
        path = self.path / "histories.parquet"
        if not path.exists():
            return {}
        import polars as pl

        n = self.items.height
        with artifact_file(path):
            h = pl.read_parquet(path)
            histories = {u: np.asarray(s, dtype=np.int64) for u, s in zip(h["user"].to_list(), h["items"].to_list(), strict=True)}
            flat = np.concatenate(list(histories.values())) if histories else np.zeros(0, np.int64)
            if len(flat) and (flat.min() < 1 or flat.max() > n):
                raise ValueError(f"item ids outside 1..{n}")
        return histories

    @cached_property
    def dataset_info(self) -> dict[str, object]:
        """dataset.json: domain, source, statistics, identity and prepared path of the training data ({} when absent)."""
        path = self.path / "dataset.json"
        return read_json(path) if path.is_file() else {}

    @property
    def dataset_identity(self) -> dict[str, object] | None:
        """The identity of the data the model was trained on (`llmrec.identity`); None for older artifacts."""
        identity = self.dataset_info.get("identity")
        return identity if isinstance(identity, dict) else None

    @property
    def domain(self) -> str:
        return str(self.dataset_info.get("domain") or "generic")

    @cached_property
    def training(self) -> dict[str, Any] | None:
        """training.json (what `llmrec train` did, with the seen-item rule under ``seen_items``), None when absent."""
        path = self.path / "training.json"
        return read_json(path) if path.is_file() else None

    @property
    def refit_on_valid(self) -> bool | None:
        """Whether the model was refit on train + valid events (its validation targets were training targets).

        None when the artifact records no training; models fit without a [train] section (most-popular, item-knn)
        are fit on training events only (False)."""
        if self.training is None:
            return None
        return bool(self.training.get("train", {}).get("refit_on_valid", False))

    @property
    def has_adapter(self) -> bool:
        return (self.path / "adapter.json").is_file()

    def adapter(self) -> UserAdapter | None:
        """The meta-trained per-user adapter (adapter.json + adapter.safetensors; `llmrec meta-train`), or None."""
        if not self.has_adapter:
            return None
        from llmrec.models.adapter import UserAdapter

        read_json(self.path / "adapter.json")  # names the file when it is the JSON that is damaged
        check_finite(self.path / "adapter.safetensors")
        with artifact_file(self.path / "adapter.safetensors"):
            return UserAdapter.from_pretrained(self.path)

    @property
    def training_log_path(self) -> Path | None:
        """train/metrics.csv, one row per epoch of the training run, when the artifact keeps it."""
        path = self.path / "train" / "metrics.csv"
        return path if path.is_file() else None

    def training_log(self) -> list[dict[str, str]]:
        """train/metrics.csv as rows (column -> text); [] when absent."""
        if self.training_log_path is None:
            return []
        with artifact_file(self.training_log_path), self.training_log_path.open(newline="") as f:
            return list(csv.DictReader(f))

    @property
    def has_text_embeddings(self) -> bool:
        """Whether the artifact stores its catalogue's text embeddings (`llmrec.index.text_store`)."""
        return (self.path / TEXT_EMBEDDINGS_META).is_file()

    def text_embeddings(self, encoder_name: str, texts: Sequence[str]) -> tuple[np.ndarray | None, str]:
        """The stored catalogue text embeddings [V+1, D] when made by `encoder_name` from `texts`, else (None, why)."""
        from llmrec.index.text_store import read_item_text

        return read_item_text(self.path, encoder_name, texts)

    @property
    def ann_dir(self) -> Path:
        """Where the artifact keeps its saved approximate-retrieval index (`llmrec build-index`)."""
        return self.path / ANN_DIR


def open_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """The model artifact folder `path` (`Artifact`); no config.json is a FileNotFoundError ("not a model directory").

    verify: check its files against manifest.json first (`verify_manifest`): a missing, truncated or changed file
    is an ArtifactError naming it."""
    path = Path(path)
    recover_set_aside(path.absolute())  # a replacement stopped half-way by kill -9 is undone first
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    if verify:
        verify_manifest(path)
    return Artifact(path)


# `llmrec.artifact.open(path)`, the short spelling; left out of __all__ so that a star import never shadows the
# builtin open (this module itself uses none)
open = open_artifact


def read_items_and_histories(path: str | Path, n_items: int | None) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """items.parquet and histories.parquet (raw user -> item ids; {} when absent) of an artifact, checked against
    the model's catalogue size `n_items` (None: not checked) and each other (`Artifact`)."""
    art = Artifact(path)
    art.check_catalogue(n_items)
    return art.items, art.histories


def read_training(path: str | Path) -> dict[str, Any] | None:
    """The artifact's training record (training.json), or None when it has none (e.g. a copied or older artifact)."""
    return Artifact(path).training


def refit_on_valid(path: str | Path) -> bool | None:
    """`Artifact.refit_on_valid` of the folder `path`."""
    return Artifact(path).refit_on_valid


def ann_dir(path: str | Path) -> Path:
    """Where the artifact `path` keeps its saved approximate-retrieval index."""
    return Path(path) / ANN_DIR


def text_cache_dir(override: str | Path | None = None) -> Path:
    """The cache of item text embeddings (keyed by encoder and text): `override`, else <llmrec cache>/text-embeddings."""
    if override is not None:
        return Path(override)
    from llmrec.data.registry import cache_dir

    return cache_dir() / "text-embeddings"


def save_artifact(
    model: RecModel,
    dataset: PreparedDataset,
    out: str | Path,
    *,
    attributes: list[str] | None = None,
    write: Callable[[Path], None] | None = None,
) -> Path:
    """Write the self-describing model directory atomically (temporary sibling, then rename); `write(folder)` may
    add more files (e.g. the catalogue's text embeddings) before the manifest is written, last."""
    import polars as pl

    from llmrec.identity import dataset_identity

    with output_errors(out), atomic_directory(out, kind="model") as tmp:
        model.save_pretrained(tmp)
        dataset.items.write_parquet(tmp / "items.parquet")
        pl.DataFrame(
            {"user": dataset.users["user"], "items": [s.astype(np.int32) for s in dataset.sequences]},
            schema={"user": pl.String, "items": pl.List(pl.Int32)},
        ).write_parquet(tmp / "histories.parquet")
        if attributes:
            (tmp / "attributes.json").write_text(json.dumps(attributes))
        meta = {k: dataset.manifest.get(k) for k in ("domain", "source", "stats", "split")}
        meta["name"] = dataset.name  # shown by the service and its demo page
        meta["identity"] = dataset_identity(dataset)  # commands that pair this model with a dataset check it
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
        if write is not None:
            write(tmp)
        write_manifest(tmp)
    return Path(out)


def copy_with_weights(
    base: str | Path,
    out: str | Path,
    model: RecModel,
    *,
    extra: dict[str, str] | None = None,
    write: Callable[[Path], None] | None = None,
    drop: Iterable[str] = (),
    drop_prefixes: Iterable[str] = (),
    argument: str = "--out",
    base_argument: str = "--model",
) -> Path:
    """Copy the artifact `base` to `out` with `model`'s weights and config; atomic (complete or absent).

    llmrec's own top-level files of `base` are copied (`artifact_files`: items, histories, dataset identity ...;
    not its training state folder nor its saved index, which belong to the old weights, nor files llmrec did not
    write), minus the weight files, `drop` and names starting with one of `drop_prefixes`; then
    `model.save_pretrained` writes the new weights, `extra` maps file names to text written beside them,
    `write(folder)` may add more (e.g. a meta-trained adapter), and the manifest comes last. `argument` /
    `base_argument` name the options in the error when `out` is `base`.
    """
    base, out = Path(base), Path(out)
    if out.resolve() == base.resolve():
        raise ValueError(f"{argument} must differ from {base_argument}")
    skip, prefixes = {*WEIGHT_FILES, *drop}, tuple(drop_prefixes)
    with output_errors(out), atomic_directory(out, kind="model") as tmp:
        for p in artifact_files(base):
            if p.name not in skip and not (prefixes and p.name.startswith(prefixes)):
                shutil.copy2(p, tmp / p.name)
        model.save_pretrained(tmp)
        if write is not None:
            write(tmp)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text)
        write_manifest(tmp)
    return out


@contextmanager
def output_errors(out: str | Path) -> Iterator[None]:
    """A writer's file-system failure (safetensors' "(os error 28)", a full disk at a hidden temporary) as an
    OSError naming `out` (`llmrec.errors.as_os_error`), which the CLI prints as one line."""
    try:
        yield
    except Exception as e:
        error = as_os_error(e, out)
        if error is None or error is e:
            raise
        raise error from e


def write_training(path: str | Path, summary: dict[str, Any], *, prepared_path: str | Path | None = None) -> None:
    """Record how the artifact `path` was trained (training.json) and, in dataset.json, where its prepared data is;
    then its manifest again (when it has one), so that it lists them as they are now."""
    path = Path(path)
    if prepared_path is not None:
        meta = read_json(path / "dataset.json")
        meta["prepared_path"] = str(prepared_path)
        atomic_write(path / "dataset.json", json.dumps(meta, indent=2).encode())
    atomic_write(path / "training.json", json.dumps(summary, indent=2, default=str).encode())
    if (path / MANIFEST).exists():
        write_manifest(path)
