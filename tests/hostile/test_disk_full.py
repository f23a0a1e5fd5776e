"""A full disk, out-of-range numbers and an --out name too long are one line, exit code 2, nothing left behind
(issue 28 points 5 and 6).

The disk-full probes write to a real 24 KiB tmpfs where this process may mount one (root in a container);
elsewhere they are skipped, and the same failure is simulated where the writer raises it (safetensors'
``SafetensorError(... (os error 28))``, shutil's ENOSPC naming the source file).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest

if TYPE_CHECKING:
    from tests.conftest import Cli

NO_SPACE = os.strerror(errno.ENOSPC)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Path:
    from llmrec.data import PrepareConfig, RawData, prepare

    root = tmp_path_factory.mktemp("disk-full")
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", str(i), 1000 + t) for u in range(20) for t, i in enumerate(rng.choice(30, size=8, replace=False))]
    events = pl.DataFrame(rows, schema={"user": pl.String, "item": pl.String, "time": pl.Int64}, orient="row")
    prepare(RawData(events=events, items=None, users=None, domain="generic", source_files=[]), PrepareConfig()).save(
        root / "data"
    )
    many = rng.integers(0, 5000, size=(20000, 2))  # a catalogue whose prepared tables outgrow the small disk
    pl.DataFrame(
        {"user_id": [f"u{u}" for u in many[:, 0]], "item_id": [f"i{i}" for i in many[:, 1]], "timestamp": range(20000)}
    ).write_csv(root / "events.csv")
    result = cli.invoke(
        "train", "--dataset", root / "data", "--out", root / "lm", "--model", "next-item-lm", *cli.TINY, *cli.QUICK
    )
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 KiB tmpfs: enough to start writing a tiny model, not to finish it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("command", ["train", "export", "prepare"])
def test_a_full_disk_is_one_line_naming_the_output(data: Path, small_disk: Path, command: str, cli: Cli) -> None:
    out = small_disk / "M"
    args = {
        "train": ["train", "--dataset", data / "data", "--out", out, "--model", "next-item-lm", *cli.TINY, *cli.QUICK],
        "export": ["export", "--model", data / "lm", "--out", out, "--no-text-embeddings"],
        "prepare": ["data", "prepare", "--events", data / "events.csv", "--format", "csv", "--out", out],
    }[command]
    result = cli.invoke(*args)
    cli.assert_user_error(result, f"{out}: {NO_SPACE}")
    assert _left_in(small_disk) == []  # no half-written model, no .M.train, no temporary, no lock


def test_safetensors_running_out_of_space_names_out_and_removes_the_run(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    """Issue 28: a Rich traceback ending 'SafetensorError ... No space left on device', exit 1, .M.train left."""
    from safetensors import SafetensorError

    import llmrec.models.item_sequence

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(llmrec.models.item_sequence, "save_file", full)
    out = tmp_path / "M"
    result = cli.invoke("train", "--dataset", data / "data", "--out", out, "--model", "next-item-lm", *cli.TINY, *cli.QUICK)
    cli.assert_user_error(result, f"{out}: {NO_SPACE}")
    assert _left_in(tmp_path) == []


def test_a_full_disk_while_copying_names_the_output_not_the_source(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    real = shutil.copy2

    def full(src: str | Path, dst: str | Path, **kwargs: object) -> object:
        if Path(src).name == "histories.parquet":  # as shutil's sendfile copy says it: the source file named
            raise OSError(errno.ENOSPC, NO_SPACE, str(src))
        return real(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "copy2", full)
    out = tmp_path / "slim"
    cli.assert_user_error(cli.invoke("export", "--model", data / "lm", "--out", out), f"{out}: {NO_SPACE}")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".slim")]


def test_a_resumable_run_is_kept_when_the_disk_fills(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    """An interrupted run's state that --resume continues is not the failed command's to remove."""
    from safetensors import SafetensorError

    import llmrec.models.item_sequence

    work = tmp_path / "w"
    shutil.copytree(data, work)
    (work / ".lm.train").mkdir()
    (work / ".lm.train" / "note").write_text("an interrupted run")

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(llmrec.models.item_sequence, "save_file", full)
    result = cli.invoke(
        "train", "--dataset", work / "data", "--out", work / "lm", "--model", "next-item-lm", *cli.TINY, *cli.QUICK
    )
    cli.assert_user_error(result, f"{work / 'lm'}: {NO_SPACE}")
    assert (work / ".lm.train" / "note").is_file() and (work / "lm" / "config.json").is_file()


def test_n_boot_is_range_checked_before_any_work(data: Path, cli: Cli) -> None:
    """Issue 28: --n-boot 10000000000 was a MemoryError (596 GiB); 1e8 ran for minutes."""
    for n_boot in ("10000000000", "100001", "-1"):
        result = cli.invoke("evaluate", "--model", data / "lm", "--dataset", data / "data", "--n-boot", n_boot)
        cli.assert_user_error(result, "--n-boot must be between 0 and 100,000", n_boot)
    from llmrec.eval.stats import bootstrap_ci

    with pytest.raises(ValueError, match="n_boot must be between 0 and 100,000"):
        bootstrap_ci([0.1, 0.2], n_boot=10**10)


def test_negative_threads_are_one_line(data: Path, tmp_path: Path, cli: Cli) -> None:
    result = cli.invoke(
        "train", "--dataset", data / "data", "--out", tmp_path / "M", "--model", "most-popular", "--threads", "-3"
    )
    cli.assert_user_error(result, "--threads", "-3")
    assert not (tmp_path / "M").exists()


@pytest.mark.parametrize("command", ["train", "prepare"])
def test_an_out_name_too_long_for_its_hidden_sibling_names_out(data: Path, tmp_path: Path, command: str, cli: Cli) -> None:
    """Issue 28: a 240-character --out failed naming the hidden temporary folder beside it."""
    out = tmp_path / ("m" * 240)
    args = {
        "train": ["train", "--dataset", data / "data", "--out", out, "--model", "most-popular"],
        "prepare": ["data", "prepare", "--events", data / "events.csv", "--format", "csv", "--out", out],
    }[command]
    result = cli.invoke(*args)
    cli.assert_user_error(result, f"error: {out}: the name is 240 bytes long, at most", "choose a shorter --out")
    assert ".tmp-" not in result.stderr and _left_in(tmp_path) == []
