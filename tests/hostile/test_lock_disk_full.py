"""A disk with 0 bytes free: the first write of a command is its lock file's, and the error names the output."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from llmrec.outputs import output_lock


def test_a_full_disk_at_the_lock_names_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")  # as the kernel says it: no file name

    monkeypatch.setattr(os, "pwrite", no_room)
    out = tmp_path / "M"
    with pytest.raises(OSError) as info, output_lock(out):
        pass
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert not (tmp_path / ".M.lock").exists()  # nothing left behind
