"""Nothing lost, ever: what a writing command may replace, through the command line (`llmrec.outputs`).

A folder holding a user's own files survives every writing command pointed at it, at ``.`` or at a folder above
an input; a report never lands in a model or dataset folder; two writers of one output never run at once; a
stopped run leaves neither half-written folders nor lock files. Every refusal is one ``error:`` line, exit code 2,
before any work starts. Replacing llmrec's own output of the same kind stays the default.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest

if TYPE_CHECKING:
    from tests.conftest import Cli

REPO = Path(__file__).resolve().parents[2]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (and `root`'s hidden siblings) with its bytes (None for a folder)."""
    shot: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        shot[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    for p in root.parent.iterdir():
        if p.name.startswith(f".{root.name}"):
            shot[f"../{p.name}"] = None
    return shot


def _events_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", str(i), 1000 + t) for u in range(20) for t, i in enumerate(rng.choice(30, size=8, replace=False))]
    pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}, orient="row").write_csv(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Path:
    """<root>/events.csv, <root>/data (prepared from it) and <root>/lm (a most-popular model, instant to fit)."""
    root = tmp_path_factory.mktemp("outputs")
    _events_csv(root / "events.csv")
    assert cli.invoke("data", "prepare", "--events", root / "events.csv", "--out", root / "data").exit_code == 0
    result = cli.invoke("train", "--dataset", root / "data", "--out", root / "lm", "--model", "most-popular")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def work(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "w")
    return tmp_path / "w"


def _user_folder(path: Path) -> Path:
    """A user's folder: a thesis and a subfolder with a file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.tex").write_text("\\documentclass{article} years of work")
    (path / "figures").mkdir(exist_ok=True)
    (path / "figures" / "plot.pdf").write_bytes(b"%PDF-1.4 mine")
    return path


# ---- every writing command, --out at a user's folder, at ".", at a folder above an input -------------------------
def _command(name: str, w: Path, out: str | Path, cli: Cli) -> list[str | Path]:
    """The arguments of writing command `name` with inputs in `w` and its output at `out`."""
    return {
        "prepare": ["data", "prepare", "--events", w / "events.csv", "--format", "csv", "--out", out],
        "train": ["train", "--dataset", w / "data", "--out", out, "--model", "most-popular"],
        "evaluate": ["evaluate", "--model", w / "lm", "--dataset", w / "data", "--n-boot", "10", "--out", out],
        "tune": ["tune", "--dataset", w / "data", "--out", out, "--trials", "1", *cli.TINY, *cli.QUICK],
        "meta-train": ["meta-train", "--dataset", w / "data", "--base", w / "lm", "--out", out, "--method", "finetune"],
        "map-cold-items": ["map-cold-items", "--model", w / "lm", "--dataset", w / "data", "--out", out],
        "export": ["export", "--model", w / "lm", "--out", out],
        "recommend": ["recommend", "--model", w / "lm", "--users", "all", "--out", out],
    }[name]


WRITERS = ["prepare", "train", "evaluate", "tune", "meta-train", "map-cold-items", "export", "recommend", "build-index"]


@pytest.mark.parametrize("command", WRITERS)
def test_a_users_folder_survives_every_writing_command(command: str, work: Path, cli: Cli) -> None:
    if command == "build-index":  # its output is <model>/ann
        mine = _user_folder(work / "lm" / "ann")
        args: list[str | Path] = ["build-index", "--model", work / "lm", "--kind", "flat", "--threads", "1"]
    else:
        mine = _user_folder(work / "mine")
        args = _command(command, work, mine, cli)
    before = _snapshot(work)
    cli.assert_user_error(cli.invoke(*args), str(mine))
    assert _snapshot(work) == before


@pytest.mark.parametrize("command", WRITERS)
def test_the_working_folder_survives_out_dot(command: str, work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    if command == "build-index":  # run from inside <model>/ann: --model ..
        here = _user_folder(work / "lm" / "ann")
        args: list[str | Path] = ["build-index", "--model", "..", "--kind", "flat", "--threads", "1"]
    else:
        here = _user_folder(work / "here")
        args = _command(command, work, ".", cli)
    monkeypatch.chdir(here)
    before = _snapshot(work)
    cli.assert_user_error(cli.invoke(*args), "current folder")
    assert _snapshot(work) == before


@pytest.mark.parametrize("command", [c for c in WRITERS if c != "build-index"])
def test_a_folder_above_the_inputs_survives(command: str, work: Path, cli: Cli) -> None:
    _user_folder(work)  # the folder that holds events.csv, data/ and lm/, and the user's files
    before = _snapshot(work)
    cli.assert_user_error(cli.invoke(*_command(command, work, work, cli)), str(work), "holds the input")
    assert _snapshot(work) == before


@pytest.mark.parametrize("command", ["train", "export"])
def test_a_folder_with_a_config_json_is_not_a_model(command: str, work: Path, cli: Cli) -> None:
    """D1: a file named config.json does not make a folder a model."""
    p = _user_folder(work / "p")
    (p / "config.json").write_text("{}")
    before = _snapshot(p)
    cli.assert_user_error(
        cli.invoke(*_command(command, work, p, cli)), str(p), "not an llmrec model folder", "refusing to replace"
    )
    assert _snapshot(p) == before


@pytest.mark.parametrize("out", [".", "sub/.."])
def test_out_dot_inside_a_model_like_folder_empties_nothing(
    out: str, work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    """D2: `--out .` and `--out sub/..` name the current folder: refused, nothing removed."""
    p = _user_folder(work / "p")
    (p / "config.json").write_text("{}")
    (p / "sub").mkdir()
    monkeypatch.chdir(p)
    before = _snapshot(p)
    cli.assert_user_error(
        cli.invoke("train", "--dataset", work / "data", "--out", out, "--epochs", "1"), str(p), "current folder"
    )
    assert _snapshot(p) == before
    assert Path.cwd() == p


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("recommend", "items.parquet"),
        ("recommend", "histories.parquet"),
        ("evaluate", "config.json"),
        ("tune", "config.json"),
        ("tune", "dataset.json"),
    ],
)
def test_a_report_never_overwrites_a_models_file(command: str, target: str, work: Path, cli: Cli) -> None:
    """D3: a report, config or recommendations file never goes into a model folder."""
    before = _snapshot(work / "lm")
    cli.assert_user_error(cli.invoke(*_command(command, work, work / "lm" / target, cli)), str(work / "lm"))
    assert _snapshot(work / "lm") == before


def test_a_report_never_goes_into_a_dataset_folder(work: Path, cli: Cli) -> None:
    before = _snapshot(work / "data")
    cli.assert_user_error(
        cli.invoke(*_command("recommend", work, work / "data" / "recs.parquet", cli)), "prepared dataset", str(work / "data")
    )
    assert _snapshot(work / "data") == before


def test_prepare_into_the_events_folder_keeps_the_events(work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """D4: a file named manifest.json does not make a folder a prepared dataset; the input is never removed."""
    web = _user_folder(work / "web")
    (web / "manifest.json").write_text("{}")
    shutil.copy(work / "events.csv", web / "events.csv")
    before = _snapshot(web)
    cli.assert_user_error(
        cli.invoke("data", "prepare", "--events", web / "events.csv", "--out", web), str(web), "holds the input"
    )
    monkeypatch.chdir(web)
    cli.assert_user_error(cli.invoke("data", "prepare", "--events", "events.csv", "--out", "."), "current folder")
    cli.assert_user_error(cli.invoke("data", "prepare", "--events", "events.csv", "--out", "events.csv"), "--events")
    assert _snapshot(web) == before


def test_streaming_prepare_never_writes_inside_its_input_folder(work: Path, cli: Cli) -> None:
    logs = work / "logs"
    logs.mkdir()
    shutil.copy(work / "events.csv", logs / "part-0.csv")
    result = cli.invoke("data", "prepare", "--events", logs, "--format", "csv", "--streaming", "--out", logs / "prepared")
    cli.assert_user_error(result, str(logs / "prepared"), "lies inside the input --events")
    assert sorted(p.name for p in logs.iterdir()) == ["part-0.csv"]


@pytest.mark.parametrize("command", ["evaluate", "tune"])
def test_a_file_output_that_is_a_folder_is_refused_before_work(command: str, work: Path, cli: Cli) -> None:
    (work / "reports").mkdir()
    cli.assert_user_error(cli.invoke(*_command(command, work, work / "reports", cli)), str(work / "reports"), "is a folder")
    assert list((work / "reports").iterdir()) == []
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]


# ---- symbolic links: written through -----------------------------------------------------------------------------
def test_out_a_symlink_writes_through_to_its_target(work: Path, cli: Cli) -> None:
    target = work / "models" / "pop"
    target.parent.mkdir()
    link = work / "current"
    link.symlink_to(target, target_is_directory=True)  # dangling: the model does not exist yet
    for _ in range(2):  # a new target, then the replaced one
        result = cli.invoke(*_command("train", work, link, cli))
        assert result.exit_code == 0, result.output
        assert link.is_symlink() and (target / "config.json").is_file() and (target / ".llmrec.json").is_file()
    assert cli.invoke("recommend", "--model", link, "--user", "u1", "-k", "2").exit_code == 0


def test_a_symlink_to_a_users_folder_is_refused(work: Path, cli: Cli) -> None:
    mine = _user_folder(work / "mine")
    (work / "link").symlink_to(mine, target_is_directory=True)
    before = _snapshot(mine)
    cli.assert_user_error(cli.invoke(*_command("train", work, work / "link", cli)), str(mine), "not an llmrec model folder")
    assert _snapshot(mine) == before and (work / "link").is_symlink()


# ---- what works today still works ----------------------------------------------------------------------------------
def test_llmrec_outputs_of_the_same_kind_are_replaced(work: Path, cli: Cli) -> None:
    for _ in range(2):
        assert cli.invoke(*_command("train", work, work / "m", cli)).exit_code == 0
        assert cli.invoke(*_command("prepare", work, work / "d", cli)).exit_code == 0
        assert cli.invoke(*_command("export", work, work / "x", cli)).exit_code == 0
        assert cli.invoke(*_command("recommend", work, work / "recs.parquet", cli)).exit_code == 0
    # a model is not a dataset, nor the other way round
    cli.assert_user_error(cli.invoke(*_command("prepare", work, work / "m", cli)), "not an llmrec prepared dataset")
    cli.assert_user_error(cli.invoke(*_command("train", work, work / "d", cli)), "not an llmrec model folder")
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]  # no lock or temporary left


def test_outputs_written_before_the_marker_are_recognised(work: Path, cli: Cli) -> None:
    """An older model or dataset (no .llmrec.json) is recognised by its complete set of files and replaced."""
    for folder in ("lm", "data"):
        (work / folder / ".llmrec.json").unlink()
    shutil.copytree(work / "lm", work / "old-lm")
    shutil.copytree(work / "data", work / "old-data")
    assert cli.invoke(*_command("train", work, work / "old-lm", cli)).exit_code == 0
    assert cli.invoke(*_command("prepare", work, work / "old-data", cli)).exit_code == 0
    assert (work / "old-lm" / ".llmrec.json").is_file() and (work / "old-data" / ".llmrec.json").is_file()
    # an incomplete set is not llmrec's: a config.json of a known type alone is refused
    half = work / "half"
    half.mkdir()
    shutil.copy(work / "lm" / "config.json", half / "config.json")
    cli.assert_user_error(cli.invoke(*_command("train", work, half, cli)), "not an llmrec model folder")
    assert sorted(p.name for p in half.iterdir()) == ["config.json"]


def test_an_empty_folder_is_written(work: Path, cli: Cli) -> None:
    (work / "empty").mkdir()
    assert cli.invoke(*_command("train", work, work / "empty", cli)).exit_code == 0
    assert (work / "empty" / "config.json").is_file()


# ---- one writer per output -----------------------------------------------------------------------------------------
_HOLD = """
import sys, time
from llmrec.outputs import output_lock

with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(work: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of <work>/m."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(work / "m")], stdout=subprocess.PIPE, text=True, cwd=work, env={**os.environ}
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_writer_is_refused_naming_the_holder(resume: bool, work: Path, holder: subprocess.Popen[str], cli: Cli) -> None:
    """D5: a second train (or --resume) of an output another command is writing exits 2 at once."""
    args = [*_command("train", work, work / "m", cli), *(["--resume"] if resume else [])]
    started = time.perf_counter()
    cli.assert_user_error(cli.invoke(*args), str(work / "m"), f"process {holder.pid}", "another llmrec command")
    assert time.perf_counter() - started < 30
    assert not (work / "m").exists()


def test_the_lock_is_released_and_removed(work: Path, holder: subprocess.Popen[str], cli: Cli) -> None:
    cli.assert_user_error(cli.invoke(*_command("export", work, work / "m", cli)), f"process {holder.pid}")
    holder.terminate()
    holder.wait(timeout=30)
    assert cli.invoke(*_command("export", work, work / "m", cli)).exit_code == 0
    assert not (work / ".m.lock").exists()


def test_a_lock_file_left_by_a_killed_run_does_not_block(work: Path, cli: Cli) -> None:
    (work / ".m.lock").write_text("999999999\n")  # kill -9: the file stays, its flock went with the process
    assert cli.invoke(*_command("train", work, work / "m", cli)).exit_code == 0
    assert not (work / ".m.lock").exists()


def test_two_locks_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    from llmrec.outputs import OutputError, output_lock

    with output_lock(tmp_path / "out"):
        with pytest.raises(OutputError, match=f"process {os.getpid()}"), output_lock(tmp_path / "out"):
            pass
    with output_lock(tmp_path / "out"):  # released: taken again
        pass
    assert list(tmp_path.iterdir()) == []


# ---- a stop mid-write ----------------------------------------------------------------------------------------------
def test_a_stop_mid_write_leaves_the_previous_output_and_no_lock(work: Path) -> None:
    from llmrec.atomic import atomic_directory
    from llmrec.outputs import claim_folder

    before = _snapshot(work / "lm")
    with pytest.raises(KeyboardInterrupt), claim_folder(work / "lm", "model") as out, atomic_directory(out, kind="model") as tmp:
        (tmp / "config.json").write_text("{half")
        raise KeyboardInterrupt  # what the SIGTERM handler of the command line raises, too
    assert _snapshot(work / "lm") == before
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]


def test_sigterm_during_training_leaves_no_half_written_output(work: Path, cli: Cli) -> None:
    pytest.importorskip("llmrec.cli.signals")
    long = ["--set", "train.epochs=100000", "--set", "train.patience=100000", "--set", "train.progress=false"]
    args = ["train", "--dataset", work / "data", "--out", work / "m", "--threads", "1", *cli.TINY, *long]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "llmrec.cli", *map(str, args)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (work / ".m.train" / "metrics.csv").exists():  # an epoch or more done: mid-run
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    assert (work / ".m.lock").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert not (work / "m").exists()
    assert not (work / ".m.lock").exists()
    assert not [p.name for p in work.iterdir() if ".tmp-" in p.name]
