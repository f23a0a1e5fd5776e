"""Where llmrec writes: every output is checked before any work starts, and locked while a command writes it.

Nothing lost, ever: a command never deletes or overwrites what llmrec did not write. Before a writing command
trains, prepares or scores anything, `claim_folder` / `claim_file` resolve its output (``.``, ``sub/..`` and
symbolic links: a link is written through, its target is what gets replaced) and refuse, with one line naming
the path:

- an output that is, or holds, the current folder;
- an output that is, holds or lies inside one of the command's inputs (events, catalogue, dataset, model ...);
- a folder output that exists, is not empty and is not an llmrec output of the same kind (`output_kind`);
- an llmrec output folder that holds files llmrec did not write (`foreign_entries`): replacing it would delete
  them, so the user moves them first;
- a file output (report, config, recommendations) that exists as a folder, or that lies inside an llmrec model
  or dataset folder;
- any output inside an llmrec model or dataset folder (replacing that folder would take it along), except an
  index inside its model (``<model>/ann``).

llmrec's own output folders carry a marker, ``.llmrec.json`` (``{"kind": ..., "llmrec_version": ..., "files":
[...], "staged_as": ...}``), that llmrec alone writes, last, into the finished temporary folder (`write_marker`,
called by `llmrec.atomic.atomic_directory`): ``files`` lists every entry it wrote, so anything else found in the
folder later (beside the files llmrec adds to a finished folder, `_ADDED_LATER`) is the user's; ``staged_as``
names the temporary folder, so a finished folder not yet renamed into place is told apart from an earlier one
being removed (`is_finished`). A folder written before the marker existed is recognised by its complete set of
llmrec files (`output_kind`); one whose marker has no ``files`` list (older llmrec) is taken as llmrec's entirely.

One writer per output: `output_lock` holds an advisory lock (``fcntl.flock``) on the sibling file
``.<name>.lock`` for the whole command; a second writer fails at once naming the holder's process id. The lock
file sits beside the output, not in it, because the output folder is replaced by a rename; it is removed when
the command ends (normally, by an error, or by SIGTERM unwinding through ``finally``).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER",
    "OUTPUT_KINDS",
    "OutputError",
    "check_file",
    "check_folder",
    "check_replaceable",
    "claim_file",
    "claim_folder",
    "foreign_entries",
    "is_finished",
    "output_kind",
    "output_lock",
    "refuse_current_folder",
    "resolve",
    "write_marker",
]

MARKER = ".llmrec.json"
OUTPUT_KINDS = ("model", "dataset", "index")  # the folder outputs
_WORDS = {"model": "llmrec model folder", "dataset": "llmrec prepared dataset", "index": "llmrec index folder"}
# Model types that existed before the marker: a folder of one of these written then is recognised by its files.
_LEGACY_MODEL_TYPES = ("next-item-lm", "bsarec", "t5-semantic", "most-popular", "item-knn")
_DATASET_FILES = ("sequences.parquet", "users.parquet", "items.parquet")
# What llmrec adds to a finished folder of each kind, after its marker listed the rest: `llmrec train` moves its
# run in and records the training (`llmrec.artifact.write_training`), `build-index` writes <model>/ann, training
# and export store the catalogue's text embeddings, and a manifest of the files may be written last. Python's
# __pycache__ of an export's onnx_scorer.py is only a cache of llmrec's own scripts.
_ADDED_LATER = {
    "model": frozenset(
        {
            "train",
            "training.json",
            "dataset.json",
            "ann",
            "item_text.safetensors",
            "item_text.json",
            "manifest.json",
            "__pycache__",
        }
    ),
    "dataset": frozenset({"manifest.json"}),
    "index": frozenset({"manifest.json"}),
}
# llmrec's hidden working names for an entry <name> of a folder: being written (.<name>.tmp-<pid>-*) or set aside
# (.<name>.old-<pid>) by `llmrec.atomic`.
_WORKING_NAME = re.compile(r"^\.(.+)\.(?:tmp-.*|old-\d+)$")

Inputs = Mapping[str, object]  # option name -> the path it gave (None, or a name that is no path: skipped)


class OutputError(ValueError):
    """An output llmrec refuses to write (``<path>: <reason>``); the CLI prints it and exits with code 2."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def resolve(path: str | Path) -> Path:
    """The absolute, real path (``.``, ``..`` and symbolic links resolved; the path need not exist)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def write_marker(folder: str | Path, kind: str, *, staged_as: str | None = None) -> None:
    """Mark `folder` as an llmrec output of `kind`, listing every entry in it (written last, inside the temporary
    folder before its rename). staged_as: the temporary folder's name (`is_finished`)."""
    from llmrec import __version__

    folder = Path(folder)
    files = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    marker: dict[str, object] = {"kind": kind, "llmrec_version": __version__, "files": files}
    if staged_as is not None:
        marker["staged_as"] = staged_as
    (folder / MARKER).write_text(json.dumps(marker) + "\n")


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def output_kind(path: str | Path) -> str | None:
    """ "model", "dataset" or "index" when `path` is a folder llmrec wrote; None for anything else.

    The marker decides; a folder without one (written before the marker existed) counts only with its complete
    set of llmrec files: a model's config.json with a known ``model_type``, model.safetensors, items.parquet and
    dataset.json; a dataset's manifest.json listing the checksums of its three parquet files, all present; an
    index's index.json and index.faiss. A common file name alone (config.json, manifest.json) is never enough.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    marker = _json_object(path / MARKER)
    if marker is not None:
        kind = marker.get("kind")
        return kind if kind in OUTPUT_KINDS else None
    config = _json_object(path / "config.json")
    if (
        config is not None
        and config.get("model_type") in _LEGACY_MODEL_TYPES
        and all((path / f).is_file() for f in ("model.safetensors", "items.parquet", "dataset.json"))
    ):
        return "model"
    manifest = _json_object(path / "manifest.json")
    files = manifest.get("files") if manifest is not None else None
    if isinstance(files, dict) and set(files) == set(_DATASET_FILES) and all((path / f).is_file() for f in files):
        return "dataset"
    if _json_object(path / "index.json") is not None and (path / "index.faiss").is_file():
        return "index"
    return None


def is_finished(folder: str | Path) -> bool:
    """Whether `folder` is a new llmrec output written to the end under this very name: its marker names the folder
    (``staged_as``) and every entry the marker lists is there (`llmrec.atomic.recover` renames it into place)."""
    folder = Path(folder)
    marker = _json_object(folder / MARKER)
    if marker is None or marker.get("kind") not in OUTPUT_KINDS or marker.get("staged_as") != folder.name:
        return False
    files = marker.get("files")
    return isinstance(files, list) and all(isinstance(f, str) and os.path.lexists(folder / f) for f in files)


def foreign_entries(folder: str | Path) -> list[str]:
    """The entries of the llmrec output `folder` that llmrec did not write (a folder's name ends in ``/``).

    Known: what the marker lists, what llmrec adds to a finished folder of its kind, the marker itself and
    llmrec's hidden working names for those (a stopped write of training.json leaves .training.json.tmp-*). A folder whose marker lists nothing (written by an older llmrec, or before the
    marker existed) gives []: it is taken as llmrec's."""
    folder = Path(folder)
    marker = _json_object(folder / MARKER)
    files = marker.get("files") if marker is not None else None
    if marker is None or not isinstance(files, list):
        return []
    known = {MARKER, *(f for f in files if isinstance(f, str)), *_ADDED_LATER.get(str(marker.get("kind")), ())}
    return sorted(
        p.name + ("/" if p.is_dir() and not p.is_symlink() else "")
        for p in folder.iterdir()
        if p.name not in known and not ((m := _WORKING_NAME.match(p.name)) and m.group(1) in known)
    )


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def refuse_current_folder(out: Path, option: str = "--out") -> None:
    """Refuse `out` (resolved) when it is or holds the current folder: replacing it would empty the user's folder."""
    try:
        here = resolve(Path.cwd())
    except FileNotFoundError:  # the current folder was removed: nothing left to protect
        return
    if _inside(here, out):
        what = "is the current folder" if out == here else f"holds the current folder {here}"
        raise OutputError(out, f"{option} {what}; give a new folder or file, not . or a folder above it")


