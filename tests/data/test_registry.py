"""`llmrec.data.registry`: where a named dataset is found (path, cache, mirror), and its files' checksums."""

from __future__ import annotations

from pathlib import Path

import pytest

ABC_SHA = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256(b"abc"), FIPS 180-2 example


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A registry entry "toy" of one pinned file (b"abc") and one optional unpinned file; cache and mirror in tmp."""
    from llmrec.data import registry

    spec = registry.DatasetSpec(
        name="toy",
        format="s3rec",
        domain="generic",
        url="https://example.invalid/toy/",
        files=(registry.DatasetFile("toy.txt", ABC_SHA), registry.DatasetFile("extra.txt", None, required=False)),
    )
    monkeypatch.setitem(registry.DATASETS, "toy", spec)
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LLMREC_DATA_MIRROR", str(tmp_path / "mirror"))
    return "toy"


def _put(folder: Path, data: bytes = b"abc") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.txt").write_bytes(data)
    return folder


def test_sha256_file_matches_the_published_example(tmp_path: Path) -> None:
    from llmrec.data.registry import sha256_file

    assert sha256_file(_put(tmp_path) / "toy.txt") == ABC_SHA


def test_resolution_order_is_path_then_cache_then_mirror(toy: str, tmp_path: Path) -> None:
    from llmrec.data.registry import cache_dir, resolve_dataset

    assert cache_dir() == tmp_path / "cache"
    _put(tmp_path / "mirror" / "toy")
    found = resolve_dataset(toy, allow_download=False)
    assert (found.origin, found.root, found.checksums) == ("mirror", tmp_path / "mirror" / "toy", {"toy.txt": ABC_SHA})
    _put(tmp_path / "cache" / "toy")
    assert resolve_dataset(toy, allow_download=False).origin == "cache"
    mine = _put(tmp_path / "mine")
    by_file = resolve_dataset(toy, mine / "toy.txt", allow_download=False)  # a file names its folder
    assert (by_file.origin, by_file.root) == ("path", mine)
    assert by_file.file("toy.txt") == mine / "toy.txt" and by_file.file("extra.txt") is None


def test_a_corrupted_file_is_refused_and_an_unpinned_one_warns(toy: str, tmp_path: Path) -> None:
    from llmrec.data.registry import resolve_dataset
    from llmrec.errors import ChecksumError

    bad = _put(tmp_path / "bad", b"abd")
    with pytest.raises(ChecksumError, match="SHA-256 mismatch for dataset 'toy'"):
        resolve_dataset(toy, bad, allow_download=False)
    good = _put(tmp_path / "good")
    (good / "extra.txt").write_text("x")
    with pytest.warns(UserWarning, match="no pinned SHA-256"):
        assert set(resolve_dataset(toy, good, allow_download=False).checksums) == {"toy.txt", "extra.txt"}


def test_not_found_lists_every_place_tried(toy: str, tmp_path: Path) -> None:
    from llmrec.data.registry import resolve_dataset
    from llmrec.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError) as e:
        resolve_dataset(toy, tmp_path / "nowhere", allow_download=False)
    text = str(e.value)
    for place in ("path: ", "cache: ", "mirror: ", "download: disabled", "--path DIR"):
        assert place in text
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'no-such-set'; known: "):
        resolve_dataset("no-such-set", allow_download=False)
