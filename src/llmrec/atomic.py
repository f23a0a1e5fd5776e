"""Write a directory atomically: fill a temporary sibling, then rename it into place.

A failure (bad input, a crash, Ctrl-C) leaves the previous directory, or nothing, but never a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory"]


@contextmanager
def atomic_directory(out: str | Path, *, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to `out`; on success it replaces `out`.

    marker: a file that an existing `out` must contain to be replaced (e.g. "manifest.json"), so that a
    mistyped path never deletes an unrelated folder.
    """
    out = Path(out)
    if marker is not None and out.exists() and not (out / marker).is_file():
        raise FileExistsError(f"{out}: exists and has no {marker}; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