def _input_paths(inputs: Inputs) -> Iterator[tuple[str, Path]]:
    """(option, resolved path) of each input; a glob (``logs/*.parquet``) stands for the files it matches and, when
    recursive (``**``), the folder it searches."""
    for name, given in inputs.items():
        if not isinstance(given, str | Path) or (isinstance(given, str) and not Path(given).exists()):
            continue  # None, or a registry name, not a path
        text = os.fspath(given)
        if not any(c in text for c in "*?["):
            yield name, resolve(text)
            continue
        for match in glob.glob(text, recursive=True):
            yield name, resolve(match)
        if "**" in text:
            yield name, resolve(text[: text.index("**")] or ".")


def _check_places(out: Path, option: str, inputs: Inputs) -> None:
    """Refuse `out` (resolved) when it is or holds the current folder, or is, holds or lies in an input."""
    refuse_current_folder(out, option)
    for name, src in _input_paths(inputs):
        if out == src:
            raise OutputError(out, f"{option} must differ from {name} (the same path); choose another {option}")
        if _inside(src, out):
            raise OutputError(out, f"{option} holds the input {name} {src}; write somewhere else")
        if _inside(out, src):
            raise OutputError(out, f"{option} lies inside the input {name} {src}; write outside it")


def _check_not_in_output(out: Path, option: str, *, allowed: Path | None = None) -> None:
    """Refuse `out` inside an llmrec model or dataset folder (other than `allowed`)."""
    for parent in out.parents:
        kind = output_kind(parent)
        if kind in ("model", "dataset") and parent != allowed:
            raise OutputError(out, f"{option} lies inside the {_WORDS[kind]} {parent}; write outside it")


