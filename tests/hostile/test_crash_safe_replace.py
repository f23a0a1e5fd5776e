"""A writer stopped at any moment leaves the earlier or the new output, never a broken one (`llmrec.atomic`).

Each stop-point test forks a writer that replaces a real output folder (a most-popular model, or a prepared
dataset) and stops it, by SIGKILL or by SIGTERM (which raises, as in every llmrec command), right before and right
after its k-th file-system step: every folder made, file opened for writing, chmod, rename, exchange, unlink and
rmdir, for every k from the first step to the last. Then it does what the next llmrec command does first (`recover` and the removal
of stale temporaries) and checks that the output is the complete earlier one or the complete new one (the same
files, byte for byte, and it loads) and that nothing is left beside it. Three paths: the exchange
(``renameat2(RENAME_EXCHANGE)``), the rename-aside fallback (the exchange refused with EINVAL, as NFS does), and a
first write (no earlier output). A fork costs milliseconds; the whole file runs in well under a minute.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmrec import atomic
from llmrec.atomic import atomic_directory, recover, remove_stale_temporaries
from llmrec.cli import app
from llmrec.cli.signals import SIGTERM_EXIT, _raise_terminated
from llmrec.data import PreparedDataset
from llmrec.outputs import MARKER, is_finished
from llmrec.recommend import Recommender

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, POSIX signals and renameat2")

runner = CliRunner()
_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _events_csv(path: Path, seed: int) -> None:
    """20 users x 8 events over 30 items; another seed gives other events (so another model)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp"]
    lines += [f"u{u},{i},{1000 + t}" for u in range(20) for t, i in enumerate(rng.choice(30, size=8, replace=False))]
    path.write_text("\n".join(lines) + "\n")


