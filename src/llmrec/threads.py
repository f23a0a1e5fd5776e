"""CPU threads of the libraries that compute: one place that sets them for the CLI's ``--threads`` and Python's
``threads=`` (torch's intra-op threads, and FAISS's OpenMP threads when FAISS is loaded)."""

from __future__ import annotations

import sys

__all__ = ["use_threads"]


def use_threads(threads: int, *, name: str = "--threads") -> None:
    """Set torch's (and a loaded FAISS's) threads for this process; 0 leaves them. `name` is the setting an error
    names: anything but an int in 0..4096 is a ValueError (``--threads must be in 0..4096 ...``)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= 4096:
        raise ValueError(f"{name} must be in 0..4096 (0 = the default), got {threads!r}")
    if threads:
        import torch

        torch.set_num_threads(threads)
        faiss = sys.modules.get("faiss")
        if faiss is not None:
            faiss.omp_set_num_threads(threads)
