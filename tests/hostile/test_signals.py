"""SIGTERM stops every command as Ctrl-C does: one line, exit code 143, temporary files removed, the previous
output intact (`llmrec.cli.signals`). Each test runs ``python -m llmrec.cli`` in a subprocess and sends SIGTERM
once the command is busy. Bounded: a few seconds each, most of it the interpreter's start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmrec.data import PrepareConfig, PreparedDataset, RawData, prepare

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "llmrec.cli", *map(str, args)]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(*args), capture_output=True, text=True, env=_ENV, timeout=300)


def _sigterm_when(args: list[str], log: Path, ready: Callable[[str], bool], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Start the command, send `sig` once `ready(output so far)`, return (exit code, output)."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_ENV, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ready(log.read_text(errors="replace")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before the signal:\n{log.read_text()}"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, log.read_text(errors="replace")


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name]


@pytest.fixture
def dataset_dir(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    tiny_prepared.save(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def model_dir(dataset_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    done = _run("train", "--dataset", dataset_dir, "--out", out, "--epochs", "1", "--threads", "1", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sigterm_during_training_stops_cleanly_and_keeps_the_previous_model(
    dataset_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    before = _snapshot(model_dir)
    args = _cli("train", "--dataset", dataset_dir, "--out", model_dir, "--epochs", "5000", "--threads", "1")
    args += ["--set", "train.patience=5000", "--device", "cpu"]
    code, output = _sigterm_when(args, tmp_path / "train.log", lambda text: "epoch 3" in text.lower())
    assert code == 143, output
    assert output.strip().splitlines()[-1] == "stopped by SIGTERM", output
    assert "Traceback" not in output, output
    assert _snapshot(model_dir) == before  # the previous artifact, byte for byte
    assert _leftovers(tmp_path) == []


def test_ctrl_c_keeps_exit_code_130(dataset_dir: Path, tmp_path: Path) -> None:
    args = _cli("train", "--dataset", dataset_dir, "--out", tmp_path / "m", "--epochs", "5000", "--threads", "1")
    args += ["--set", "train.patience=5000", "--device", "cpu"]
    code, output = _sigterm_when(args, tmp_path / "train.log", lambda text: "epoch 2" in text.lower(), signal.SIGINT)
    assert code == 130, output
    assert output.strip().splitlines()[-1] == "stopped by SIGINT (Ctrl-C)", output
    assert "Traceback" not in output and _leftovers(tmp_path) == []
    assert not (tmp_path / "m").exists()


def _many_users(n_users: int) -> PreparedDataset:
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 9, size=n_users)
    users = np.repeat([f"u{u}" for u in range(n_users)], lengths)
    items = rng.integers(1, 200, size=int(lengths.sum())).astype(str)
    times = np.concatenate([np.arange(n) for n in lengths])
    events = pl.DataFrame({"user": users, "item": items, "time": times.astype(np.int64)})
    return prepare(RawData(events, None, None, "generic", []), PrepareConfig(split="loo"))


def test_sigterm_during_batch_recommend_leaves_no_partial_file(tmp_path: Path) -> None:
    _many_users(20_000).save(tmp_path / "data")
    model = tmp_path / "model"
    done = _run("train", "--dataset", tmp_path / "data", "--out", model, "--model", "most-popular", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "recs.parquet"
    out.write_bytes(b"previous output")
    args = _cli("recommend", "--model", model, "--users", "all", "--out", out, "--chunk-size", "16", "--device", "cpu")
    code, output = _sigterm_when(args, tmp_path / "rec.log", lambda text: "recommending:" in text and "%" in text)
    assert code == 143, output
    assert output.strip().splitlines()[-1].endswith("stopped by SIGTERM"), output
    assert "Traceback" not in output, output
    assert out.read_bytes() == b"previous output"
    assert _leftovers(tmp_path) == []
