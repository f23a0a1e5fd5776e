"""A file llmrec did not write is never deleted (`llmrec.outputs.check_replaceable`, `foreign_entries`).

Replacing a model or dataset folder would delete what a user put in it (``M/NOTES.txt``, ``M/mydata/``), so the
command refuses before any work, naming them, and leaves the folder as it was; once they are moved, it replaces
the folder as usual. What llmrec itself adds to a finished folder (``training.json``, ``train/``, ``ann/``, ...)
is not the user's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from llmrec.cli import app
from llmrec.outputs import MARKER, OutputError, check_replaceable, foreign_entries

runner = CliRunner()


def _invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _events_csv(path: Path) -> None:
    lines = ["user_id,item_id,timestamp"]
    lines += [f"u{u},{(u * 7 + t) % 30},{1000 + t}" for u in range(20) for t in range(8)]
    path.write_text("\n".join(lines) + "\n")


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder), and `folder`'s hidden siblings."""
    shot: dict[str, bytes | None] = {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))
    }
    shot |= {f"../{p.name}": None for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")}
    return shot


def _users_files(folder: Path) -> None:
    (folder / "NOTES.txt").write_text("notes\n")
    (folder / "mydata").mkdir()
    (folder / "mydata" / "raw.csv").write_text("a,b\n1,2\n")


def _command(kind: str, root: Path, out: Path) -> list[str | Path]:
    if kind == "model":
        return ["train", "--dataset", root / "data", "--out", out, "--model", "most-popular"]
    return ["data", "prepare", "--events", root / "events.csv", "--out", out]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _events_csv(tmp_path / "events.csv")
    assert _invoke("data", "prepare", "--events", tmp_path / "events.csv", "--out", tmp_path / "data").exit_code == 0
    return tmp_path


@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_replacing_a_folder_with_a_users_files_is_refused_naming_them(kind: str, root: Path) -> None:
    out = root / "out"
    assert _invoke(*_command(kind, root, out)).exit_code == 0
    _users_files(out)
    before = _snapshot(out)
    result = _invoke(*_command(kind, root, out))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: {out}: holds files llmrec did not write (NOTES.txt, mydata/); move them or choose another --out"
    )
    assert _snapshot(out) == before  # nothing written, nothing deleted, nothing left beside it


@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_once_the_users_files_are_moved_the_folder_is_replaced(kind: str, root: Path) -> None:
    out = root / "out"
    assert _invoke(*_command(kind, root, out)).exit_code == 0
    _users_files(out)
    assert _invoke(*_command(kind, root, out)).exit_code == 2
    (out / "NOTES.txt").rename(root / "NOTES.txt")
    shutil.move(out / "mydata", root / "mydata")
    result = _invoke(*_command(kind, root, out))  # what llmrec added after the marker (training.json) is its own
    assert result.exit_code == 0, result.output
    assert foreign_entries(out) == []
    assert (root / "NOTES.txt").read_text() == "notes\n"


def test_the_marker_lists_what_llmrec_wrote(root: Path) -> None:
    out = root / "m"
    assert _invoke(*_command("model", root, out)).exit_code == 0
    listed = set(json.loads((out / MARKER).read_text())["files"])
    assert {"config.json", "model.safetensors", "items.parquet"} <= listed
    assert {p.name for p in out.iterdir()} - listed <= {MARKER, "training.json", "manifest.json"}  # added after
    (out / "secrets.env").write_text("KEY=1\n")
    (out / ".training.json.tmp-123-abc").write_text("{")  # llmrec's own leftover of a stopped write
    (out / ".notes.txt.tmp-1-x").write_text("mine")  # looks like one, of no llmrec file: the user's
    assert foreign_entries(out) == [".notes.txt.tmp-1-x", "secrets.env"]
    with pytest.raises(OutputError, match=r"holds files llmrec did not write \(\.notes\.txt\.tmp-1-x, secrets\.env\)"):
        check_replaceable(out, "model")  # the Python door (llmrec.train) checks the same way
