"""Artifacts detect their own damage: manifest.json (size and SHA-256 of every file) written at save time and
checked on load, so a changed, truncated or missing file is refused with one line naming it (exit 2 on the
command line, `ArtifactError` in Python) instead of answering from a broken model; NaN weights are refused.

The probes of issue 28: bytes 2000-2099 of items.parquet flipped, histories.parquet deleted, a corrupt
attributes.json, NaN weights; an artifact saved before manifests still loads, with a one-line notice.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from tests.conftest import tiny_events
from typer.testing import Result

from llmrec.artifact import MANIFEST, artifact_files, open_artifact, write_manifest
from llmrec.errors import ArtifactError
from llmrec.recommend import Recommender

if TYPE_CHECKING:
    from tests.conftest import Cli


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Path:
    """<root>/data (20 users, 50 items with categories) and <root>/lm (a one-epoch LM that uses them)."""
    import polars as pl

    from llmrec.data import PrepareConfig, RawData, prepare

    root = tmp_path_factory.mktemp("damage")
    rows = tiny_events()
    events = pl.DataFrame(
        {"user": [r[0] for r in rows], "item": [r[1] for r in rows], "time": [r[2] for r in rows]},
        schema={"user": pl.String, "item": pl.String, "time": pl.Int64},
    )
    genres = ("drama", "comedy", "jazz")
    items = pl.DataFrame(
        {
            "item": [str(i) for i in range(1, 51)],
            "title": [f"Item {i}" for i in range(1, 51)],
            "categories": [[genres[i % 3]] for i in range(1, 51)],
        },
        schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String)},
    )
    raw = RawData(events=events, items=items, users=None, domain="generic", source_files=[])
    prepare(raw, PrepareConfig()).save(root / "data")
    result = cli.invoke(
        "train", "--dataset", root / "data", "--out", root / "lm", "--model", "next-item-lm", *cli.TINY, *cli.QUICK
    )
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def work(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "w")
    return tmp_path / "w"


def _recommend(w: Path, cli: Cli) -> Result:
    return cli.invoke("recommend", "--model", w / "lm", "--user", "u01", "-k", "3")


def _flip(path: Path, start: int, stop: int) -> None:
    data = bytearray(path.read_bytes())
    start, stop = min(start, len(data) // 2), min(stop, len(data) // 2 + (stop - start))
    data[start:stop] = bytes(b ^ 0xFF for b in data[start:stop])
    path.write_bytes(bytes(data))


def test_the_manifest_lists_every_file_with_its_size_and_hash(built: Path) -> None:
    import hashlib

    manifest = json.loads((built / "lm" / MANIFEST).read_text())
    listed = {e["path"]: e for e in manifest["files"]}
    on_disk = {p.name for p in (built / "lm").iterdir() if p.is_file() and not p.name.startswith(".")} - {MANIFEST}
    assert set(listed) == on_disk  # training.json and dataset.json, rewritten after the save, included
    assert {"config.json", "model.safetensors", "items.parquet", "histories.parquet", "attributes.json"} <= on_disk
    for name, entry in listed.items():
        data = (built / "lm" / name).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest(), name


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("items.parquet", "flip"),  # issue 28: bytes 2000-2099 flipped loaded and answered other item ids
        ("histories.parquet", "delete"),  # issue 28: recommend --user answered 0.0 scores without a word
        ("attributes.json", "corrupt"),  # issue 28: ignored
        ("dataset.json", "flip"),
        ("training.json", "truncate"),
        ("model.safetensors", "flip"),
    ],
)
def test_a_damaged_file_is_refused_naming_it(work: Path, file: str, damage: str, cli: Cli) -> None:
    path = work / "lm" / file
    if damage == "flip":
        _flip(path, 2000, 2100)
    elif damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-1])
    else:
        path.write_text("[1, 2, {")
    cli.assert_user_error(_recommend(work, cli), str(path))
    cli.assert_user_error(cli.invoke("evaluate", "--model", work / "lm", "--dataset", work / "data", "--n-boot", "10"), str(path))
    with pytest.raises(ArtifactError, match=file):
        Recommender.load(work / "lm")


def test_the_reasons_say_what_is_wrong(work: Path) -> None:
    items, histories = work / "lm" / "items.parquet", work / "lm" / "histories.parquet"
    _flip(items, 2000, 2100)
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        open_artifact(work / "lm")
    items.write_bytes(items.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="truncated"):
        open_artifact(work / "lm")
    histories.unlink()  # listed before items.parquet: the first bad file is named
    with pytest.raises(ArtifactError, match="histories.parquet: missing"):
        open_artifact(work / "lm")


def test_the_service_refuses_a_damaged_artifact_before_it_starts(work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    import uvicorn

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a damaged artifact must fail before the server starts")

    monkeypatch.setattr(uvicorn, "run", never)
    (work / "lm" / "histories.parquet").unlink()
    cli.assert_user_error(cli.invoke("serve", "--model", work / "lm", "--port", "0"), "histories.parquet", "missing")


def test_nan_weights_are_refused(work: Path, cli: Cli) -> None:
    from safetensors.torch import load_file, save_file

    weights = work / "lm" / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[name][0] = float("nan")
    save_file(tensors, str(weights))
    write_manifest(work / "lm")  # the manifest agrees: the weights themselves are bad
    cli.assert_user_error(_recommend(work, cli), str(weights), "NaN or infinite")


def test_an_artifact_without_a_manifest_loads_with_a_notice(work: Path, caplog: pytest.LogCaptureFixture, cli: Cli) -> None:
    (work / "lm" / MANIFEST).unlink()  # as saved by an llmrec older than manifests
    with caplog.at_level(logging.WARNING, logger="llmrec.artifact"):
        rec = Recommender.load(work / "lm")
    assert rec.recommend(user="u01", k=3)
    notices = [r.getMessage() for r in caplog.records if "not checked for damage" in r.getMessage()]
    assert len(notices) == 1 and str(work / "lm") in notices[0]
    result = _recommend(work, cli)
    assert result.exit_code == 0, result.output


def test_a_damaged_manifest_is_named(work: Path, cli: Cli) -> None:
    (work / "lm" / MANIFEST).write_text("{not json")
    cli.assert_user_error(_recommend(work, cli), str(work / "lm" / MANIFEST))


def test_export_copies_only_llmrec_files_and_follows_no_links(work: Path, tmp_path: Path, cli: Cli) -> None:
    lm = work / "lm"
    (lm / "secrets.env").write_text("API_KEY=hunter2\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("private")
    (lm / "ann").mkdir()
    (lm / "ann" / "linked").symlink_to(outside, target_is_directory=True)
    (lm / "ann" / "index.faiss").write_bytes(b"index")
    result = cli.invoke("export", "--model", lm, "--out", work / "slim", "--no-text-embeddings")
    assert result.exit_code == 0, result.output
    copied = {p.relative_to(work / "slim").as_posix() for p in (work / "slim").rglob("*")}
    assert "secrets.env" not in copied and not any("private" in c or "linked" in c for c in copied), copied
    assert "ann/index.faiss" in copied
    assert {p.name for p in artifact_files(work / "slim")} == {p.name for p in artifact_files(lm)}
    open_artifact(work / "slim")  # its own manifest, written anew, holds
    assert Recommender.load(work / "slim").recommend(user="u01", k=3)


def test_meta_and_copy_writers_carry_a_manifest(work: Path) -> None:
    from llmrec.artifact import copy_with_weights

    (work / "lm" / "notes.txt").write_text("mine")
    model = open_artifact(work / "lm").model()
    copy_with_weights(work / "lm", work / "copy", model, extra={"text_map.json": "{}"})
    listed = {e["path"] for e in json.loads((work / "copy" / MANIFEST).read_text())["files"]}
    assert "text_map.json" in listed and "notes.txt" not in listed and not (work / "copy" / "notes.txt").exists()
    open_artifact(work / "copy")
    assert np.isfinite([r.score for r in Recommender.load(work / "copy").recommend(user="u01", k=3)]).all()
