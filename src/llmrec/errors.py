"""Errors that carry where bad input was found, so the CLI can print it and exit with code 2."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError", "DatasetNotFoundError", "ChecksumError"]


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
