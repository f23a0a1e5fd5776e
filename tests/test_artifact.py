"""`llmrec.artifact`: what the model folder holds, copying it with new weights, and the atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from llmrec.data import PreparedDataset


def _pop_artifact(ds: PreparedDataset, out: Path) -> Path:
    from llmrec.artifact import save_artifact
    from llmrec.models.baselines import MostPopular

    return save_artifact(MostPopular.fit(ds.train_sequences(), ds.n_items), ds, out)


def test_saved_artifact_describes_itself(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec import artifact

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    assert sorted(p.name for p in path.iterdir()) == [
        ".llmrec.json",  # the marker: an llmrec model folder (llmrec.outputs)
        "config.json",
        "dataset.json",
        "histories.parquet",
        "items.parquet",
        "manifest.json",  # every file above with its size and SHA-256, checked when the artifact is opened
        "model.safetensors",
    ]
    assert artifact.model_type(path) == "most-popular"
    assert artifact.read_training(path) is None and artifact.refit_on_valid(path) is None
    artifact.write_training(path, {"model": "most-popular", "train": {"refit_on_valid": True}}, prepared_path=tmp_path / "data")
    assert artifact.read_training(path) == {"model": "most-popular", "train": {"refit_on_valid": True}}
    assert artifact.refit_on_valid(path) is True
    assert json.loads((path / "dataset.json").read_text())["prepared_path"] == str(tmp_path / "data")
    artifact.open_artifact(path)  # the manifest was rewritten with the files write_training changed
    assert artifact.ann_dir(path) == path / "ann"


def test_model_type_of_a_folder_that_is_not_an_artifact(tmp_path: Path) -> None:
    from llmrec.artifact import model_type
    from llmrec.errors import ArtifactError

    with pytest.raises(FileNotFoundError, match="not a model directory"):
        model_type(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"config\.json: damaged"):
        model_type(tmp_path)


def test_text_cache_dir_defaults_under_the_llmrec_cache(tmp_path: Path) -> None:
    from llmrec.artifact import text_cache_dir

    assert text_cache_dir() == Path(os.environ["LLMREC_CACHE_DIR"]) / "text-embeddings"
    assert text_cache_dir(tmp_path / "x") == tmp_path / "x"


def test_copy_with_weights_keeps_the_side_files_and_replaces_the_weights(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.artifact import copy_with_weights
    from llmrec.models import load_model
    from llmrec.models.baselines import MostPopular

    base = _pop_artifact(tiny_prepared, tmp_path / "base")
    (base / "train").mkdir()  # training state of the old weights: not copied
    (base / "adapter.json").write_text("{}")
    counts = torch.arange(tiny_prepared.n_items + 1, dtype=torch.float32)
    out = copy_with_weights(
        base,
        tmp_path / "out",
        MostPopular(counts),
        extra={"note.json": '{"a": 1}'},
        drop_prefixes=("adapter.",),
        write=lambda folder: (folder / "extra.txt").write_text("x"),
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        ".llmrec.json",
        "config.json",
        "dataset.json",
        "extra.txt",
        "histories.parquet",
        "items.parquet",
        "manifest.json",
        "model.safetensors",
        "note.json",
    ]
    assert torch.equal(load_model(out).counts, counts)
    assert (out / "items.parquet").read_bytes() == (base / "items.parquet").read_bytes()
    with pytest.raises(ValueError, match="--out must differ from --base"):
        copy_with_weights(base, base, MostPopular(counts), base_argument="--base")


def test_copy_with_weights_leaves_nothing_when_writing_fails(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.artifact import copy_with_weights

    class Broken:
        def save_pretrained(self, path: str | Path) -> None:
            raise RuntimeError("disk full")

    base = _pop_artifact(tiny_prepared, tmp_path / "base")
    with pytest.raises(RuntimeError, match="disk full"):
        copy_with_weights(base, tmp_path / "out", Broken())  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_atomic_file_keeps_the_old_file_on_failure_and_plain_permissions_on_success(tmp_path: Path) -> None:
    from llmrec.atomic import atomic_file, atomic_write

    target = tmp_path / "index.json"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == (0o666 & ~mask)
