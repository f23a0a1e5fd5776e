"""Write a directory or a file atomically: fill a temporary sibling, then rename it into place.

The one atomic-write helper of the package: artifacts, checkpoints, reports and caches all write through it.

A failure (bad input, a crash, Ctrl-C) leaves the previous directory, or nothing, but never a half-written one.
Only ``kill -9`` (or a power cut) can leave the hidden temporary sibling behind; its name carries the writing
process's id, and the next write to the same place removes such leftovers whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory", "atomic_file", "atomic_write", "normal_permissions", "remove_stale_temporaries"]


@contextmanager
def atomic_directory(out: str | Path, *, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to `out`; on success it replaces `out`.

    `out` is resolved first (``.``, ``..``, symbolic links: a link is written through), and a folder that is or
    holds the current folder is never replaced. kind: an llmrec output kind ("model", "dataset", "index"): an
    existing `out` is replaced only when it is empty or an llmrec output of that kind (`llmrec.outputs`), so a
    mistyped path never deletes an unrelated folder; the new folder gets the kind's marker file.
    """
    from llmrec.outputs import check_replaceable, refuse_current_folder, resolve, write_marker

    out = resolve(out)
    refuse_current_folder(out)
    if kind is not None:
        check_replaceable(out, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out), dir=out.parent))
    try:
        with _io_errors_as_os_errors(out):
            yield tmp
        if kind is not None:
            write_marker(tmp, kind)
        normal_permissions(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for any writer to fill (e.g. safetensors' save_file); on success it is
    renamed over `path` with a plain write's permissions. A failure leaves the previous file, or nothing."""
    from llmrec.outputs import resolve

    path = resolve(path)  # a symbolic link is written through
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(prefix=_prefix(path), dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with _io_errors_as_os_errors(path):
            yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# "(os error 28)" from polars' Rust writers, "[Errno 28]" / "errno 28" from pyarrow's.
_ERRNO_IN_MESSAGE = re.compile(r"(?:os error|errno) (\d+)", re.IGNORECASE)


@contextmanager
def _io_errors_as_os_errors(out: Path) -> Iterator[None]:
    """A writer's file-system failure as ``OSError(errno, strerror, out)``.

    polars raises ``ComputeError('... No space left on device (os error 28)')`` and pyarrow an OSError without a
    file name when a write fails; as an OSError naming the output, the CLI reports it as one line (path: reason).
    Other errors pass through unchanged.
    """
    try:
        yield
    except Exception as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise
        from_writer = isinstance(e, OSError) or type(e).__module__.split(".")[0] in ("polars", "pyarrow")
        m = _ERRNO_IN_MESSAGE.search(str(e)) if from_writer else None
        if m is None:
            raise
        code = int(m.group(1))
        raise OSError(code, os.strerror(code), str(out)) from e


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write a file atomically: a hidden temporary sibling, then a rename over `path` (see `atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_permissions(root: str | Path) -> None:
    """Give `root` and everything under it the modes a plain write would have (0644 / 0755 under umask 022).

    mkdtemp makes 0700 folders and safetensors writes its files 0600 (it renames a private temporary file into
    place), so an artifact written through a temporary folder would be readable by its owner only.
    """
    mask = _umask()
    root = Path(root)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _prefix(out: Path) -> str:
    return f".{out.name}.tmp-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that id
        return True
    return True


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Remove the hidden ``.<name>.tmp-<pid>-*`` siblings of `out` left by writers that no longer run.

    A leftover without a process id (written before ids were recorded) is removed too; one whose process still
    runs is another writer at work and is left alone. Returns what was removed.
    """
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.tmp-(?:(\d+)-)?")
    removed = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return []
    for p in siblings:
        m = pattern.match(p.name)
        if m is None or (m.group(1) is not None and _alive(int(m.group(1)))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed
