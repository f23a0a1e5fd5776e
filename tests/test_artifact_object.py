"""`llmrec.artifact.open_artifact` -> `Artifact`: the one reader of a model folder's files (issue 20 item 4).

Each accessor reads its file; a damaged file is an `ArtifactError` naming it, whichever accessor reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import PreparedDataset
from llmrec.errors import ArtifactError


def _pop_artifact(ds: PreparedDataset, out: Path) -> Path:
    from llmrec.artifact import save_artifact
    from llmrec.models.baselines import MostPopular

    return save_artifact(MostPopular.fit(ds.train_sequences(), ds.n_items), ds, out)


def test_each_accessor_reads_its_file(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec import artifact
    from llmrec.identity import dataset_identity

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    art = artifact.open_artifact(path)
    assert artifact.open is artifact.open_artifact and "open" not in artifact.__all__  # a star import keeps builtin open
    assert art.path == path and art.model_type == "most-popular" and art.config["model_type"] == "most-popular"
    model = art.model()
    assert model.n_items == tiny_prepared.n_items
    assert art.items["item"].to_list() == tiny_prepared.raw_item_ids()  # by item_idx
    assert art.items["item_idx"].to_list() == list(range(1, tiny_prepared.n_items + 1))
    users = tiny_prepared.users["user"].to_list()
    assert sorted(art.histories) == sorted(users)
    np.testing.assert_array_equal(art.histories[users[0]], tiny_prepared.sequences[0])
    assert art.dataset_identity == dataset_identity(tiny_prepared)
    assert art.dataset_info["name"] == tiny_prepared.name and art.domain == str(tiny_prepared.domain or "generic")
    assert art.training is None and art.refit_on_valid is None
    assert not art.has_adapter and art.adapter() is None
    assert art.training_log_path is None and art.training_log() == []
    assert art.ann_dir == path / "ann" and not art.has_text_embeddings
    stored, why = art.text_embeddings("some-encoder", ["a"] * tiny_prepared.n_items)
    assert stored is None and "no item text embeddings" in why
    art.check_catalogue(tiny_prepared.n_items)  # fits: nothing raised


def test_training_record_and_log(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.artifact import open_artifact, write_training

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    record = {"model": "most-popular", "train": {"refit_on_valid": True}, "seen_items": {"rule": "include"}}
    write_training(path, record)
    (path / "train").mkdir()
    (path / "train" / "metrics.csv").write_text("epoch,valid_ndcg@10\n1,0.25\n2,0.5\n")
    art = open_artifact(path)  # a fresh reader: each file is read once per Artifact
    assert art.training == record and art.refit_on_valid is True
    assert art.training_log_path == path / "train" / "metrics.csv"
    assert [row["valid_ndcg@10"] for row in art.training_log()] == ["0.25", "0.5"]


def test_adapter_and_text_embeddings_when_stored(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.artifact import open_artifact
    from llmrec.index.text_store import write_item_text
    from llmrec.models.adapter import AdapterConfig, UserAdapter

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    UserAdapter(AdapterConfig(d_model=4, inner_steps=2)).save_pretrained(path)
    texts = [f"item {i}" for i in range(tiny_prepared.n_items)]
    emb = np.zeros((len(texts) + 1, 3), dtype=np.float32)
    emb[1:, 0] = 1.0
    write_item_text(path, emb, "enc", texts)
    art = open_artifact(path)
    adapter = art.adapter()
    assert art.has_adapter and isinstance(adapter, UserAdapter) and adapter.config.inner_steps == 2
    assert art.has_text_embeddings
    stored, _ = art.text_embeddings("enc", texts)
    assert stored is not None and stored.shape == (len(texts) + 1, 3)


def test_a_folder_without_config_is_not_an_artifact(tmp_path: Path) -> None:
    from llmrec.artifact import open_artifact

    with pytest.raises(FileNotFoundError, match="not a model directory"):
        open_artifact(tmp_path)


READERS = {
    "config.json": lambda a: a.model_type,
    "items.parquet": lambda a: a.items,
    "histories.parquet": lambda a: a.histories,
    "dataset.json": lambda a: a.dataset_identity,
    "training.json": lambda a: a.training,
    "adapter.json": lambda a: a.adapter(),
}


@pytest.mark.parametrize("file", list(READERS))
@pytest.mark.parametrize("damage", ["garbage", "wrong-shape"])
def test_a_damaged_file_is_named(file: str, damage: str, tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.artifact import open_artifact
    from llmrec.models.adapter import AdapterConfig, UserAdapter

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    (path / "training.json").write_text("{}")
    UserAdapter(AdapterConfig(d_model=4)).save_pretrained(path)
    target = path / file
    if damage == "garbage":
        target.write_bytes(b"\x00\xff garbage \x13" * 8)
    elif file.endswith(".parquet"):
        import polars as pl

        pl.DataFrame({"unrelated": [1, 2, 3]}).write_parquet(target)
    else:
        target.write_text(json.dumps([1, 2, 3]))
    art = open_artifact(path, verify=False)  # each reader on its own (the manifest check would name it first)
    with pytest.raises(ArtifactError, match="damaged or incomplete") as e:
        READERS[file](art)
    assert str(target) in str(e.value)


def test_a_catalogue_of_another_size_names_the_items(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.artifact import open_artifact

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    with pytest.raises(ArtifactError, match="items, the model has") as e:
        open_artifact(path).check_catalogue(tiny_prepared.n_items + 1)
    assert str(path / "items.parquet") in str(e.value)


def test_an_older_artifact_without_the_optional_files_still_loads(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    """Artifacts written before dataset.json, histories.parquet, training.json or the marker existed."""
    from llmrec.artifact import open_artifact
    from llmrec.identity import check_model_dataset
    from llmrec.recommend import Recommender

    path = _pop_artifact(tiny_prepared, tmp_path / "pop")
    for name in ("dataset.json", "histories.parquet", ".llmrec.json", "manifest.json"):
        (path / name).unlink()
    art = open_artifact(path)
    assert art.dataset_info == {} and art.dataset_identity is None and art.histories == {} and art.domain == "generic"
    check_model_dataset(path, tiny_prepared)  # checked by its items.parquet instead
    rec = Recommender.load(path, ann="off", device="cpu")
    assert rec.exclude_seen_default and rec.adapter is None and rec.histories == {}
    assert len(rec.recommend(history=[tiny_prepared.raw_item_ids()[0]], k=3)) == 3