def _invoke(*args: str | Path) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/{data,model}-{1,2}: two prepared datasets and the two most-popular models trained on them."""
    root = tmp_path_factory.mktemp("crash")
    for n in (1, 2):
        _events_csv(root / f"events-{n}.csv", seed=n)
        _invoke("data", "prepare", "--events", root / f"events-{n}.csv", "--out", root / f"data-{n}")
        _invoke("train", "--dataset", root / f"data-{n}", "--out", root / f"model-{n}", "--model", "most-popular")
    return root


def _files(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder), the marker left out (it names its writer)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*")) if p.name != MARKER
    }


def _loads(kind: str, folder: Path) -> None:
    if kind == "model":
        rec = Recommender.load(folder, device="cpu")
        assert len(rec.recommend(user="u1", k=3)) == 3
    else:
        assert PreparedDataset.load(folder).n_users == 20


# ---- the forked writer ---------------------------------------------------------------------------------------
_STEPS = ("mkdir", "chmod", "rename", "replace", "unlink", "rmdir")


def _counting(stop_at: int, sig: int, count: list[int], before: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A wrapper of a file-system call: after (before) the `stop_at`-th call of all wrapped ones, send `sig` to this
    process."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
            if fn in (builtins.open, io.open) and not any(c in str(mode) for c in "wax+"):
                return fn(*args, **kwargs)  # reading changes nothing
            if before and count[0] + 1 == stop_at:
                os.kill(os.getpid(), sig)
            result = fn(*args, **kwargs)
            count[0] += 1
            if not before and count[0] == stop_at:
                os.kill(os.getpid(), sig)
            return result

        return step

    return wrap


def _write_in_child(
    out: Path, body: Path, kind: str, *, stop_at: int, sig: int, exchange: bool, report: Path, before: bool = False
) -> int:
    """Fork a writer replacing `out` by a copy of the folder `body` through `atomic_directory`; stop it with `sig`
    after (before) its `stop_at`-th file-system step. Returns its wait status; it writes its number of steps to
    `report`."""
    pid = os.fork()
    if pid:
        return os.waitpid(pid, 0)[1]
    code = 70
    try:  # the child: never returns into pytest
        signal.signal(signal.SIGTERM, _raise_terminated)  # as `llmrec.cli.signals.run_stoppable` sets it
        count = [0]
        wrap = _counting(stop_at, sig, count, before)
        for name in _STEPS:
            setattr(os, name, wrap(getattr(os, name)))
        builtins.open = io.open = wrap(builtins.open)  # type: ignore[assignment]
        if exchange:
            atomic._exchange = wrap(atomic._exchange)  # type: ignore[assignment]
        else:  # a file system without RENAME_EXCHANGE (NFS answers EINVAL)

            def refused(a: Path, b: Path) -> None:
                raise OSError(errno.EINVAL, "Invalid argument", str(a), None, str(b))

            atomic._exchange = refused  # type: ignore[assignment]
        try:
            with atomic_directory(out, kind=kind) as tmp:
                for p in sorted(body.iterdir()):
                    if p.name == MARKER:
                        continue
                    if p.is_dir():
                        shutil.copytree(p, tmp / p.name)
                    else:
                        shutil.copyfile(p, tmp / p.name)
            code = 0
        except KeyboardInterrupt:
            code = SIGTERM_EXIT
        Path(report).write_bytes(str(count[0]).encode())  # os.write-free: builtins.open is counted, after the fact
    finally:
        os._exit(code)


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("path", ["exchange", "fallback", "first-write"])
@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_a_writer_stopped_after_any_step_leaves_the_earlier_or_the_new_output(
    built: Path, tmp_path: Path, kind: str, path: str, sig: int
) -> None:
    folder = {"model": "model", "dataset": "data"}[kind]
    earlier_src, new_src = built / f"{folder}-1", built / f"{folder}-2"
    earlier, new = _files(earlier_src), _files(new_src)
    assert earlier != new
    out, report = tmp_path / "out", tmp_path / "steps"

    def reset() -> None:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        for name in _leftovers(out):
            shutil.rmtree(out.parent / name)
        if path != "first-write":
            shutil.copytree(earlier_src, out)

    # a run to the end: how many steps a replacement takes
    reset()
    status = _write_in_child(out, new_src, kind, stop_at=0, sig=sig, exchange=path != "fallback", report=report)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _files(out) == new and _leftovers(out) == []
    n_steps = int(report.read_bytes())
    assert n_steps > 10

    seen = {"earlier": 0, "new": 0, "none": 0}
    for k, before in [(k, before) for k in range(1, n_steps + 1) for before in (False, True)]:
        reset()
        exchange = path != "fallback"
        status = _write_in_child(out, new_src, kind, stop_at=k, sig=sig, exchange=exchange, report=report, before=before)
        code = os.waitstatus_to_exitcode(status)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else SIGTERM_EXIT), (k, code)
        remove_stale_temporaries(out)  # what the next command does first (`recover`, then dead writers' leftovers)
        assert _leftovers(out) == [], (k, _leftovers(out))
        if not out.exists():
            assert path == "first-write", k  # no earlier output: nothing is also the state before the command
            seen["none"] += 1
            continue
        got = _files(out)
        assert got in (earlier, new), (k, sorted(got))
        seen["earlier" if got == earlier else "new"] += 1
        _loads(kind, out)
    # the stops fell on both sides of the swap
    assert seen["new"] >= 1 and seen["earlier" if path != "first-write" else "none"] >= 1, seen


def _kill_between_aside_and_rename(out: Path, new_src: Path, kind: str, tmp_path: Path) -> None:
    """Run the fallback and SIGKILL it just after `out` was set aside (the one instant `out` is missing)."""
    report = tmp_path / "steps"
    for k in range(1, 200):
        shot = {p.name for p in out.parent.iterdir()}
        status = _write_in_child(out, new_src, kind, stop_at=k, sig=signal.SIGKILL, exchange=False, report=report)
        assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
        if not out.exists():
            return
        for name in _leftovers(out):
            shutil.rmtree(out.parent / name)
        assert {p.name for p in out.parent.iterdir()} == shot
    raise AssertionError("never caught between the two renames")


def test_a_reading_command_puts_a_set_aside_model_back_first(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "M"
    shutil.copytree(built / "model-1", out)
    _kill_between_aside_and_rename(out, built / "model-2", "model", tmp_path)
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith(".M.old-")]
    assert _files(aside) == _files(built / "model-1")  # the earlier model, complete, set aside
    done = subprocess.run(
        [sys.executable, "-m", "llmrec.cli", "recommend", "--model", str(out), "--user", "u1", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=_ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _files(out) == _files(built / "model-1") and not aside.exists()


def test_the_python_doors_put_a_set_aside_model_or_dataset_back_first(built: Path, tmp_path: Path) -> None:
    """`Recommender.load` and `PreparedDataset.load` recover like the commands do (no command line involved)."""
    from llmrec import Recommender
    from llmrec.data import PreparedDataset

    for kind, name, load in (("model", "model", Recommender.load), ("dataset", "data", PreparedDataset.load)):
        out = tmp_path / kind
        shutil.copytree(built / f"{name}-1", out)
        shutil.move(out, tmp_path / f".{kind}.old-999999")  # kill -9 between the two renames: out is missing
        assert not out.exists()
        load(out)
        assert _files(out) == _files(built / f"{name}-1")
        assert not (tmp_path / f".{kind}.old-999999").exists()


def test_recover_keeps_the_only_complete_copy_and_drops_a_redundant_one(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "M"
    shutil.copytree(built / "model-1", out)
    _kill_between_aside_and_rename(out, built / "model-2", "model", tmp_path)
    recover(out)
    assert _files(out) == _files(built / "model-1")
    # an aside beside a complete output (the stop came after the second rename) is the redundant earlier copy
    shutil.copytree(built / "model-2", tmp_path / ".M.old-999999")  # no such process
    recover(out)
    assert _files(out) == _files(built / "model-1") and not (tmp_path / ".M.old-999999").exists()


def test_a_finished_new_output_hidden_in_its_temporary_is_put_in_place_not_deleted(built: Path, tmp_path: Path) -> None:
    """No earlier output, and the writer killed after its marker, before the rename: the next command keeps it."""
    out, report = tmp_path / "M", tmp_path / "steps"
    for k in range(1, 200):
        status = _write_in_child(
            out, built / "model-2", "model", stop_at=k, sig=signal.SIGKILL, exchange=True, report=report, before=True
        )
        assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".M.tmp-")]
        if temps and is_finished(temps[0]):  # killed after its marker was written whole, before the rename
            break
        for p in temps:
            shutil.rmtree(p)
    assert not out.exists()
    remove_stale_temporaries(out)  # a stale temporary of a dead writer, yet the only copy of a finished output
    assert _files(out) == _files(built / "model-2") and _leftovers(out) == []
    _loads("model", out)


# ---- the reproduction through the command line ----------------------------------------------------------
_SIGTERM_WHILE_REMOVING = textwrap.dedent(
    """
    import os, signal, sys
    from llmrec import atomic
    from llmrec.cli import main

    removing = []
    remove, unlink = atomic._remove, os.unlink

    def _remove(path):
        removing.append(path)
        remove(path)

    def _unlink(*args, **kwargs):  # the first file of the earlier model removed after the swap: SIGTERM
        unlink(*args, **kwargs)
        if removing and removing.pop():
            os.kill(os.getpid(), signal.SIGTERM)

    atomic._remove, os.unlink = _remove, _unlink
    sys.argv = ["llmrec", *sys.argv[1:]]
    main()
    """
)


def test_train_twice_with_sigterm_while_the_earlier_model_is_removed(built: Path, tmp_path: Path) -> None:
    """`llmrec train --out M` over an existing M, SIGTERM while the earlier M is being deleted: the new model is
    at M, complete (the same files as a clean run), and the next train removes the partial earlier copy."""
    out = tmp_path / "M"
    shutil.copytree(built / "model-1", out)
    args = ["train", "--dataset", str(built / "data-2"), "--out", str(out), "--model", "most-popular", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM_WHILE_REMOVING, *args], capture_output=True, text=True, env=_ENV, timeout=300
    )
    assert done.returncode == SIGTERM_EXIT, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "stopped by SIGTERM", done.stderr
    assert "Traceback" not in done.stderr
    new = _files(built / "model-2")
    got = _files(out)
    for name in ("config.json", "model.safetensors", "items.parquet", "histories.parquet"):
        assert got[name] == new[name], name  # the new model; training.json is what the stop left unwritten
    assert got != _files(built / "model-1")
    _loads("model", out)
    assert any(p.name.startswith(".M.tmp-") for p in tmp_path.iterdir())  # the earlier copy, partly removed
    _invoke("train", "--dataset", built / "data-2", "--out", out, "--model", "most-popular")
    assert _files(out) == new | {"training.json": _files(out)["training.json"]} and _leftovers(out) == []
