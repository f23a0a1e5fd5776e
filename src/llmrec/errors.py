"""Errors that carry where bad input was found, so the CLI can print it and exit with code 2."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "ArtifactError",
    "ChecksumError",
    "DataError",
    "DatasetNotFoundError",
    "UnknownIdError",
    "artifact_file",
    "as_os_error",
    "read_json",
]


class DataError(ValueError):
    """Bad input data: names the file, the line (1-based, text files) or row (0-based, tables) and the reason."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.line = line
        self.row = row
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


class DatasetNotFoundError(FileNotFoundError):
    """A named dataset could not be found in any place tried; the message lists the places and how to provide it."""


class ChecksumError(ValueError):
    """A dataset file does not match its published SHA-256 (corrupted or truncated)."""


class UnknownIdError(KeyError):
    """Raw user or item ids that the model does not know; `.ids` lists them (raised by `llmrec.recommend`)."""

    def __init__(self, kind: str, ids: list[str]) -> None:
        self.kind = kind
        self.ids = ids
        shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
        super().__init__(f"unknown {kind} id(s): {shown}")

    def __str__(self) -> str:
        return str(self.args[0])


class ArtifactError(ValueError):
    """A file we saved earlier (model artifact, training checkpoint, prepared dataset) that is missing, damaged,
    or does not fit the rest: ``<path>: <reason>``. The CLI prints it and exits with code 2."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# "(os error 28)" from the Rust writers (safetensors, polars), "[Errno 28]" / "errno 28" from pyarrow.
_ERRNO_IN_MESSAGE = re.compile(r"(?:os error|errno) (\d+)", re.IGNORECASE)
_WRITERS = ("safetensors", "polars", "pyarrow")
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def as_os_error(e: BaseException, out: str | Path) -> OSError | None:
    """A file-system failure met while writing the output `out`, as an OSError the CLI prints as one line
    (``out: reason``); None when `e` is no file-system failure.

    safetensors and polars raise their own types with ``(os error 28)`` in the message, pyarrow an OSError without a
    file name: those become ``OSError(errno, strerror, out)``. A full disk or quota names `out` whatever file
    the writer was at (a hidden temporary, a checkpoint), since the disk of `out` is the one to free; any other
    OSError naming its file stays as it is."""
    if isinstance(e, OSError) and e.filename is not None and e.errno not in _NO_ROOM:
        return e
    from_writer = isinstance(e, OSError) or type(e).__module__.split(".")[0] in _WRITERS
    code = e.errno if isinstance(e, OSError) and e.errno else None
    if code is None and from_writer and (m := _ERRNO_IN_MESSAGE.search(str(e))) is not None:
        code = int(m.group(1))
    if code is None:
        return e if isinstance(e, OSError) else None
    return OSError(code, os.strerror(code), str(out))


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def artifact_file(path: str | Path) -> Iterator[None]:
    """Turn any failure while reading (and checking) `path` into an ArtifactError naming it.

    Every reader raises its own type for a truncated or garbage file (safetensors' SafetensorError, polars'
    ComputeError, json's JSONDecodeError, torch's RuntimeError for weights of another shape, KeyError for a
    missing column), so the guard catches Exception, but only around the few lines that read one file.
    """
    try:
        yield
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(path, "missing (incomplete artifact)") from None
    except PermissionError as e:
        raise ArtifactError(path, f"cannot be read ({e.strerror})") from None
    except Exception as e:  # noqa: BLE001 - see the docstring
        raise ArtifactError(path, f"damaged or incomplete ({_first_line(e)})") from e


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from `path`; anything else (bad JSON, a list, bad UTF-8) is an ArtifactError naming the file."""
    with artifact_file(path):
        value = json.loads(Path(path).read_bytes())
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
