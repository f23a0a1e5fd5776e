"""Write a directory or a file atomically: fill a temporary sibling, then swap it into place.

The one atomic-write helper of the package: artifacts, checkpoints, reports and caches all write through it. A
command stopped at any moment (an error, Ctrl-C, SIGTERM, ``kill -9``) leaves at the output's path the complete
earlier output or the complete new one, never a partial or missing one.

A folder (`atomic_directory`) is written complete in a hidden temporary sibling ``.<name>.tmp-<pid>-*`` (an llmrec
output gets its marker last, `llmrec.outputs.write_marker`); then it takes the output's place:

1. No output yet: one ``rename``.
2. On Linux, ``renameat2(tmp, out, RENAME_EXCHANGE)`` swaps the two names in one step: the new folder is at `out`
   and the earlier one under the temporary name, which is then removed. There is no instant without a complete
   `out`; a stop while the earlier copy is being removed leaves a partial copy under a temporary name, which the
   next write removes (`remove_stale_temporaries`).
3. Where the file system refuses the exchange (EINVAL / ENOSYS / EOPNOTSUPP: NFS, some FUSE file systems, any
   system other than Linux), a rename-aside: ``out -> .<name>.old-<pid>``, ``tmp -> out``, the set-aside copy to a
   temporary name, then removed. SIGTERM and Ctrl-C wait while the two first renames run; only ``kill -9`` between
   them leaves `out` missing with the earlier folder set aside, and every llmrec command that reads or writes
   the path first calls `recover`, which renames it back. A set-aside copy is never deleted while `out` is
   missing: it is the only complete one.

Why hand-written: Python's ``os.rename`` takes no flags, and the ``renameat2`` package on PyPI is a compiled CFFI
extension that refuses to import outside Linux, without the fallback or the recovery; the system call is one
ctypes call (glibc >= 2.28 has the wrapper; older ones reach it by its system call number).

A file (`atomic_file`) is written to a temporary sibling and renamed over the path, which is atomic for files:
the path holds the earlier file or the new one at every instant.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

__all__ = [
    "atomic_directory",
    "atomic_file",
    "atomic_write",
    "normal_permissions",
    "recover",
    "recover_arguments",
    "recover_set_aside",
    "remove_stale_temporaries",
]


@contextmanager
def atomic_directory(out: str | Path, *, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to `out`; on success it takes `out`'s place (see the module docstring).

    `out` is resolved first (``.``, ``..``, symbolic links: a link is written through), and a folder that is or
    holds the current folder is never replaced. A replacement stopped earlier is recovered first (`recover`).
    kind: an llmrec output kind ("model", "dataset", "index"): an existing `out` is replaced only when it is empty
    or an llmrec output of that kind holding no file llmrec did not write (`llmrec.outputs.check_replaceable`), so
    a mistyped path never deletes an unrelated folder or a user's file; the new folder gets the kind's marker,
    which lists its entries.
    """
    from llmrec.outputs import check_replaceable, refuse_current_folder, resolve, write_marker

    out = resolve(out)
    refuse_current_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # recovers a stopped replacement, then removes dead writers' leftovers
    if kind is not None:
        check_replaceable(out, kind)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out), dir=out.parent))
    try:
        with _io_errors_as_os_errors(out):
            yield tmp
        normal_permissions(tmp)
        if kind is not None:
            write_marker(tmp, kind, staged_as=tmp.name)  # last: the folder is complete once its marker is there
        _move_into_place(tmp, out)
    finally:
        _remove(tmp)  # the unfinished new folder, or the earlier one after the swap