def check_replaceable(out: str | Path, kind: str, option: str = "--out") -> None:
    """Refuse to replace `out` unless it is absent, an empty folder or an llmrec output of `kind` that holds no file
    llmrec did not write (a refusal names them). A replacement of `out` stopped half-way is recovered first
    (`llmrec.atomic.recover`), so the folder checked is the complete one."""
    from llmrec.atomic import recover

    out = Path(out)
    recover(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is a file, not an {_WORDS[kind]}; refusing to replace it")
    if any(out.iterdir()) and output_kind(out) != kind:
        raise FileExistsError(
            f"{out}: exists, is not empty and is not an {_WORDS[kind]}; refusing to replace it (choose a new or empty folder)"
        )
    if foreign := foreign_entries(out):
        names = ", ".join(foreign)
        raise OutputError(out, f"holds files llmrec did not write ({names}); move them or choose another {option}")


def check_folder(
    out: str | Path, kind: str, *, inputs: Inputs | None = None, option: str = "--out", inside: str | Path | None = None
) -> Path:
    """Check the folder output `out` of `kind` before any work (see the module docstring); returns it resolved.

    inside: the one llmrec folder `out` may lie in (an index's model)."""
    path = resolve(out)
    _check_places(path, option, inputs or {})
    _check_not_in_output(path, option, allowed=None if inside is None else resolve(inside))
    check_replaceable(path, kind, option)
    return path


def check_file(out: str | Path, *, inputs: Inputs | None = None, beside: tuple[str, ...] = (), option: str = "--out") -> Path:
    """Check the file output `out` (and the files with the suffixes `beside` written next to it, e.g. a report's
    .md and .png) before any work; returns `out` resolved. An existing file is replaced (llmrec's or not), a
    folder never."""
    path = resolve(out)
    for p in (path, *(path.with_suffix(s) for s in beside)):
        _check_places(p, option, inputs or {})
        _check_not_in_output(p, option)
        if p.is_dir():
            raise OutputError(p, f"{option} names a file to write, and this is a folder; give a file path")
    return path


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text.isdigit():
            return f"process {text}"
    return "another process"


@contextmanager
def output_lock(out: str | Path, option: str = "--out") -> Iterator[None]:
    """Hold the advisory lock of the output `out` (resolved) until the block ends; a second writer fails at once.

    The lock is ``flock`` on ``.<name>.lock`` beside `out`, holding the holder's process id. It is removed on
    release while still held; a waiter that locked the removed file notices (another inode at the path) and
    tries again, so two writers never both hold a lock of the same output.
    """
    out = resolve(out)
    lock = out.parent / f".{out.name}.lock"
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(out)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputError(
                out, f"{option} is being written by another llmrec command ({holder}); wait for it to end, or stop it"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file after we opened it: lock the one at the path now
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:  # a disk with 0 bytes free fails here first: name the output, not nothing
            raise OSError(e.errno, e.strerror, str(out)) from e
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _is_main_process() -> bool:
    """Under torchrun / accelerate only rank 0 writes, so only rank 0 takes the lock."""
    return os.environ.get("RANK", "0") in ("", "0")


@contextmanager
def claim_folder(
    out: str | Path, kind: str, *, inputs: Inputs | None = None, option: str = "--out", lock: str | Path | None = None
) -> Iterator[Path]:
    """`check_folder`, then hold `output_lock` for the block; yields the resolved output to write.

    lock: lock this folder instead of `out` (an index locks its model, which it writes into)."""
    path = check_folder(out, kind, inputs=inputs, option=option, inside=lock)
    if not _is_main_process():
        yield path
        return
    with output_lock(path if lock is None else lock, option):
        check_replaceable(path, kind, option)  # what the holder before us may have left
        yield path


@contextmanager
def claim_file(
    out: str | Path, *, inputs: Inputs | None = None, beside: tuple[str, ...] = (), option: str = "--out"
) -> Iterator[Path]:
    """`check_file`, then hold `output_lock` on the file for the block; yields the resolved output to write."""
    path = check_file(out, inputs=inputs, beside=beside, option=option)
    with output_lock(path, option):
        yield path