def _move_into_place(tmp: Path, out: Path) -> None:
    """Put the complete folder `tmp` at `out`; the earlier `out`, if any, ends at `tmp` (for the caller to remove)."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    try:
        _exchange(tmp, out)
    except OSError as e:
        if e.errno not in _EXCHANGE_REFUSED:
            raise OSError(e.errno, e.strerror, str(out)) from e  # the output, not its hidden temporary, is named
        _replace_aside(tmp, out)


def _replace_aside(tmp: Path, out: Path) -> None:
    """The fallback of `_exchange`: out -> ``.<name>.old-<pid>``, tmp -> out, then the set-aside copy -> tmp.

    SIGTERM and Ctrl-C wait while the three renames run, and a failure of the second puts the earlier folder back,
    so only ``kill -9`` can leave `out` missing between the first two; `recover` then renames the set-aside copy
    back.
    """
    aside = _aside(out)
    with _signals_deferred():
        os.rename(out, aside)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(aside, out)
            raise
        os.rename(aside, tmp)  # a temporary name: a stop while it is removed leaves a stale temporary, not an aside


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# ---- renameat2(RENAME_EXCHANGE) through ctypes -------------------------------------------------------------------
_AT_FDCWD = -100
_RENAME_EXCHANGE = 1 << 1
# The system call's number where glibc (< 2.28) has no renameat2 wrapper.
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "i386": 353, "i686": 353, "armv7l": 382}
_SYS_RENAMEAT2 |= {"ppc64le": 357, "ppc64": 357, "s390x": 347}
# What a file system, a kernel or a C library answers when it cannot exchange: then rename aside.
_EXCHANGE_REFUSED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _exchange(a: Path, b: Path) -> None:
    """Swap the names `a` and `b` (both exist) in one step: ``renameat2(a, b, RENAME_EXCHANGE)``.

    An OSError when it fails; errno in `_EXCHANGE_REFUSED` when the system cannot do it (then nothing changed).
    """
    libc = _libc()
    paths = (os.fsencode(a), os.fsencode(b))
    if libc is not None and hasattr(libc, "renameat2"):
        call = libc.renameat2
        call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        call.restype = ctypes.c_int
        rc = call(_AT_FDCWD, paths[0], _AT_FDCWD, paths[1], _RENAME_EXCHANGE)
    elif libc is not None and platform.machine() in _SYS_RENAMEAT2:
        number = ctypes.c_long(_SYS_RENAMEAT2[platform.machine()])
        fd = ctypes.c_long(_AT_FDCWD)
        rc = libc.syscall(number, fd, paths[0], fd, paths[1], ctypes.c_long(_RENAME_EXCHANGE))
    else:
        raise OSError(errno.ENOSYS, "renameat2 is not available here", str(a), None, str(b))
    if rc != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block has run (then act as they would have): it is never cut in two.

    Only the main thread can set handlers (elsewhere the block runs as is; Python runs handlers in it anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for signum in received:
            signal.raise_signal(signum)


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


def _aside(out: Path) -> Path:
    return out.with_name(f".{out.name}.old-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that id
        return True
    return True


def _at_rest(pid: str | None) -> bool:
    """Whether a writer with this process id (None: not recorded) is no longer at work: gone, or this process."""
    return pid is None or int(pid) == os.getpid() or not _alive(int(pid))


def recover(out: str | Path) -> None:
    """Undo a replacement of `out` that ``kill -9`` (or a power cut) stopped half-way; every command that reads or
    writes `out` calls this first.

    `out` missing: the earlier folder set aside by the rename-aside fallback (``.<name>.old-<pid>``) is renamed
    back; with none (no earlier output), a new folder finished in its temporary sibling (its marker names that
    sibling and every entry it lists is there) is renamed into place. `out` present: set-aside copies are
    redundant and removed. Folders of a writer still at work are left alone. Best effort: a file system that
    refuses (read-only) leaves things as they are.
    """
    from llmrec.outputs import is_finished, resolve

    out = resolve(out)
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return
    aside_name = re.compile(rf"^\.{re.escape(out.name)}\.old-(\d+)$")
    asides = [p for p in siblings if (m := aside_name.match(p.name)) and _at_rest(m.group(1))]
    with contextlib.suppress(OSError):
        if not os.path.lexists(out):
            if asides:
                newest = max(asides, key=lambda p: p.lstat().st_ctime)  # the last one set aside
                os.rename(newest, out)
                asides.remove(newest)
            else:
                finished = [p for p in _stale_temporaries(out, siblings) if is_finished(p)]
                if finished:
                    os.rename(max(finished, key=lambda p: p.lstat().st_ctime), out)
        for p in asides:  # `out` is complete: an earlier copy is no longer needed
            trash = p.with_name(f"{_prefix(out)}old-{secrets.token_hex(4)}")
            os.rename(p, trash)
            _remove(trash)


def recover_arguments(args: Sequence[str]) -> None:
    """`recover` each path given on a command line (``--opt PATH`` or ``--opt=PATH``) that has a set-aside copy
    beside it, so every command, reading or writing, sees the complete output first."""
    from llmrec.outputs import resolve

    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if not value or value.startswith("-"):
            continue
        with contextlib.suppress(OSError, ValueError):
            recover_set_aside(resolve(value))


def recover_set_aside(path: Path) -> None:
    """`recover` `path` when a set-aside copy (``.<name>.old-*``) lies beside it; cheap otherwise (one listing of
    the parent folder). The Python doors that read an output (`llmrec.artifact.open_artifact`,
    `PreparedDataset.load`) call it, as every command does through `recover_arguments`."""
    prefix = f".{path.name}.old-"
    with contextlib.suppress(OSError, ValueError):
        if path.name and any(n.startswith(prefix) for n in os.listdir(path.parent)):
            recover(path)


def _stale_temporaries(out: Path, siblings: list[Path]) -> list[Path]:
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.tmp-(?:(\d+)-)?")
    stale = []
    for p in siblings:
        m = pattern.match(p.name)
        if m is not None and (m.group(1) is None or not _alive(int(m.group(1)))):
            stale.append(p)
    return stale


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """`recover` `out`, then remove the hidden ``.<name>.tmp-<pid>-*`` siblings left by writers that no longer run.

    A leftover without a process id (written before ids were recorded) is removed too; one whose process still
    runs is another writer at work and is left alone. Returns what was removed.
    """
    out = Path(out)
    recover(out)
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return []
    removed = _stale_temporaries(out, siblings)
    for p in removed:
        _remove(p)
    return removed
